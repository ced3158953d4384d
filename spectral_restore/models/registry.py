"""The model registry: ``build_model(architecture, preset, **overrides)`` is the one way
to build a restoration model (training, evaluation, export, benchmarks, the notebook).

Adding an architecture: a backbone file in ``spectral_restore/models/`` whose class
subclasses :class:`~spectral_restore.models.frontend.SpectralModel` (with its
``PRESETS``), and one entry in ``ARCHITECTURES`` below.
"""

from __future__ import annotations

from typing import Any

from spectral_restore.models.conformer import MagnitudePhaseConformer
from spectral_restore.models.frontend import SpectralModel, built
from spectral_restore.models.restorer import SpectralRestorer

ARCHITECTURES = {
    # Convolutional-recurrent U-Net (Tan & Wang 2018) with a mask and a complex residual.
    "crn": SpectralRestorer,
    # Magnitude-phase conformer network (MP-SENet, Lu et al. 2023; CMGAN, Cao et al. 2022).
    "conformer": MagnitudePhaseConformer,
}
DEFAULT_ARCHITECTURE = "crn"


def presets(architecture: str) -> list[str]:
    """The preset names of ``architecture``, sorted."""
    return sorted(model_class(architecture).PRESETS)


def model_class(architecture: str) -> type[SpectralModel]:
    """The model class registered as ``architecture``; ValueError naming the known ones."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown `architecture` {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def build_model(architecture: str, preset: str, **overrides: Any) -> SpectralModel:
    """A restoration model of ``architecture`` and ``preset``, its weights created.

    Args:
        architecture: str. A key of ``ARCHITECTURES``: "crn" or "conformer".
        preset: str. One of the architecture's presets ("small", "base").
        **overrides: constructor arguments of the architecture's class (its
            hyperparameters, ``stft_config``, ``sample_rate``, ``input_damage``,
            ``name``); they override the preset.

    Returns:
        The built model (a :class:`~spectral_restore.models.frontend.SpectralModel`).

    Example:
    >>> model = build_model("conformer", "small")
    >>> type(model).__name__, model.preset
    ('MagnitudePhaseConformer', 'small')
    """
    cls = model_class(architecture)
    if preset not in cls.PRESETS:
        raise ValueError(
            f"Unknown `preset` {preset!r} for architecture {architecture!r}; known: {sorted(cls.PRESETS)}"
        )
    return built(cls(preset, **overrides))
