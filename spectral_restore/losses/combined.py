"""Weighted sums of named loss terms."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
from keras import ops

from spectral_restore._typing import DType, Tensor
from spectral_restore.losses.embedding import AudioEmbeddingLoss
from spectral_restore.losses.perceptual import LoudnessWeightedLoss, PESQLoss
from spectral_restore.losses.phase import ComplexSTFTLoss, PhaseConsistencyLoss
from spectral_restore.losses.reconstruction import (
    LogSpectrogramLoss,
    MultiResolutionSTFTLoss,
    SpectralConvergence,
    SpectrogramMSE,
    WaveformLoss,
)

register = keras.saving.register_keras_serializable(package="spectral_restore")

FAMILIES = ("recon", "phase", "perc", "embed", "adv", "metric", "time")
TERM_NAME = re.compile(r"^([a-z0-9_]+)/([a-z0-9_]+)$")

# Known term names and the loss each builds when given only a weight.
TERM_FACTORIES = {
    "recon/mse": SpectrogramMSE,
    "recon/log_mag": LogSpectrogramLoss,
    "recon/sc": SpectralConvergence,
    "recon/mrstft": MultiResolutionSTFTLoss,
    "phase/complex": ComplexSTFTLoss,
    "phase/anti_wrap": PhaseConsistencyLoss,
    "phase/consistency": lambda: PhaseConsistencyLoss(
        input_format="spectrogram",
        instantaneous_phase_weight=0.0,
        group_delay_weight=0.0,
        instantaneous_frequency_weight=0.0,
    ),
    "perc/loudness": LoudnessWeightedLoss,
    "perc/pesq": PESQLoss,
    "time/l1": WaveformLoss,
    "embed/musicnn": AudioEmbeddingLoss,
    "embed/openl3": lambda **kwargs: AudioEmbeddingLoss("openl3", **kwargs),
}


def register_term(name: str, factory: Callable[[], keras.losses.Loss]) -> None:
    """Makes ``name`` a known term built by ``factory()`` when given only a weight."""
    check_term_name(name)
    TERM_FACTORIES[name] = factory


def check_term_name(name):
    match = TERM_NAME.match(name) if isinstance(name, str) else None
    if not match or match.group(1) not in FAMILIES:
        raise ValueError(
            f"Unknown loss term name {name!r}: names are '<family>/<term>' with family one of "
            f"{FAMILIES} (e.g. 'recon/log_mag')"
        )
    return name


def _normalise_terms(terms):
    if isinstance(terms, dict):
        items = [(name, spec) for name, spec in terms.items()]
    elif isinstance(terms, (list, tuple)):
        items = []
        for entry in terms:
            if not isinstance(entry, (list, tuple)) or len(entry) not in (2, 3):
                raise ValueError(
                    f"A term must be (name, loss, weight) or (name, weight). Received: {entry!r}"
                )
            items.append((entry[0], tuple(entry[1:]) if len(entry) == 3 else entry[1]))
    else:
        raise TypeError(
            f"`terms` must be a dict or a list of tuples. Received type {type(terms).__name__}"
        )
    if not items:
        raise ValueError("`terms` is empty: a CombinedLoss needs at least one term")
    normalised = []
    seen = set()
    for name, spec in items:
        check_term_name(name)
        if name in seen:
            raise ValueError(f"Duplicate loss term name {name!r}")
        seen.add(name)
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            if name not in TERM_FACTORIES:
                raise ValueError(
                    f"Term {name!r} is given only a weight but is not a known term; known: "
                    f"{sorted(TERM_FACTORIES)}. Give (loss, weight) instead."
                )
            loss, weight = TERM_FACTORIES[name](), spec
        elif isinstance(spec, keras.losses.Loss):
            loss, weight = spec, 1.0
        elif isinstance(spec, (list, tuple)) and len(spec) == 2:
            loss, weight = spec
        else:
            raise ValueError(
                f"Term {name!r}: expected (loss, weight), a loss or a weight. Received: {spec!r}"
            )
        if not isinstance(loss, keras.losses.Loss):
            raise TypeError(
                f"Term {name!r}: the loss must be a keras.losses.Loss. Received {type(loss).__name__}"
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(
                f"Term {name!r}: the weight must be a number >= 0. Received: {weight!r}"
            )
        normalised.append((name, loss, float(weight)))
    return normalised


@register
class CombinedLoss(keras.losses.Loss):
    """Weighted sum of named loss terms.

    Formula: ``L = sum_i w_i L_i(y, yhat)`` per example, ``L_i`` the per-example
    value of term ``i`` (before reduction). Terms with weight 0 are not
    computed. Names are ``<family>/<term>`` (families: recon, phase, perc,
    embed, adv, metric, time); they name the terms alike in logs, configs and
    weight overrides, and an unknown or duplicate name is an error.

    Args:
        terms: dict ``{name: (loss, weight)}``, ``{name: weight}`` for a known
            name (``TERM_FACTORIES``), or a list of ``(name, loss, weight)``.
        reduction, name, dtype: as for ``keras.losses.Loss``.

    To log every term during ``model.fit``, pass ``metrics=loss.term_metrics()``
    to ``compile`` (each metric re-evaluates its term on the batch, forward
    only), or use :meth:`compute_terms` in a custom ``train_step``.

    Example:
    >>> import numpy as np
    >>> loss = CombinedLoss({"recon/log_mag": 1.0, "recon/sc": 0.5, "time/l1": 0.0})
    >>> x = np.random.default_rng(0).standard_normal((2, 4000)).astype("float32")
    >>> sorted(loss.compute_terms(x, 0.5 * x))
    ['recon/log_mag', 'recon/sc', 'total']
    """

    def __init__(
        self,
        terms: Mapping[str, Any] | Sequence[tuple[Any, ...]],
        reduction: str = "sum_over_batch_size",
        name: str = "combined",
        dtype: DType = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.terms = _normalise_terms(terms)

    @property
    def weights(self) -> dict[str, float]:
        """``{name: weight}`` of every term."""
        return {name: weight for name, _, weight in self.terms}

    def with_weights(self, overrides: Mapping[str, float]) -> CombinedLoss:
        """A copy with some weights replaced; an unknown name raises ``ValueError``."""
        unknown = sorted(set(overrides) - set(self.weights))
        if unknown:
            raise ValueError(
                f"Unknown loss term(s) {unknown}; this loss has {sorted(self.weights)}"
            )
        return CombinedLoss(
            [(name, loss, overrides.get(name, weight)) for name, loss, weight in self.terms],
            reduction=self.reduction,
            name=self.name,
        )

    def compute_terms(self, y_true: Tensor, y_pred: Tensor) -> dict[str, Tensor]:
        """Per-example value of every active (non-zero weight) term, unweighted, and
        their weighted sum under "total"."""
        y_true = ops.convert_to_tensor(y_true, self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        values = {}
        total = None
        for name, loss, weight in self.terms:
            if weight == 0:
                continue
            value = ops.cast(loss.call(y_true, y_pred), self.dtype)
            values[name] = value
            total = weight * value if total is None else total + weight * value
        if total is None:
            total = ops.zeros((ops.shape(y_true)[0],), dtype=self.dtype)
        values["total"] = total
        return values

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self.compute_terms(y_true, y_pred)["total"]

    def term_metrics(self) -> list[TermMetric]:
        """One Keras metric per active term, named like the term."""
        return [TermMetric(loss, name=name) for name, loss, weight in self.terms if weight]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["terms"] = [
            {"name": name, "weight": weight, "loss": keras.saving.serialize_keras_object(loss)}
            for name, loss, weight in self.terms
        ]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CombinedLoss:
        config = dict(config)
        config["terms"] = [
            (term["name"], keras.saving.deserialize_keras_object(term["loss"]), term["weight"])
            for term in config["terms"]
        ]
        return cls(**config)


@register
class TermMetric(keras.metrics.Mean):
    """Running mean of one loss term's per-example value (honours ``sample_weight``)."""

    def __init__(
        self, loss: keras.losses.Loss | dict[str, Any], name: str | None = None, dtype: DType = None
    ) -> None:
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        super().__init__(name=name or loss.name, dtype=dtype)
        self.loss = loss

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> Any:
        y_true = ops.convert_to_tensor(y_true, self.loss.dtype)
        y_pred = ops.convert_to_tensor(y_pred, self.loss.dtype)
        return super().update_state(self.loss.call(y_true, y_pred), sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "loss": keras.saving.serialize_keras_object(self.loss),
        }
