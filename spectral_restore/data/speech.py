"""Clean speech synthesized offline with the ``espeak-ng`` and ``flite`` engines.

Both are Debian packages (``apt-get install espeak-ng flite``); espeak-ng speaks
about 130 languages with voice variants (``en-us+f3``), flite has six English
voices (``slt``, ``rms``, ``awb``, ``kal``, ``kal16``, ``awb_time``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

from spectral_restore.audio_io import read_audio
from spectral_restore.checks import check_choice

ENGINES = ("espeak-ng", "flite")
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
# Phonetically balanced sentences from the Harvard lists (IEEE Recommended Practice
# for Speech Quality Measurements, 1969): the synthetic_speech dataset and the benchmarks speak them.
HARVARD_SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
)


class SynthesisError(RuntimeError):
    """A speech engine is missing or failed."""


def engine_available(engine: str) -> bool:
    """True when the engine's executable is on PATH."""
    return shutil.which(engine) is not None


def flite_voices() -> tuple[str, ...]:
    """Voices the installed flite offers (it falls back to a default voice silently
    for unknown names, so names are checked against this list)."""
    result = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False)
    listing = result.stdout.split(":", 1)[-1]
    return tuple(listing.split())


def synthesize(
    text: str,
    voice: str = "en-us",
    engine: str = "espeak-ng",
    sample_rate: int = 16000,
    words_per_minute: int | None = None,
) -> np.ndarray:
    """Speaks ``text`` and returns float32 mono samples at ``sample_rate``.

    Args:
        text: str. What to say; must not be empty.
        voice: str. An espeak-ng voice (``"en-us"``, ``"de+m3"``) or a flite voice
            (``"slt"``). Defaults to "en-us".
        engine: str. "espeak-ng" or "flite". Defaults to "espeak-ng".
        sample_rate: int. Output rate; the engine's own (22.05 kHz espeak-ng,
            16 kHz flite) is resampled. Defaults to 16000.
        words_per_minute: int or None. espeak-ng speaking rate. Defaults to None
            (the engine's 175).

    Raises:
        ValueError: empty text or unknown engine.
        SynthesisError: the engine is not installed or failed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"`text` must be a non-empty string. Received: {text!r}")
    check_choice("engine", engine, ENGINES)
    if not engine_available(engine):
        raise SynthesisError(
            f"{engine} is not installed; install it with `apt-get install -y {engine}`"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speech.wav")
        if engine == "espeak-ng":
            command = ["espeak-ng", "-v", voice, "-w", path]
            if words_per_minute:
                command += ["-s", str(int(words_per_minute))]
            command.append(text)
        else:
            available = flite_voices()
            if voice not in available:
                raise SynthesisError(f"flite has no voice {voice!r}; it has {', '.join(available)}")
            command = ["flite", "-voice", voice, "-t", text, "-o", path]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not os.path.exists(path) or os.path.getsize(path) <= 44:
            raise SynthesisError(
                f"{engine} failed for voice {voice!r}: {result.stderr.strip() or 'no audio written'}"
            )
        samples, _ = read_audio(path, sample_rate=sample_rate)
    return samples
