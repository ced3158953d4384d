"""Speed perturbation of training segments, written once for every data path.

A segment is read ``length * factor`` samples long (rounded) and resampled to
``length``: played at the model's rate its speech is ``factor`` times faster and
its pitch and formants ``factor`` times higher, as from another speaker. Speed
perturbation of this kind (factors 0.9, 1.0, 1.1) is a standard augmentation of
speech recognition (Ko et al., "Audio augmentation for speech recognition",
Interspeech 2015); here it gives a model trained on a few voices more of them.
Target and input get the same segment, the damage comes after.

:func:`resample` takes ``xp`` and ``fft`` as :mod:`spectral_restore.data.levels`
does: numpy on the host (:class:`~spectral_restore.data.source.AudioDataset`),
``tensorflow.experimental.numpy`` and :func:`tf_fft` inside
``tf.data`` (:func:`~spectral_restore.data.pipeline.make_dataset`).
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from spectral_restore._typing import Tensor

# Factors outside this interval change speech beyond what a speaker does.
LIMITS = (0.5, 2.0)


def check_speed_range(value: Any) -> tuple[float, float] | None:
    """``value`` as ``(low, high)`` speed factors, or None (no perturbation).

    Raises:
        ValueError: not two numbers with ``0.5 <= low <= high <= 2``.

    Example:
    >>> check_speed_range([0.9, 1.1])
    (0.9, 1.1)
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(
            f"`speed_perturb` must be (low, high) speed factors or None; received {value!r}"
        )
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.number)) for v in value):
        raise ValueError(f"`speed_perturb` must hold two numbers; received {value!r}")
    low, high = float(value[0]), float(value[1])
    if not LIMITS[0] <= low <= high <= LIMITS[1]:
        raise ValueError(
            f"`speed_perturb` must satisfy {LIMITS[0]} <= low <= high <= {LIMITS[1]}; received {value!r}"
        )
    return low, high


def source_length(length: int, factor: Any, xp: ModuleType = np) -> Any:
    """Samples to read for a ``length``-sample segment at speed ``factor``:
    ``floor(length * factor + 0.5)``, at least 2."""
    return xp.asarray(xp.maximum(xp.floor(length * factor + 0.5), 2), dtype=np.int32)


def resample(
    wave: Tensor, samples: Any, length: int, xp: ModuleType = np, fft: Any = np.fft
) -> Tensor:
    """``wave`` (``[..., samples]``) resampled to ``[..., length]`` in the Fourier
    domain, as a periodic band-limited signal.

    The spectrum is cut (``length < samples``) or zero-padded (``length > samples``)
    at ``min(samples, length) // 2`` bins, the shared Nyquist bin of an even size
    doubled when cutting and halved when padding, and scaled by ``length / samples``
    (the rule of ``scipy.signal.resample``).

    Args:
        wave: float array ``[..., samples]``.
        samples: int. ``wave``'s last size (a tensor inside ``tf.data``).
        length: int. The output's last size.
        xp: module. Array namespace with numpy's API. Defaults to numpy.
        fft: namespace with ``rfft(x)`` and ``irfft(X, n)``. Defaults to numpy.fft.

    Example:
    >>> x = np.sin(2 * np.pi * 5 * np.arange(64) / 64)
    >>> y = resample(x, 64, 32)
    >>> bool(np.allclose(y, np.sin(2 * np.pi * 5 * np.arange(32) / 32)))
    True
    """
    spectrum = fft.rfft(wave)
    bins = length // 2 + 1
    samples = xp.asarray(samples, dtype=np.int32)
    shared = xp.minimum(samples, length)
    kept = xp.minimum(shared // 2 + 1, bins)
    rank = len(spectrum.shape)
    spectrum = xp.pad(
        spectrum[..., :kept], [(0, 0)] * (rank - 1) + [(0, bins - kept)], mode="constant"
    )
    even = shared % 2 == 0
    nyquist = xp.where(
        even & (length < samples), 2.0, xp.where(even & (samples < length), 0.5, 1.0)
    )
    weights = xp.where(xp.arange(bins, dtype=np.int32) == shared // 2, nyquist, 1.0)
    spectrum = spectrum * xp.asarray(weights, dtype=spectrum.dtype)
    scale = xp.asarray(length, dtype=np.float32) / xp.asarray(samples, dtype=np.float32)
    return xp.asarray(fft.irfft(spectrum, length) * scale, dtype=np.float32)


def tf_fft() -> SimpleNamespace:
    """``rfft`` and ``irfft`` of ``tf.signal`` in :func:`resample`'s form (needs TensorFlow)."""
    import tensorflow as tf

    return SimpleNamespace(
        rfft=tf.signal.rfft, irfft=lambda spectrum, n: tf.signal.irfft(spectrum, [n])
    )


__all__ = ["LIMITS", "check_speed_range", "source_length", "resample", "tf_fft"]
