"""Phase-aware losses: complex STFT distance and phase consistency / anti-wrapping terms."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from spectral_restore import spectral
from spectral_restore._typing import Tensor
from spectral_restore.checks import check_choice, check_non_negative
from spectral_restore.losses.base import (
    ELEMENTWISE_DISTANCES,
    SpectralLoss,
    elementwise_distance,
    per_example_mean,
    per_example_sum,
)

register = keras.saving.register_keras_serializable(package="spectral_restore")


@register
class ComplexSTFTLoss(SpectralLoss):
    """Distance between complex STFTs, optionally power-law compressed.

    Formula: ``mean_{t,k} [d(Re C(Y), Re C(Yhat)) + d(Im C(Y), Im C(Yhat))]`` per
    example, with ``C(X) = |X|^c exp(j angle X)`` (``c = compress_exponent``;
    ``None`` means no compression, ``C(X) = X``) and ``d`` the squared ("l2")
    or absolute ("l1") difference. Magnitudes are floored at 1e-6 before the
    power law so its gradient stays finite.

    Args:
        compress_exponent: float or None. Defaults to 0.3 (CMGAN, MP-SENet).
        distance: str. "l2" or "l1". Defaults to "l2".
        stft_config, input_format, reduction, name, dtype: see ``SpectralLoss``.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2, 4000)).astype("float32")
    >>> float(ComplexSTFTLoss()(x, x))
    0.0

    Reference: Cao et al., "CMGAN" (Interspeech 2022), L_RI; Lu et al.,
    "MP-SENet" (Interspeech 2023), L_Com.
    """

    def __init__(
        self, compress_exponent: float | None = 0.3, distance: str = "l2", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if compress_exponent is not None:
            compress_exponent = check_non_negative("compress_exponent", compress_exponent)
            if not 0.0 < compress_exponent <= 1.0:
                raise ValueError(
                    f"`compress_exponent` must be in (0, 1]. Received: {compress_exponent}"
                )
        self.compress_exponent = compress_exponent
        self.distance = check_choice("distance", distance, ELEMENTWISE_DISTANCES)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        rt, it, rp, ip = self.spectra(y_true, y_pred)
        if self.compress_exponent is not None:
            rt, it = spectral.compress_complex(rt, it, self.compress_exponent)
            rp, ip = spectral.compress_complex(rp, ip, self.compress_exponent)
        return per_example_mean(
            elementwise_distance(rt, rp, self.distance)
            + elementwise_distance(it, ip, self.distance)
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "compress_exponent": self.compress_exponent,
            "distance": self.distance,
        }


def anti_wrap(x: Tensor) -> Tensor:
    """Anti-wrapping function ``|x - 2 pi round(x / (2 pi))|``: distance of a phase
    difference to the nearest multiple of 2 pi, in [0, pi]."""
    two_pi = 2.0 * math.pi
    return ops.abs(x - two_pi * ops.round(x / two_pi))


@register
class PhaseConsistencyLoss(SpectralLoss):
    """STFT consistency and anti-wrapping phase losses.

    Formula: the weighted sum of
    - consistency: ``mean_{t,k} |Yhat - STFT(iSTFT(Yhat))|^2``, the energy of the
      part of a predicted spectrogram that no waveform has (only for
      ``input_format="spectrogram"``: the STFT of a waveform is always
      consistent, so the term is not computed for waveforms);
    - instantaneous phase: ``E_w[aw(phi_hat - phi)]``;
    - group delay: ``E_w[aw(D_f phi_hat - D_f phi)]``, ``D_f`` the difference
      along frequency;
    - instantaneous frequency: ``E_w[aw(D_t phi_hat - D_t phi)]``, ``D_t`` the
      difference along time;
    with ``aw`` the anti-wrapping function (:func:`anti_wrap`) and ``E_w`` the
    mean weighted by the clean magnitude ``|Y|`` (for differences, the geometric
    mean of the two bins' magnitudes), so silent bins, whose phase is noise,
    do not dominate. ``magnitude_weighted=False`` gives the plain mean of
    MP-SENet. Phases of bins below 1e-6 magnitude count as 0 (no NaN gradient).
    Units: the phase terms are radians in [0, pi].

    Args:
        consistency_weight: float or None. None means 1 for spectrogram inputs
            and 0 (not computed) for waveforms. Defaults to None.
        instantaneous_phase_weight: float. Defaults to 1.
        group_delay_weight: float. Defaults to 1.
        instantaneous_frequency_weight: float. Defaults to 1.
        magnitude_weighted: bool. Defaults to True.
        stft_config, input_format, reduction, name, dtype: see ``SpectralLoss``.

    A weight of 0 skips its term's computation.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((1, 4000)).astype("float32")
    >>> terms = PhaseConsistencyLoss().terms(x, -x)  # sign flip: every phase off by pi
    >>> round(float(terms["instantaneous_phase"][0]), 3)
    3.142

    Reference: Wisdom et al., "Differentiable consistency constraints for
    improved deep speech enhancement" (ICASSP 2019); Lu et al., "MP-SENet"
    (Interspeech 2023), anti-wrapping losses L_IP, L_GD, L_IAF.
    """

    def __init__(
        self,
        consistency_weight: float | None = None,
        instantaneous_phase_weight: float = 1.0,
        group_delay_weight: float = 1.0,
        instantaneous_frequency_weight: float = 1.0,
        magnitude_weighted: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if consistency_weight is None:
            consistency_weight = 1.0 if self.input_format == "spectrogram" else 0.0
        self.consistency_weight = check_non_negative("consistency_weight", consistency_weight)
        if self.consistency_weight and self.input_format == "waveform":
            raise ValueError(
                "consistency_weight > 0 needs input_format='spectrogram': the STFT of a waveform is "
                f"always consistent. Received: consistency_weight={consistency_weight}"
            )
        self.instantaneous_phase_weight = check_non_negative(
            "instantaneous_phase_weight", instantaneous_phase_weight
        )
        self.group_delay_weight = check_non_negative("group_delay_weight", group_delay_weight)
        self.instantaneous_frequency_weight = check_non_negative(
            "instantaneous_frequency_weight", instantaneous_frequency_weight
        )
        if not any(self._weights().values()):
            raise ValueError("All term weights are 0: nothing to compute")
        self.magnitude_weighted = bool(magnitude_weighted)

    def _weights(self):
        return {
            "consistency": self.consistency_weight,
            "instantaneous_phase": self.instantaneous_phase_weight,
            "group_delay": self.group_delay_weight,
            "instantaneous_frequency": self.instantaneous_frequency_weight,
        }

    def _weighted_mean(self, values, weights):
        if not self.magnitude_weighted:
            return per_example_mean(values)
        return per_example_sum(values * weights) / ops.maximum(per_example_sum(weights), 1e-12)

    def terms(self, y_true: Tensor, y_pred: Tensor) -> dict[str, Tensor]:
        """Per-example value of every term with a non-zero weight, by name."""
        y_true = ops.convert_to_tensor(y_true, self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        rt, it, rp, ip = self.spectra(y_true, y_pred)
        weights = self._weights()
        results = {}
        if weights["consistency"]:
            # Without `length`, istft returns exactly the samples that re-analyse
            # into the same number of frames, centred or not.
            wave = spectral.istft(rp, ip, self.stft_config)
            rc, ic = spectral.stft(wave, self.stft_config)
            results["consistency"] = per_example_mean(ops.square(rp - rc) + ops.square(ip - ic))
        if not (
            weights["instantaneous_phase"]
            or weights["group_delay"]
            or weights["instantaneous_frequency"]
        ):
            return results
        phase_true = spectral.phase(rt, it)
        phase_pred = spectral.phase(rp, ip)
        mag = ops.stop_gradient(spectral.magnitude(rt, it))
        if weights["instantaneous_phase"]:
            results["instantaneous_phase"] = self._weighted_mean(
                anti_wrap(phase_pred - phase_true), mag
            )
        if weights["group_delay"]:
            diff_true = phase_true[:, :, 1:] - phase_true[:, :, :-1]
            diff_pred = phase_pred[:, :, 1:] - phase_pred[:, :, :-1]
            pair = ops.sqrt(mag[:, :, 1:] * mag[:, :, :-1])
            results["group_delay"] = self._weighted_mean(anti_wrap(diff_pred - diff_true), pair)
        if weights["instantaneous_frequency"]:
            diff_true = phase_true[:, 1:] - phase_true[:, :-1]
            diff_pred = phase_pred[:, 1:] - phase_pred[:, :-1]
            pair = ops.sqrt(mag[:, 1:] * mag[:, :-1])
            results["instantaneous_frequency"] = self._weighted_mean(
                anti_wrap(diff_pred - diff_true), pair
            )
        return results

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        weights = self._weights()
        total = 0.0
        for name, value in self.terms(y_true, y_pred).items():
            total = total + weights[name] * value
        return total

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({f"{name}_weight": value for name, value in self._weights().items()})
        config["magnitude_weighted"] = self.magnitude_weighted
        return config
