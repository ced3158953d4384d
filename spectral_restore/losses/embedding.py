"""Perceptual embedding loss: distances between activations of a frozen pretrained audio network."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
from keras import ops

from spectral_restore._typing import DType, Tensor
from spectral_restore.audio_io import check_sample_rate
from spectral_restore.checks import check_choice
from spectral_restore.losses.base import as_waveform, elementwise_distance, per_example_mean

register = keras.saving.register_keras_serializable(package="spectral_restore")

EMBEDDINGS = ("musicnn", "openl3")
EMBEDDING_DISTANCES = ("l1", "l2", "cosine")
NORMALIZATIONS = ("variance", "running_mean", None)
# Layers compared when `layers` is None: the time-resolved maps and the summary layer.
DEFAULT_LAYERS = {
    "musicnn": ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "penultimate"),
    "vgg": ("pool1", "pool2", "pool3", "pool4", "pool5"),
    "openl3": ("pool1", "pool2", "pool3", "embedding"),
}
NORM_FLOOR = 1e-8


class _KerasModelEmbedding:
    """Adapts a user's ``keras.Model`` (waveform in) to the ``embed`` interface."""

    def __init__(self, model, layer_names):
        self.model = model
        if layer_names is not None:
            missing = [
                name for name in layer_names if name not in [layer.name for layer in model.layers]
            ]
            if missing:
                raise ValueError(
                    f"`layers` names {missing} are not layers of {model.name!r}; its layers are "
                    f"{[layer.name for layer in model.layers]}"
                )
            outputs = {name: model.get_layer(name).output for name in layer_names}
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            self.model = keras.Model(inputs, outputs, name=f"{model.name}_features")
        self.model.trainable = False

    def embed(self, waveform, sample_rate):
        outputs = self.model(waveform)
        if isinstance(outputs, dict):
            return dict(outputs)
        if isinstance(outputs, (list, tuple)):
            return {f"output_{i}": value for i, value in enumerate(outputs)}
        return {"output": outputs}


def load_embedding(
    embedding: str, options: Mapping[str, Any] | None
) -> tuple[keras.Model, Callable[[Tensor, int], dict[str, Tensor]], str]:
    """The network named by ``embedding`` with ``options`` (see AudioEmbeddingLoss)."""
    options = dict(options or {})
    if embedding == "musicnn":
        from spectral_restore.embeddings.musicnn import load_musicnn

        unknown = set(options) - {"model", "checkpoint"}
        if unknown:
            raise ValueError(
                f"Unknown musicnn `embedding_options` {sorted(unknown)}; known: model, checkpoint"
            )
        network = load_musicnn(options.get("model", "MTT_musicnn"), options.get("checkpoint"))
        return network, network.embed, network.architecture
    if embedding == "openl3":
        from spectral_restore.embeddings.openl3 import load_openl3

        hop_seconds = options.pop("hop_seconds", 0.5)
        center = options.pop("center", True)
        unknown = set(options) - {"input_repr", "content_type", "embedding_size", "weights"}
        if unknown:
            raise ValueError(
                f"Unknown openl3 `embedding_options` {sorted(unknown)}; known: input_repr, content_type, "
                "embedding_size, weights, hop_seconds, center"
            )
        network = load_openl3(**options)

        def embed(waveform, sample_rate):
            return network.embed(waveform, sample_rate, hop_seconds=hop_seconds, center=center)

        return network, embed, "openl3"
    raise ValueError(
        f"`embedding` must be one of {EMBEDDINGS}, a keras.Model taking waveforms or the path of a "
        f"saved .keras model. Received: {embedding!r}"
    )


@register
class AudioEmbeddingLoss(keras.losses.Loss):
    """Distance between a frozen pretrained audio network's activations on clean and restored audio.

    Formula: ``L = sum_l w_l d_l(phi_l(y), phi_l(yhat)) / N_l / sum_l w_l`` per example,
    ``phi_l`` the network's activation ``l`` (computed in float32, resampling and
    framing inside, differentiable with respect to ``yhat``; ``phi_l(y)`` carries
    no gradient), ``d_l`` the mean over the activation's elements of
    ``|a - b|`` ("l1"), ``(a - b)^2`` ("l2"), or over its positions of
    ``1 - cos(a, b)`` along the last (feature) axis ("cosine"), and ``N_l`` the
    per-layer normaliser: raw activations of different layers differ by orders
    of magnitude.

    - ``normalization="variance"``: ``N_l`` is the variance (l2) or standard
      deviation (l1) of the example's clean activation over all its elements, plus
      1e-8: every layer contributes on one scale, the loss is invariant to rescaling
      a layer, and an example's value does not depend on the rest of the batch.
    - ``"running_mean"``: ``N_l`` is the bias-corrected exponential moving average
      (``decay``) of the layer's batch-mean distance, updated at every call (the
      TensorFlow backend's stateful variables; it keeps each layer's term near 1).
    - ``None``: raw distances. Cosine distances are never normalised (unitless).

    Networks:

    - ``"musicnn"`` (default): the MagnaTagATune musicnn tagger, pretrained weights
      read from the installed ``musicnn`` wheel (``pip install --no-deps musicnn``);
      16 kHz log-mel front end. ``embedding_options``: ``model`` (one of
      ``spectral_restore.embeddings.musicnn.MODELS``; vgg models compare 3 s
      patches), ``checkpoint`` (a checkpoint prefix instead of the wheel's).
    - ``"openl3"``: the OpenL3 audio network; ``embedding_options``: ``weights``
      (path of the official ``.h5``/``.h5.gz`` file or its folder; None looks in an
      installed ``openl3`` package), ``input_repr`` ("mel256"), ``content_type``
      ("music"), ``embedding_size`` (6144), ``hop_seconds`` (0.5, between 1 s
      windows), ``center`` (True).
    - a ``keras.Model`` mapping waveforms ``[batch, samples]`` at ``sample_rate`` to
      a tensor, a list or a dict of tensors, or the path of such a model saved as
      ``.keras``; ``layers`` then names its layers (a sub-model exposes them) or,
      when None, its outputs are compared.

    Args:
        embedding: str or keras.Model. Defaults to "musicnn".
        layers: list of str or None. Activations to compare. Defaults to
            ``DEFAULT_LAYERS`` of the network (all outputs of a user model).
        distance: str. "l1", "l2" or "cosine". Defaults to "l1".
        layer_weights: dict ``{layer: weight}``, list aligned with ``layers`` or None
            (all 1). Defaults to None.
        normalization: str or None. "variance", "running_mean" or None. Defaults to
            "variance".
        sample_rate: int. Rate of the waveforms. Defaults to 16000.
        embedding_options: dict or None. Options of the named network (above).
        decay: float. Moving-average decay of "running_mean". Defaults to 0.99.
        reduction, name, dtype: as for ``keras.losses.Loss``.

    Example:
    >>> import numpy as np
    >>> loss = AudioEmbeddingLoss("musicnn")
    >>> rng = np.random.default_rng(0)
    >>> clean = (0.3 * np.sin(np.arange(32000) * 0.05) * rng.uniform(0.5, 1, 32000))[None].astype("float32")
    >>> noisy = clean + 0.05 * rng.standard_normal(clean.shape).astype("float32")
    >>> round(float(loss(clean, clean)), 6), bool(loss(clean, noisy) > 0.1)
    (0.0, True)

    Reference: the deep-feature loss of Germain, Chen, Koltun, "Speech Denoising
    with Deep Feature Losses", Interspeech 2019; networks: Pons & Serra (musicnn,
    2019), Cramer et al. (OpenL3, ICASSP 2019).
    """

    def __init__(
        self,
        embedding: str | keras.Model = "musicnn",
        layers: Sequence[str] | None = None,
        distance: str = "l1",
        layer_weights: Mapping[str, float] | Sequence[float] | None = None,
        normalization: str | None = "variance",
        sample_rate: int = 16000,
        embedding_options: Mapping[str, Any] | None = None,
        decay: float = 0.99,
        reduction: str = "sum_over_batch_size",
        name: str = "audio_embedding_loss",
        dtype: DType = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.distance = check_choice("distance", distance, EMBEDDING_DISTANCES)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.sample_rate = check_sample_rate(sample_rate)
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"`decay` must be in (0, 1). Received: decay={decay!r}")
        self.decay = float(decay)
        self.embedding_options = dict(embedding_options or {})
        self.embedding = embedding
        if isinstance(embedding, keras.Model) or (
            isinstance(embedding, str) and embedding.endswith(".keras")
        ):
            if self.embedding_options:
                raise ValueError("`embedding_options` apply to 'musicnn' and 'openl3' only")
            model = embedding
            if isinstance(embedding, str):
                if not os.path.isfile(embedding):
                    raise ValueError(f"`embedding` file {embedding!r} does not exist")
                model = keras.saving.load_model(embedding)
            adapter = _KerasModelEmbedding(model, layers)
            self.network, self._embed, kind = adapter.model, adapter.embed, None
        elif isinstance(embedding, str):
            self.network, self._embed, kind = load_embedding(embedding, self.embedding_options)
        else:
            raise TypeError(
                "`embedding` must be 'musicnn', 'openl3', a keras.Model or a .keras path. "
                f"Received type {type(embedding).__name__}"
            )
        self.layers = tuple(layers) if layers is not None else DEFAULT_LAYERS.get(kind)
        if kind is not None:
            unknown = [layer for layer in self.layers if layer not in self.network.feature_names]
            if unknown:
                raise ValueError(
                    f"`layers` {unknown} are not activations of {embedding!r}; available: "
                    f"{list(self.network.feature_names)}"
                )
        self.layer_weights = self._check_layer_weights(layer_weights)
        self._running = None
        if self.normalization == "running_mean":
            if keras.backend.backend() != "tensorflow":
                raise ValueError(
                    "normalization='running_mean' keeps state between calls and needs the TensorFlow "
                    f"backend (this is {keras.backend.backend()!r}); use 'variance'"
                )
            # One running mean per compared activation: the named layers, or a user model's outputs.
            terms = len(self.layers) if self.layers is not None else len(self.network.outputs)
            self._running = keras.Variable(
                ops.zeros((terms,)), trainable=False, name="running_mean", dtype="float32"
            )
            self._steps = keras.Variable(
                0.0, trainable=False, name="running_steps", dtype="float32"
            )

    def _check_layer_weights(self, layer_weights):
        if layer_weights is None:
            return None
        if self.layers is None:
            raise ValueError("`layer_weights` need `layers` (names to weigh)")
        if isinstance(layer_weights, dict):
            unknown = set(layer_weights) - set(self.layers)
            if unknown:
                raise ValueError(
                    f"`layer_weights` names {sorted(unknown)} are not in `layers` {list(self.layers)}"
                )
            weights = [layer_weights.get(layer, 1.0) for layer in self.layers]
        else:
            weights = list(layer_weights)
            if len(weights) != len(self.layers):
                raise ValueError(
                    f"`layer_weights` has {len(weights)} entries for {len(self.layers)} layers {list(self.layers)}"
                )
        if (
            any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise ValueError(
                f"`layer_weights` must be numbers >= 0, not all 0. Received: {layer_weights!r}"
            )
        return {layer: float(w) for layer, w in zip(self.layers, weights)}

    def features(self, waveform: Tensor) -> dict[str, Tensor]:
        """The compared activations of waveforms ``[batch, samples]``: ``{layer: tensor}``."""
        waveform = as_waveform(ops.cast(ops.convert_to_tensor(waveform), "float32"), "waveform")
        features = self._embed(waveform, self.sample_rate)
        names = self.layers if self.layers is not None else tuple(features)
        return {name: ops.cast(features[name], "float32") for name in names}

    def _distance(self, clean, restored):
        if self.distance == "cosine":
            dot = ops.sum(clean * restored, axis=-1)
            norms = ops.sqrt(
                ops.sum(ops.square(clean), axis=-1) * ops.sum(ops.square(restored), axis=-1) + 1e-12
            )
            return per_example_mean(1.0 - dot / norms)
        return per_example_mean(elementwise_distance(clean, restored, self.distance))

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        clean = as_waveform(ops.cast(y_true, "float32"), "y_true")
        restored = as_waveform(ops.cast(y_pred, "float32"), "y_pred")
        batch = ops.shape(clean)[0]
        # Two passes: the clean one has no gradient to carry, so back-propagation
        # runs through the restored half only.
        clean_features = self.features(ops.stop_gradient(clean))
        restored_features = self.features(restored)
        distances = []
        for name, restored_value in restored_features.items():
            clean_value = clean_features[name]
            d = self._distance(clean_value, restored_value)
            if self.normalization == "variance" and self.distance != "cosine":
                variance = ops.var(ops.reshape(clean_value, (batch, -1)), axis=-1)
                scale = variance if self.distance == "l2" else ops.sqrt(variance + NORM_FLOOR)
                d = d / (scale + NORM_FLOOR)
            distances.append(d)
        distances = ops.stack(distances, axis=-1)
        if self.normalization == "running_mean" and self.distance != "cosine":
            distances = distances / (self._update_running_mean(distances) + NORM_FLOOR)
        weights = (
            [1.0] * len(restored_features)
            if self.layer_weights is None
            else [self.layer_weights[name] for name in restored_features]
        )
        weights = ops.convert_to_tensor(weights, "float32")
        return ops.sum(distances * weights, axis=-1) / ops.sum(weights)

    def _update_running_mean(self, distances):
        batch_mean = ops.stop_gradient(ops.mean(distances, axis=0))
        self._running.assign(self.decay * self._running + (1.0 - self.decay) * batch_mean)
        self._steps.assign(self._steps + 1.0)
        return self._running / (1.0 - ops.power(self.decay, self._steps))

    def get_config(self) -> dict[str, Any]:
        if isinstance(self.embedding, keras.Model):
            raise ValueError(
                "An AudioEmbeddingLoss over an in-memory keras.Model cannot be serialized (its weights "
                "are not part of a config): save the network with `model.save('net.keras')` and pass "
                "embedding='net.keras'"
            )
        config = super().get_config()
        config.update(
            {
                "embedding": self.embedding,
                "layers": list(self.layers) if self.layers is not None else None,
                "distance": self.distance,
                "layer_weights": self.layer_weights,
                "normalization": self.normalization,
                "sample_rate": self.sample_rate,
                "embedding_options": self.embedding_options,
                "decay": self.decay,
            }
        )
        return config


__all__ = ["DEFAULT_LAYERS", "EMBEDDINGS", "AudioEmbeddingLoss", "load_embedding"]
