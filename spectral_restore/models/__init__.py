"""Restoration model, discriminators and the GAN trainer."""
