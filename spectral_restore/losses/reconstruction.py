"""Reconstruction losses: spectrogram MSE, log-spectrogram distance, spectral
convergence and the multi-resolution STFT loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from spectral_restore import psychoacoustics, spectral
from spectral_restore._typing import DType, Tensor
from spectral_restore.checks import check_choice, check_non_negative
from spectral_restore.losses.base import (
    ELEMENTWISE_DISTANCES,
    SpectralLoss,
    as_waveform,
    elementwise_distance,
    per_example_mean,
    safe_norm,
)

register = keras.saving.register_keras_serializable(package="spectral_restore")

# Floor on the power spectrum before magnitudes and logs (magnitude 1e-4,
# -80 dB re a unit bin); the value auraloss uses, so results agree with it.
LOG_POWER_FLOOR = 1e-8
# Mel bands and weighted bins can fall far below the power floor (an empty mel
# band is exactly 0, A-weighting is -inf dB at DC); logs of them are clamped here.
PROJECTED_MAGNITUDE_FLOOR = 1e-12


@register
class SpectrogramMSE(SpectralLoss):
    """Mean squared error between magnitude (or power) spectrograms.

    Formula: ``mean_{t,k} (|Y_tk|^p - |Yhat_tk|^p)^2`` per example, ``p = 1``
    (magnitude) or ``2`` (power), or ``p = compress_exponent`` for power-law
    compressed magnitudes (0.3 in MP-SENet's magnitude loss); ``|X|`` is
    ``sqrt(max(|X|^2, 1e-12))``.

    Args:
        power: int. 1 for magnitude, 2 for power. Defaults to 1.
        compress_exponent: float or None. If set, compares ``|X|^c`` instead
            (``power`` must be 1). Defaults to None.
        stft_config, input_format, reduction, name, dtype: see ``SpectralLoss``.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2, 4000)).astype("float32")
    >>> float(SpectrogramMSE()(x, x))
    0.0

    Reference: the magnitude MSE of speech enhancement since Xu et al.,
    "A regression approach to speech enhancement based on DNNs" (2015).
    """

    def __init__(
        self, power: int = 1, compress_exponent: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if power not in (1, 2):
            raise ValueError(
                f"`power` must be 1 (magnitude) or 2 (power). Received: power={power!r}"
            )
        if compress_exponent is not None:
            compress_exponent = check_non_negative("compress_exponent", compress_exponent)
            if power != 1 or not 0.0 < compress_exponent <= 1.0:
                raise ValueError(
                    f"`compress_exponent` must be in (0, 1] with power=1. Received: {compress_exponent}"
                )
        self.power = power
        self.compress_exponent = compress_exponent

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        rt, it, rp, ip = self.spectra(y_true, y_pred)
        if self.power == 2:
            a, b = spectral.power(rt, it), spectral.power(rp, ip)
        else:
            a, b = spectral.magnitude(rt, it), spectral.magnitude(rp, ip)
            if self.compress_exponent is not None:
                a = spectral.compress_magnitude(a, self.compress_exponent)
                b = spectral.compress_magnitude(b, self.compress_exponent)
        return per_example_mean(ops.square(a - b))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "power": self.power,
            "compress_exponent": self.compress_exponent,
        }


@register
class LogSpectrogramLoss(SpectralLoss):
    """L1 or L2 distance between log magnitudes.

    Formula: ``mean_{t,k} d(log|Y_tk|, log|Yhat_tk|)`` with
    ``log|X| = 0.5 * log(max(|X|^2, eps))`` (natural log), ``d`` absolute or
    squared difference. The floor ``eps`` on the power spectrum (default 1e-8,
    i.e. magnitudes below 1e-4 / -80 dB count as 1e-4) keeps the log finite on
    silence and stops near-silent bins from dominating.

    Args:
        distance: str. "l1" or "l2". Defaults to "l1".
        eps: float. Power floor. Defaults to 1e-8.
        stft_config, input_format, reduction, name, dtype: see ``SpectralLoss``.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2, 4000)).astype("float32")
    >>> loss = LogSpectrogramLoss(reduction="none")
    >>> [round(float(v), 4) for v in loss(x, np.exp(1.0) * x)]  # every |X| scaled by e
    [1.0, 1.0]

    Reference: Arik et al., "Fast spectrogram inversion using multi-head
    convolutional neural networks" (2018), log-magnitude loss.
    """

    def __init__(self, distance: str = "l1", eps: float = LOG_POWER_FLOOR, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distance = check_choice("distance", distance, ELEMENTWISE_DISTANCES)
        self.eps = check_non_negative("eps", eps)
        if self.eps == 0:
            raise ValueError("`eps` must be > 0: log(0) is -inf")

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        rt, it, rp, ip = self.spectra(y_true, y_pred)
        log_true = 0.5 * ops.log(spectral.power(rt, it, self.eps))
        log_pred = 0.5 * ops.log(spectral.power(rp, ip, self.eps))
        return per_example_mean(elementwise_distance(log_true, log_pred, self.distance))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "distance": self.distance, "eps": self.eps}


@register
class SpectralConvergence(SpectralLoss):
    """Spectral convergence, computed per example.

    Formula: ``|| |Y| - |Yhat| ||_F / || |Y| ||_F`` over the frames and bins of
    each example, magnitudes ``sqrt(max(|X|^2, eps))`` (eps 1e-8). Unlike
    implementations that take the norms over the whole batch, the value of an
    example does not depend on what else is in the batch.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((1, 4000)).astype("float32")
    >>> round(float(SpectralConvergence()(x, 0.5 * x)), 4)
    0.5

    Reference: Arik et al. (2018), eq. 3.
    """

    def __init__(self, eps: float = LOG_POWER_FLOOR, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = check_non_negative("eps", eps)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        rt, it, rp, ip = self.spectra(y_true, y_pred)
        mag_true = spectral.magnitude(rt, it, self.eps)
        mag_pred = spectral.magnitude(rp, ip, self.eps)
        return safe_norm(mag_true - mag_pred) / safe_norm(mag_true)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


def _per_resolution(name, value, count):
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"`{name}` has {len(value)} entries for {count} resolutions")
        return list(value)
    return [value] * count


@register
class MultiResolutionSTFTLoss(keras.losses.Loss):
    """Multi-resolution STFT loss: spectral convergence plus log-magnitude distance,
    averaged over several STFT resolutions.

    Formula: ``(1/R) sum_r [w_sc SC_r + w_log mean|log M_r(y) - log M_r(yhat)| + w_lin mean|M_r(y) - M_r(yhat)|]``,
    where ``M_r`` is the magnitude ``sqrt(max(|X|^2, eps))`` at resolution
    ``r``, optionally weighted per frequency (``frequency_weighting``) and
    projected onto ``n_bins[r]`` mel bands (``scale="mel"``; each resolution may
    have its own band count), and ``SC_r`` is the per-example spectral
    convergence. Every term is per example, so ``reduction="none"`` returns
    ``[batch]`` values. A term whose weight is 0 is not computed.

    Args:
        fft_sizes: list of int. Defaults to (512, 1024, 2048).
        hop_sizes: list of int. Defaults to (50, 120, 240).
        win_lengths: list of int. Defaults to (240, 600, 1200) (Parallel WaveGAN).
        window: str. Defaults to "hann".
        w_sc, w_log_mag, w_lin_mag: float. Term weights. Defaults to 1, 1, 0.
        distance: str. "l1" or "l2" for the magnitude terms. Defaults to "l1".
        scale: str or None. None (linear bins) or "mel". Defaults to None.
        n_bins: int or list of int. Mel bands (per resolution). Needed with
            ``scale="mel"``. Defaults to None.
        sample_rate: int or None. Needed for "mel" and frequency weighting.
        frequency_weighting: str or None. "a", "k" or "iso226": multiplies
            each bin's magnitude by the curve's amplitude gain
            ``10^(W(f)/20)`` before the losses, so perceptually weak bands
            count less. Defaults to None.
        phon: float. Loudness level for "iso226". Defaults to 60.
        eps: float. Power floor. Defaults to 1e-8.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((3, 8000)).astype("float32")
    >>> tuple(MultiResolutionSTFTLoss(reduction="none")(x, 0.5 * x).shape)
    (3,)

    Reference: Yamamoto et al., "Parallel WaveGAN" (ICASSP 2020), sec. 2.3;
    Steinmetz & Reiss, "auraloss" (DMRN 2020) for the mel/weighted variants.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (50, 120, 240),
        win_lengths: Sequence[int] = (240, 600, 1200),
        window: str = "hann",
        w_sc: float = 1.0,
        w_log_mag: float = 1.0,
        w_lin_mag: float = 0.0,
        distance: str = "l1",
        scale: str | None = None,
        n_bins: int | Sequence[int] | None = None,
        sample_rate: int | None = None,
        frequency_weighting: str | None = None,
        phon: float = 60.0,
        eps: float = LOG_POWER_FLOOR,
        reduction: str = "sum_over_batch_size",
        name: str = "multi_resolution_stft",
        dtype: DType = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        count = len(fft_sizes)
        if count == 0 or len(hop_sizes) != count or len(win_lengths) != count:
            raise ValueError(
                "`fft_sizes`, `hop_sizes` and `win_lengths` must be non-empty and of equal length. "
                f"Received {len(fft_sizes)}, {len(hop_sizes)}, {len(win_lengths)}"
            )
        self.fft_sizes = [int(v) for v in fft_sizes]
        self.hop_sizes = [int(v) for v in hop_sizes]
        self.win_lengths = [int(v) for v in win_lengths]
        self.window = window
        self.configs = [
            spectral.STFTConfig(frame_length=w, hop_length=h, fft_length=n, window=window)
            for n, h, w in zip(self.fft_sizes, self.hop_sizes, self.win_lengths)
        ]
        self.w_sc = check_non_negative("w_sc", w_sc)
        self.w_log_mag = check_non_negative("w_log_mag", w_log_mag)
        self.w_lin_mag = check_non_negative("w_lin_mag", w_lin_mag)
        if self.w_sc + self.w_log_mag + self.w_lin_mag == 0:
            raise ValueError("At least one of `w_sc`, `w_log_mag`, `w_lin_mag` must be > 0")
        self.distance = check_choice("distance", distance, ELEMENTWISE_DISTANCES)
        self.scale = check_choice("scale", scale, (None, "mel"))
        self.frequency_weighting = check_choice(
            "frequency_weighting", frequency_weighting, (None,) + psychoacoustics.WEIGHTINGS
        )
        self.phon = float(phon)
        self.eps = check_non_negative("eps", eps)
        self.sample_rate = sample_rate
        needs_rate = scale == "mel" or frequency_weighting not in (None, "none")
        if needs_rate and sample_rate is None:
            raise ValueError("`sample_rate` is required with scale='mel' or a frequency_weighting")
        if scale == "mel" and n_bins is None:
            raise ValueError(
                "`n_bins` (mel bands, one int or one per resolution) is required with scale='mel'"
            )
        self.n_bins = n_bins
        bins_per_resolution = _per_resolution("n_bins", n_bins, count)
        self._projections = []
        for cfg, bands in zip(self.configs, bins_per_resolution):
            matrix = None
            if needs_rate and frequency_weighting not in (None, "none"):
                freqs = psychoacoustics.bin_frequencies(sample_rate, cfg.fft_length)
                gain = 10.0 ** (
                    psychoacoustics.weighting_db(frequency_weighting, freqs, self.phon) / 20.0
                )
                matrix = np.diag(gain)
            if scale == "mel":
                mel = spectral.mel_filterbank(int(bands), sample_rate, cfg.fft_length).astype(
                    np.float64
                )
                matrix = mel if matrix is None else matrix @ mel
            self._projections.append(None if matrix is None else matrix.astype(np.float32))

    def resolution_terms(self, y_true: Tensor, y_pred: Tensor) -> list[dict[str, Tensor]]:
        """Per resolution, a dict of per-example term values ``{"sc", "log_mag", "lin_mag"}``
        (only the terms with a non-zero weight)."""
        y_true = as_waveform(ops.convert_to_tensor(y_true, self.dtype), "y_true")
        y_pred = as_waveform(ops.convert_to_tensor(y_pred, self.dtype), "y_pred")
        results = []
        for cfg, projection in zip(self.configs, self._projections):
            power_true = spectral.power(*spectral.stft(y_true, cfg), self.eps)
            power_pred = spectral.power(*spectral.stft(y_pred, cfg), self.eps)
            mag_true, mag_pred = ops.sqrt(power_true), ops.sqrt(power_pred)
            if projection is not None:
                matrix = ops.convert_to_tensor(projection, dtype=mag_true.dtype)
                mag_true, mag_pred = ops.matmul(mag_true, matrix), ops.matmul(mag_pred, matrix)
            terms = {}
            if self.w_sc:
                terms["sc"] = safe_norm(mag_true - mag_pred) / safe_norm(mag_true)
            if self.w_log_mag:
                if projection is None:
                    log_true, log_pred = 0.5 * ops.log(power_true), 0.5 * ops.log(power_pred)
                else:
                    log_true = ops.log(ops.maximum(mag_true, PROJECTED_MAGNITUDE_FLOOR))
                    log_pred = ops.log(ops.maximum(mag_pred, PROJECTED_MAGNITUDE_FLOOR))
                terms["log_mag"] = per_example_mean(
                    elementwise_distance(log_true, log_pred, self.distance)
                )
            if self.w_lin_mag:
                terms["lin_mag"] = per_example_mean(
                    elementwise_distance(mag_true, mag_pred, self.distance)
                )
            results.append(terms)
        return results

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        total = 0.0
        weights = {"sc": self.w_sc, "log_mag": self.w_log_mag, "lin_mag": self.w_lin_mag}
        for terms in self.resolution_terms(y_true, y_pred):
            for key, value in terms.items():
                total = total + weights[key] * value
        return total / len(self.configs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "fft_sizes": self.fft_sizes,
                "hop_sizes": self.hop_sizes,
                "win_lengths": self.win_lengths,
                "window": self.window,
                "w_sc": self.w_sc,
                "w_log_mag": self.w_log_mag,
                "w_lin_mag": self.w_lin_mag,
                "distance": self.distance,
                "scale": self.scale,
                "n_bins": self.n_bins,
                "sample_rate": self.sample_rate,
                "frequency_weighting": self.frequency_weighting,
                "phon": self.phon,
                "eps": self.eps,
            }
        )
        return config


@register
class WaveformLoss(keras.losses.Loss):
    """Time-domain distance between waveforms.

    Formula: ``mean_n |y_n - yhat_n|`` ("l1") or ``mean_n (y_n - yhat_n)^2`` ("l2")
    per example. The "time" term of MP-SENet (weight 0.2 there).

    Args:
        distance: str. "l1" or "l2". Defaults to "l1".
        reduction, name, dtype: as for ``keras.losses.Loss``.

    Example:
    >>> import numpy as np
    >>> float(WaveformLoss()(np.ones((2, 10), "float32"), np.zeros((2, 10), "float32")))
    1.0

    Reference: Lu et al., "MP-SENet" (Interspeech 2023), L_Time.
    """

    def __init__(
        self,
        distance: str = "l1",
        reduction: str = "sum_over_batch_size",
        name: str = "waveform",
        dtype: DType = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.distance = check_choice("distance", distance, ELEMENTWISE_DISTANCES)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true = as_waveform(y_true, "y_true")
        y_pred = as_waveform(y_pred, "y_pred")
        return per_example_mean(elementwise_distance(y_true, y_pred, self.distance))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "distance": self.distance}
