"""The level rules of training segments, written once for every data path.

Each rule takes ``xp``, an array namespace with numpy's API: ``numpy`` on the host
(:class:`~spectral_restore.data.source.AudioDataset`) and
``tensorflow.experimental.numpy`` inside ``tf.data``
(:func:`~spectral_restore.data.pipeline.make_dataset`), so both paths apply the
same formulas. They act on the last axis, so single segments and batches alike.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from spectral_restore._typing import Tensor

# Segments quieter than this (RMS, dB re full scale) are silence, not speech.
SILENCE_DB = -60.0
# Room left below full scale after levelling, so clipping artifacts have headroom to act on.
PEAK = 0.99
# Guards the logarithm and the division on all-zero segments.
EPSILON = 1e-12


def rms_db(wave: Tensor, xp: ModuleType = np) -> Tensor:
    """RMS level of ``wave`` along its last axis, dB re full scale.

    Formula: ``10 * log10(mean(x^2) + 1e-12)`` (so digital silence is -120 dB).

    Args:
        wave: array ``[..., samples]``.
        xp: module. Array namespace with numpy's API. Defaults to numpy.

    Example:
    >>> round(float(rms_db(np.full(100, 0.1))), 3)
    -20.0
    """
    return 10.0 * xp.log10(xp.mean(xp.square(wave), axis=-1) + EPSILON)


def is_silent(wave: Tensor, xp: ModuleType = np) -> Tensor:
    """True where ``wave`` (``[..., samples]``) is quieter than ``SILENCE_DB``."""
    return rms_db(wave, xp) <= SILENCE_DB


def normalise_level(
    wave: Tensor, level_db: float, peak: float = PEAK, xp: ModuleType = np
) -> Tensor:
    """Scales ``wave`` to ``level_db`` dB RMS re full scale along its last axis, then
    down where the peak would exceed ``peak``.

    Formula: ``y = x * g * min(1, peak / max|x * g|)`` with
    ``g = 10^(level_db / 20) / sqrt(mean(x^2) + 1e-12)``.

    Args:
        wave: array ``[..., samples]``.
        level_db: float. Target RMS, dB re full scale.
        peak: float. Largest absolute sample allowed. Defaults to 0.99.
        xp: module. Array namespace with numpy's API. Defaults to numpy.

    Example:
    >>> y = normalise_level(np.array([0.5, -0.5, 0.5, -0.5]), -20.0)
    >>> round(float(rms_db(y)), 3)
    -20.0
    """
    return wave * _gain(wave, level_db, peak, xp, wave)


def normalise_pair_level(
    damaged: Tensor, clean: Tensor, level_db: float, peak: float = PEAK, xp: ModuleType = np
) -> tuple[Tensor, Tensor]:
    """Scales a recorded pair by one gain: ``clean`` to ``level_db`` dB RMS re full
    scale, then both down where either's peak would exceed ``peak``. One gain keeps
    what the damage did to the level (noise adds energy, a lowpass removes some).

    Formula: ``(d, c) -> (d * g', c * g')`` with ``g = 10^(level_db / 20) / sqrt(mean(c^2) + 1e-12)``
    and ``g' = g * min(1, peak / max(|d * g|, |c * g|))``.

    Args:
        damaged, clean: arrays ``[..., samples]`` of the same shape.
        level_db: float. Target RMS of ``clean``, dB re full scale.
        peak: float. Largest absolute sample allowed on either side. Defaults to 0.99.
        xp: module. Array namespace with numpy's API. Defaults to numpy.

    Example:
    >>> d, c = normalise_pair_level(np.array([0.5, -0.5]), np.array([0.1, -0.1]), -30.0)
    >>> round(float(rms_db(c)), 3), round(float(rms_db(d)), 3)
    (-30.0, -16.021)
    >>> d, c = normalise_pair_level(np.array([1.0, -1.0]), np.array([0.1, -0.1]), -20.0)
    >>> round(float(np.max(np.abs(d))), 3), round(float(np.max(np.abs(c))), 3)
    (0.99, 0.099)
    """
    gain = _gain(clean, level_db, peak, xp, damaged, clean)
    return damaged * gain, clean * gain


def _gain(reference, level_db, peak, xp, *waves):
    """The gain taking ``reference`` to ``level_db`` dB RMS, lowered so that no
    wave of ``waves`` peaks above ``peak`` (``[..., 1]``, to broadcast)."""
    rms = xp.sqrt(xp.mean(xp.square(reference), axis=-1, keepdims=True) + EPSILON)
    gain = 10.0 ** (level_db / 20.0) / rms
    top = gain * xp.max(
        xp.stack([xp.max(xp.abs(wave), axis=-1, keepdims=True) for wave in waves]), axis=0
    )
    return gain * xp.minimum(1.0, peak / xp.maximum(top, EPSILON))


__all__ = ["SILENCE_DB", "PEAK", "rms_db", "is_silent", "normalise_level", "normalise_pair_level"]
