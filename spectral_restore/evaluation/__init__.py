"""Whole-utterance evaluation as speech-enhancement papers report it."""
