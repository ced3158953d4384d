"""Restoration models (one file per architecture, built through ``build_model``),
discriminators and the GAN trainer."""

from spectral_restore.models.registry import ARCHITECTURES, build_model, presets

__all__ = ["ARCHITECTURES", "build_model", "presets"]
