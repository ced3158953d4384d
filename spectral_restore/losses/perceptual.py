"""Perceptual losses: loudness-weighted spectral error and a differentiable PESQ."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from spectral_restore import psychoacoustics, spectral
from spectral_restore._typing import DType, Tensor
from spectral_restore.audio_io import check_sample_rate
from spectral_restore.checks import check_choice, check_non_negative
from spectral_restore.losses.base import (
    ELEMENTWISE_DISTANCES,
    SpectralLoss,
    as_waveform,
    elementwise_distance,
    per_example_mean,
)
from spectral_restore.p862.mapping import best_mos
from spectral_restore.p862.model import check_delay_search, check_mode
from spectral_restore.p862.model import mos as p862_mos

register = keras.saving.register_keras_serializable(package="spectral_restore")

BAND_SCALES = (None, "bark", "erb")
# Power floor inside the loudness power law: (P + floor)^c - floor^c is 0 for
# silence and has the finite slope c * floor^(c - 1) there.
LOUDNESS_POWER_FLOOR = 1e-10


@register
class LoudnessWeightedLoss(SpectralLoss):
    """Spectral error weighted by perceptual loudness.

    Formula, per example:
    1. weighted power ``P_tk = g(f_k) |X_tk|^2`` with ``g = 10^(W(f)/10)`` from an
       equal-loudness weighting ``W`` in dB (``weighting``: ISO 226:2003 at
       ``phon``, A-weighting, BS.1770 K-weighting, or flat), ``f_k = k * sample_rate / fft_length``;
    2. optionally the power summed in critical bands (``bands="bark"``: one band
       per Bark; ``"erb"``: one per ERB; rectangular bands over the FFT bins);
    3. a loudness-like power law ``N = (P + 1e-10)^c - 1e-10^c`` (``c = 0.23``,
       Zwicker's exponent for specific loudness);
    4. frame weights ``v_t = max(L_t / mean_t L_t, min_frame_weight)`` where
       ``L_t = sum_b N_tb`` is the clean frame's loudness, so loud frames count
       more while silent frames keep some weight (noise added in pauses is
       still penalised);
    5. loss ``mean_{t,b} v_t d(N_tb(y), N_tb(yhat))``, ``d`` absolute or squared.

    Sample-rate assumptions: ``sample_rate`` must be the rate of the audio; the
    weighting curves are evaluated at the FFT bin frequencies (ISO 226 is defined
    from 20 Hz to 12.5 kHz and held constant outside; K-weighting is the 48 kHz
    BS.1770 filter, held above 24 kHz). The absolute playback level is unknown, so
    ``phon`` chooses which ISO 226 contour applies (60 phon: conversational speech).

    Args:
        sample_rate: int. Audio sample rate in Hz. Defaults to 16000.
        weighting: str. "iso226", "a", "k" or "none". Defaults to "iso226".
        phon: float. ISO 226 loudness level. Defaults to 60.
        bands: str or None. None (FFT bins), "bark" or "erb". Defaults to "bark".
        compression: float. Power-law exponent ``c``. Defaults to 0.23.
        frame_weighting: bool. Weight frames by clean loudness. Defaults to True.
        min_frame_weight: float. Floor of the frame weight. Defaults to 0.1.
        distance: str. "l1" or "l2". Defaults to "l1".
        stft_config, input_format, reduction, name, dtype: see ``SpectralLoss``.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2, 16000)).astype("float32")
    >>> loss = LoudnessWeightedLoss(sample_rate=16000, weighting="k", bands="erb")
    >>> float(loss(x, x))
    0.0

    Reference: ISO 226:2003; IEC 61672-1 (A-weighting); ITU-R BS.1770-4
    (K-weighting); Zwicker & Fastl, "Psychoacoustics" (2007), ch. 8 (loudness).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        weighting: str = "iso226",
        phon: float = 60.0,
        bands: str | None = "bark",
        compression: float = 0.23,
        frame_weighting: bool = True,
        min_frame_weight: float = 0.1,
        distance: str = "l1",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sample_rate = check_sample_rate(sample_rate)
        self.weighting = check_choice("weighting", weighting, psychoacoustics.WEIGHTINGS)
        self.phon = float(phon)
        self.bands = check_choice("bands", bands, BAND_SCALES)
        self.compression = check_non_negative("compression", compression)
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"`compression` must be in (0, 1]. Received: {compression}")
        self.frame_weighting = bool(frame_weighting)
        self.min_frame_weight = check_non_negative("min_frame_weight", min_frame_weight)
        self.distance = check_choice("distance", distance, ELEMENTWISE_DISTANCES)
        self._projection = self.band_matrix()

    def band_matrix(self) -> np.ndarray:
        """``[bins, bands]`` matrix of frequency gains times band membership (numpy)."""
        cfg = self.stft_config
        freqs = psychoacoustics.bin_frequencies(self.sample_rate, cfg.fft_length)
        gain = 10.0 ** (psychoacoustics.weighting_db(self.weighting, freqs, self.phon) / 10.0)
        if self.bands is None:
            return np.diag(gain).astype(np.float32)
        nyquist = self.sample_rate / 2.0
        if self.bands == "bark":
            count = int(round(float(spectral.hz_to_bark(nyquist) - spectral.hz_to_bark(0.0))))
            bank = spectral.bark_filterbank(
                count, self.sample_rate, cfg.fft_length, shape="rectangular"
            )
        else:
            count = int(round(float(psychoacoustics.hz_to_erb_rate(nyquist))))
            bank = spectral.erb_filterbank(
                count, self.sample_rate, cfg.fft_length, shape="rectangular"
            )
        return (gain[:, None] * bank).astype(np.float32)

    def loudness(self, real: Tensor, imag: Tensor) -> Tensor:
        """Compressed band power ``N`` ``[batch, frames, bands]``."""
        power = ops.square(real) + ops.square(imag)
        banded = ops.matmul(power, ops.convert_to_tensor(self._projection, dtype=power.dtype))
        c = self.compression
        return ops.power(banded + LOUDNESS_POWER_FLOOR, c) - LOUDNESS_POWER_FLOOR**c

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        rt, it, rp, ip = self.spectra(y_true, y_pred)
        n_true = self.loudness(rt, it)
        n_pred = self.loudness(rp, ip)
        error = elementwise_distance(n_true, n_pred, self.distance)
        if self.frame_weighting:
            frame_loudness = ops.stop_gradient(ops.sum(n_true, axis=-1))
            mean_loudness = ops.mean(frame_loudness, axis=-1, keepdims=True)
            relative = frame_loudness / ops.maximum(mean_loudness, 1e-12)
            error = error * ops.maximum(relative, self.min_frame_weight)[..., None]
        return per_example_mean(error)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "weighting": self.weighting,
                "phon": self.phon,
                "bands": self.bands,
                "compression": self.compression,
                "frame_weighting": self.frame_weighting,
                "min_frame_weight": self.min_frame_weight,
                "distance": self.distance,
            }
        )
        return config


@register
class PESQLoss(keras.losses.Loss):
    """Differentiable PESQ: a keras.ops model of ITU-T P.862 for time-aligned signals.

    ``mos(clean, degraded)`` predicts, per example, the MOS-LQO the ``pesq`` package
    gives (P.862.2 for ``mode="wb"``, P.862 mapped by P.862.1 for ``"nb"``), through
    the Recommendation's stages (``spectral_restore.p862``): level alignment,
    IRS / wide-band input filter, Bark power spectra of 32 ms Hann frames,
    frequency-response and short-term gain compensation, Zwicker loudness,
    symmetric and asymmetric disturbance with the deadzone, L_6 over split-second
    intervals and L_2 over time, with P.862's delay search simplified to one delay
    per example (P.862: one per utterance) and each bad interval re-aligned by its
    own delay (delays found without gradient; ``delay_search=False`` takes the
    signals as aligned).

    Formula: ``loss = (MOS_max - mos(y_true, y_pred)) / (MOS_max - 1)`` with
    ``MOS_max`` the score of identical signals (4.644 wide band, 4.549 narrow
    band), so 0 is a perfect score and about 1 the worst.

    Inputs are waveforms ``[batch, samples]`` (or ``[batch, samples, 1]``) of at
    least 0.25 s at ``sample_rate`` (8000 or 16000 Hz; wide band needs 16000). The
    score is level-independent, as PESQ's is. Gradients are finite on silence and
    on identical inputs (every root is taken of its argument plus 1e-12).

    Args:
        sample_rate: int. 8000 or 16000. Defaults to 16000.
        mode: str. "wb" (P.862.2) or "nb" (P.862). Defaults to "wb".
        delay_search: bool or str. True: one delay per example, searched in the
            graph (any backend, XLA included); "utterance": P.862's own alignment
            (utterances found, aligned and split as the Recommendation does), run on
            the host through ``tf.numpy_function`` / ``jax.pure_callback`` (no XLA;
            about 0.25 s per 4 s example on one CPU core): the closest match to the
            reference, for evaluation; False: the signals are taken as aligned.
            Defaults to True.
        reduction: str. Keras reduction. Defaults to "sum_over_batch_size".
        name: str. Defaults to "pesq_loss".
        dtype: compute dtype. Defaults to float32.

    Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(16000) / 16000
    >>> clean = (np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 4 * t)))[None].astype("float32")
    >>> noisy = clean + 0.05 * rng.standard_normal(clean.shape).astype("float32")
    >>> loss = PESQLoss()
    >>> round(float(loss.mos(clean, clean)[0]), 2), bool(loss.mos(clean, noisy)[0] < 4.0)
    (4.64, True)

    Reference: ITU-T P.862 (02/2001), P.862.1 (11/2003), P.862.2 (11/2005); the
    structure of a differentiable PESQ follows torch-pesq (van Kuyk et al.,
    arXiv:2303.08233, whose loss targets narrow band only).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        mode: str = "wb",
        delay_search: bool | str = True,
        reduction: str = "sum_over_batch_size",
        name: str = "pesq_loss",
        dtype: DType = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        check_mode(sample_rate, mode)
        self.sample_rate = int(sample_rate)
        self.mode = mode
        self.delay_search = check_delay_search(delay_search)
        self.best_mos = best_mos(mode)

    def mos(self, clean: Tensor, degraded: Tensor) -> Tensor:
        """Predicted MOS-LQO ``[batch]``."""
        clean = as_waveform(ops.cast(clean, "float32"), "clean")
        degraded = as_waveform(ops.cast(degraded, "float32"), "degraded")
        return p862_mos(clean, degraded, self.sample_rate, self.mode, self.delay_search)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return (self.best_mos - self.mos(y_true, y_pred)) / (self.best_mos - 1.0)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"sample_rate": self.sample_rate, "mode": self.mode, "delay_search": self.delay_search}
        )
        return config
