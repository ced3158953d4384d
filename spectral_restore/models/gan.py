"""Adversarial training of a restoration generator against spectrogram discriminators.

The model, its objectives, compile settings and metrics here are backend-neutral.
The steps that take gradients and apply updates (``train_step``, ``test_step``)
come from ``gan_tensorflow`` (``tf.GradientTape``) or ``gan_jax`` (stateless
calls, ``jax.value_and_grad``), picked by the active Keras backend as Keras picks
its own trainer, and share every objective defined here.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from spectral_restore import backend
from spectral_restore._typing import Tensor
from spectral_restore.audio_io import resample
from spectral_restore.checks import check_choice
from spectral_restore.losses.adversarial import (
    KINDS,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from spectral_restore.losses.combined import CombinedLoss
from spectral_restore.models.terms import attach_term_trackers
from spectral_restore.optimizers import build_optimizer
from spectral_restore.p862.mapping import mos_lqo_from_normalised, normalised_mos
from spectral_restore.p862.model import mos as p862_mos

METRIC_TARGETS = ("surrogate", "reference")
# Of every network when compile() is given none: HiFi-GAN's and MP-SENet's betas.
DEFAULT_OPTIMIZER = {"name": "adam", "learning_rate": 2e-4, "beta_1": 0.8, "beta_2": 0.99}

register = keras.saving.register_keras_serializable(package="spectral_restore")


class UnsupportedBackendSteps:
    """Training steps for a backend RestorationGAN has none for: a clear error."""

    def train_step(self, *args):
        raise NotImplementedError(
            f"RestorationGAN trains under the TensorFlow and JAX backends; the active Keras backend is {backend.name()}"
        )

    test_step = train_step


if backend.name() == "tensorflow":
    from spectral_restore.models.gan_tensorflow import TensorFlowGANSteps as BackendSteps
elif backend.name() == "jax":
    from spectral_restore.models.gan_jax import JAXGANSteps as BackendSteps
else:
    BackendSteps = UnsupportedBackendSteps


def _maybe_loss_scaled(optimizer):
    """Wraps an optimizer for dynamic loss scaling under a mixed_float16 policy."""
    policy = keras.mixed_precision.global_policy()
    if policy.name == "mixed_float16" and not isinstance(
        optimizer, keras.mixed_precision.LossScaleOptimizer
    ):
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def normalised_pesq(clean, estimate, sample_rate, target):
    """:func:`~spectral_restore.p862.mapping.normalised_mos` per example, wide band: from the
    differentiable surrogate (``"surrogate"``, on the accelerator, resampled to 16 kHz
    inside) or the reference ``pesq`` package on the CPU through
    :func:`~spectral_restore.backend.host_call` (``"reference"``; NaN where PESQ
    rejects an example, e.g. a silent crop)."""
    clean, estimate = ops.cast(clean, "float32"), ops.cast(estimate, "float32")
    if target == "surrogate":
        score = p862_mos(
            resample(clean, sample_rate, 16000), resample(estimate, sample_rate, 16000), 16000, "wb"
        )
    else:
        from spectral_restore.metrics import pesq_score

        def reference(c, e):
            return pesq_score(c, e, sample_rate, "wb", processes=1).scores

        score = backend.host_call(
            reference, clean, estimate, result_shape=(None,), result_dtype="float32"
        )
    return normalised_mos(score, "wb")


def masked_squared_error(prediction, target):
    """Mean of ``(prediction - target)^2`` over the examples whose target is finite."""
    valid = ops.isfinite(target)
    error = ops.where(valid, ops.square(prediction - ops.where(valid, target, 0.0)), 0.0)
    return ops.sum(error) / ops.maximum(ops.sum(ops.cast(valid, "float32")), 1.0)


def clip_by_global_norm(grads, limit):
    """``g * limit / max(||grads||, limit)`` for every gradient (None kept), with
    ``||grads||`` the norm of all of them together, as ``tf.clip_by_global_norm``."""
    present = [g for g in grads if g is not None]
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in present))
    factor = limit / ops.maximum(norm, limit)
    return [None if g is None else g * ops.cast(factor, g.dtype) for g in grads]


def float32_outputs(outputs):
    """Every tensor of a discriminator's output structure in float32 (its losses
    are computed in float32 under mixed precision)."""
    return keras.tree.map_structure(lambda x: ops.cast(x, "float32"), outputs)


class OptimizerGroup:
    """The GAN's optimizers, seen by Keras's trainer and callbacks as its ``optimizer``.

    Keras's JAX trainer carries ``model.optimizer.variables`` through each stateless
    step and writes them back; Keras's callbacks (LearningRateScheduler,
    ReduceLROnPlateau, TensorBoard) reach several optimizers through ``.optimizers``.
    Not saved itself: each optimizer is saved under its own attribute
    (``g_optimizer``, ``d_optimizer``, ``m_optimizer``).

    Args:
        pairs: list of (optimizer, network). Each optimizer updates its network's
            trainable variables.
    """

    def __init__(self, pairs):
        self.pairs = list(pairs)

    @property
    def optimizers(self):
        return [optimizer for optimizer, _ in self.pairs]

    @property
    def variables(self):
        return [variable for optimizer in self.optimizers for variable in optimizer.variables]

    @property
    def iterations(self):
        """The generator optimizer's step count (the first pair's)."""
        return self.pairs[0][0].iterations

    @property
    def built(self):
        return all(optimizer.built for optimizer in self.optimizers)

    def build(self, variables=None):
        """Creates each optimizer's state for its own network (``variables``, the
        whole model's, is not needed: Keras passes it); state already built is kept."""
        for optimizer, network in self.pairs:
            if not optimizer.built:
                optimizer.build(network.trainable_variables)


@register
class RestorationGAN(BackendSteps, keras.Model):
    """A generator trained with a :class:`CombinedLoss` plus adversarial and
    feature-matching terms from a discriminator and, optionally, a metric
    discriminator's quality term, under the TensorFlow and JAX backends.

    Each ``train_step`` first updates the discriminator on (clean, generated)
    audio, then the generator on ``sum_i w_i L_i + w_adv L_adv + w_fm L_fm``.
    During the first ``warmup_steps`` steps the adversarial and feature-matching
    terms have weight 0 (the discriminator still learns). Every term is logged by
    name: the CombinedLoss terms, ``adv/gen``, ``adv/feature_matching``,
    ``adv/disc`` and ``g_loss``. Gradients are clipped to a global norm
    (``clip_norm``) per network; under ``mixed_float16`` each optimizer scales its
    loss dynamically (``mixed_bfloat16`` needs no scaling).

    With a ``metric_discriminator`` (MetricGAN-style, :class:`MetricDiscriminator`)
    each step also trains it to predict the normalised wide-band PESQ of the current
    estimates and of the damaged input (and 1 for clean against clean):
    ``(D(c, c) - 1)^2 + (D(c, y) - Q(y))^2 + (D(c, x) - Q(x))^2``, where ``Q`` is the
    differentiable surrogate (``metric_target="surrogate"``: no CPU in the loop,
    any batch) or the reference ``pesq`` package (``"reference"``: examples PESQ
    rejects, e.g. silent crops, are left out one by one instead of discarding the
    batch). The generator adds ``metric_weight * (D(c, y) - 1)^2``. Logged:
    ``metric/disc``, ``metric/gen`` and ``metric/pesq`` (mean target MOS-LQO of the
    estimates: a running PESQ of training).

    The step counter ``gan_step`` and every optimizer's state are saved with the
    model (``.keras``, ``save_weights``), so ``keras.callbacks.BackupAndRestore``
    resumes training exactly; ``model.optimizer`` is an :class:`OptimizerGroup`
    of the optimizers in use.

    Args:
        generator: keras.Model. Waveform to waveform.
        discriminator: keras.Model or None. Waveform to a list of ``(logits,
            features)``; None trains with the metric discriminator alone.
        warmup_steps: int. Generator-only steps before the adversarial terms.
            Defaults to 0.
        metric_discriminator: keras.Model or None. ``(clean, estimate)`` to a
            normalised score per example. Defaults to None.
    """

    def __init__(
        self,
        generator: keras.Model | dict[str, Any],
        discriminator: keras.Model | dict[str, Any] | None = None,
        warmup_steps: int = 0,
        metric_discriminator: keras.Model | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(generator, dict):
            generator = keras.saving.deserialize_keras_object(generator)
        if isinstance(discriminator, dict):
            discriminator = keras.saving.deserialize_keras_object(discriminator)
        if isinstance(metric_discriminator, dict):
            metric_discriminator = keras.saving.deserialize_keras_object(metric_discriminator)
        if discriminator is None and metric_discriminator is None:
            raise ValueError(
                "RestorationGAN needs a `discriminator`, a `metric_discriminator` or both"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.metric_discriminator = metric_discriminator
        self.warmup_steps = int(warmup_steps)
        # "int": int64 under TensorFlow, int32 under JAX (as Keras's optimizer iterations).
        self.gan_step = self.add_weight(
            shape=(), dtype="int", initializer="zeros", trainable=False, name="gan_step"
        )
        self.g_tracker = keras.metrics.Mean(name="g_loss")
        self.d_tracker = keras.metrics.Mean(name="adv/disc")
        self.adv_tracker = keras.metrics.Mean(name="adv/gen")
        self.fm_tracker = keras.metrics.Mean(name="adv/feature_matching")
        self.metric_d_tracker = keras.metrics.Mean(name="metric/disc")
        self.metric_g_tracker = keras.metrics.Mean(name="metric/gen")
        self.metric_pesq_tracker = keras.metrics.Mean(name="metric/pesq")
        attach_term_trackers(self, None)

    def call(self, waveform: Tensor, training: bool = False) -> Tensor:
        return self.generator(waveform, training=training)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        # Both networks create their weights on a dummy batch (the discriminator has
        # no build of its own: its layers are sized by the STFTs it takes).
        length = input_shape[-1] if input_shape[-1] is not None else 4096
        dummy = ops.zeros((1, length))
        self.generator(dummy)
        if self.discriminator is not None:
            self.discriminator(dummy)
        if self.metric_discriminator is not None:
            self.metric_discriminator((dummy, dummy))
        self.built = True

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        loss: CombinedLoss | None = None,
        adversarial: str = "lsgan",
        adversarial_weight: float = 1.0,
        feature_matching_weight: float = 2.0,
        clip_norm: float | None = None,
        m_optimizer: keras.optimizers.Optimizer | None = None,
        metric_weight: float = 0.05,
        metric_target: str = "surrogate",
        **kwargs: Any,
    ) -> None:
        """Args beyond Keras's own ``compile`` keywords (passed through):
        g_optimizer, d_optimizer, m_optimizer: optimizers of the generator, the
            discriminator and the metric discriminator (Adam 2e-4, betas 0.8/0.99 by default).
        loss: CombinedLoss. The generator's reconstruction terms.
        adversarial: "lsgan" or "hinge". adversarial_weight, feature_matching_weight: floats.
        clip_norm: float or None. Global-norm clipping of each network's gradients.
        metric_weight: float. Weight of the metric term (0.05 in CMGAN and MP-SENet).
        metric_target: "surrogate" or "reference" (under TensorFlow not with
            ``jit_compile=True``: the reference runs outside the XLA graph).
        """
        if not isinstance(loss, CombinedLoss):
            raise TypeError(f"`loss` must be a CombinedLoss; received {type(loss).__name__}")
        check_choice("adversarial", adversarial, KINDS)
        check_choice("metric_target", metric_target, METRIC_TARGETS)
        if clip_norm is not None and not float(clip_norm) > 0:
            raise ValueError(
                f"`clip_norm` must be a positive number or None. Received: {clip_norm!r}"
            )
        if (
            metric_target == "reference"
            and self.metric_discriminator is not None
            and backend.name() == "tensorflow"
            and kwargs.get("jit_compile") is True
        ):
            raise ValueError(
                "metric_target='reference' runs the pesq package outside TensorFlow's XLA graph: "
                "use jit_compile=False"
            )
        super().compile(**kwargs)
        self.g_optimizer = _maybe_loss_scaled(g_optimizer or build_optimizer(**DEFAULT_OPTIMIZER))
        self.d_optimizer = _maybe_loss_scaled(d_optimizer or build_optimizer(**DEFAULT_OPTIMIZER))
        self.m_optimizer = _maybe_loss_scaled(m_optimizer or build_optimizer(**DEFAULT_OPTIMIZER))
        pairs = [
            (self.g_optimizer, self.generator),
            (self.d_optimizer, self.discriminator),
            (self.m_optimizer, self.metric_discriminator),
        ]
        self.optimizer = OptimizerGroup(
            [(optimizer, network) for optimizer, network in pairs if network is not None]
        )
        self.metric_weight = float(metric_weight)
        self.metric_target = metric_target
        self.restoration_loss = loss
        self.adversarial = adversarial
        self.adversarial_weight = float(adversarial_weight)
        self.feature_matching_weight = float(feature_matching_weight)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        attach_term_trackers(self, loss)
        self._compile_settings = {
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "m_optimizer": keras.saving.serialize_keras_object(self.m_optimizer),
            "metric_weight": self.metric_weight,
            "metric_target": self.metric_target,
            "loss": keras.saving.serialize_keras_object(loss),
            "adversarial": adversarial,
            "adversarial_weight": self.adversarial_weight,
            "feature_matching_weight": self.feature_matching_weight,
            "clip_norm": self.clip_norm,
            **{
                k: v
                for k, v in kwargs.items()
                if k in ("jit_compile", "steps_per_execution", "run_eagerly")
            },
        }

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        trackers = [self.g_tracker]
        if self.discriminator is not None:
            trackers += [self.d_tracker, self.adv_tracker, self.fm_tracker]
        if self.metric_discriminator is not None:
            trackers += [self.metric_d_tracker, self.metric_g_tracker, self.metric_pesq_tracker]
        return trackers + list(self.term_trackers.values())

    @property
    def evaluation_metrics(self) -> list[keras.metrics.Metric]:
        """The trackers ``test_step`` reports: the generator's loss and its terms."""
        return [self.g_tracker, *self.term_trackers.values()]

    # The objectives, shared by every backend's step. Each network is passed as a
    # callable (a plain call under TensorFlow, a stateless one under JAX); each
    # objective returns its loss and the values it logs, ``{name: (value, sample_weight)}``.

    def discriminator_objective(self, discriminate, clean, generated):
        """Adversarial loss of the discriminator on clean against generated audio."""
        real_outputs = float32_outputs(discriminate(clean))
        fake_outputs = float32_outputs(discriminate(ops.stop_gradient(generated)))
        d_loss = ops.mean(discriminator_loss(real_outputs, fake_outputs, self.adversarial))
        return d_loss, {"adv/disc": (d_loss, None)}

    def metric_targets(self, clean, estimate, damaged):
        """Normalised PESQ (``metric_target``'s kind) of the estimate and of the damaged input."""
        rate = self.generator_sample_rate()
        return (
            normalised_pesq(clean, estimate, rate, self.metric_target),
            normalised_pesq(clean, damaged, rate, self.metric_target),
        )

    def metric_discriminator_objective(self, judge, clean, estimate, damaged, targets):
        """MetricGAN loss of the metric discriminator; logs the estimates' mean MOS-LQO too."""
        target_estimate, target_damaged = targets
        m_loss = (
            ops.mean(ops.square(judge((clean, clean)) - 1.0))
            + masked_squared_error(judge((clean, estimate)), target_estimate)
            + masked_squared_error(judge((clean, damaged)), target_damaged)
        )
        finite = ops.isfinite(target_estimate)
        mos = mos_lqo_from_normalised(ops.where(finite, target_estimate, 0.0), "wb")
        return m_loss, {
            "metric/disc": (m_loss, None),
            "metric/pesq": (mos, ops.cast(finite, "float32")),
        }

    def generator_objective(self, generate, discriminate, judge, damaged, clean, step):
        """Reconstruction terms plus, from step ``warmup_steps`` on, the adversarial,
        feature-matching and metric terms (the discriminators are not updated here:
        ``judge`` runs in inference mode)."""
        generated = generate(damaged)
        terms = self.restoration_loss.compute_terms(clean, generated)
        g_loss = ops.mean(terms["total"])
        logged = {name: (terms[name], None) for name in self.term_trackers}
        active = ops.cast(step >= self.warmup_steps, "float32")
        if self.discriminator is not None:
            fake_outputs = float32_outputs(discriminate(generated))
            real_outputs = float32_outputs(discriminate(clean))
            adv = ops.mean(generator_adversarial_loss(fake_outputs, self.adversarial))
            fm = ops.mean(feature_matching_loss(real_outputs, fake_outputs))
            g_loss = g_loss + active * (
                self.adversarial_weight * adv + self.feature_matching_weight * fm
            )
            logged.update({"adv/gen": (adv, None), "adv/feature_matching": (fm, None)})
        if self.metric_discriminator is not None:
            metric_gen = ops.mean(ops.square(judge((clean, generated)) - 1.0))
            g_loss = g_loss + active * self.metric_weight * metric_gen
            logged["metric/gen"] = (metric_gen, None)
        logged["g_loss"] = (g_loss, None)
        return g_loss, logged

    def evaluation_logs(self, clean, generated):
        """What ``test_step`` logs: the generator's reconstruction loss and its terms."""
        terms = self.restoration_loss.compute_terms(clean, generated)
        return {
            "g_loss": (ops.mean(terms["total"]), None),
            **{name: (terms[name], None) for name in self.term_trackers},
        }

    def clip_gradients(self, optimizer, grads):
        """Global-norm clipping at ``clip_norm`` of the true gradients: under loss
        scaling the gradients arrive scaled, so the limit is scaled alike."""
        if self.clip_norm is None:
            return grads
        return clip_by_global_norm(grads, optimizer.scale_loss(self.clip_norm))

    def update_trackers(self, logged):
        """Adds each logged ``(value, sample_weight)`` to the tracker of its name."""
        for tracker in self.metrics:
            if tracker.name in logged:
                value, weight = logged[tracker.name]
                tracker.update_state(value, sample_weight=weight)

    def generator_sample_rate(self):
        return int(
            getattr(self.generator, "sample_rate", None)
            or getattr(self.metric_discriminator, "sample_rate", 16000)
        )

    def get_compile_config(self) -> dict[str, Any]:
        return dict(getattr(self, "_compile_settings", {}))

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = dict(config)
        for key in ("g_optimizer", "d_optimizer", "m_optimizer", "loss"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)
        if self.built:
            self.build_optimizers()

    def build_optimizers(self) -> None:
        """Creates every optimizer's state that does not exist yet (before loading a
        checkpoint into it); state already built is kept."""
        self.optimizer.build()

    def random_states(self):
        """The networks' random-generator states (dropout, damage seeds): the
        non-trainable variables that are not weights, which Keras does not save."""
        weights = {id(variable) for variable in self.weights}
        return [
            variable for variable in self.non_trainable_variables if id(variable) not in weights
        ]

    def save_own_variables(self, store):
        # The random states are saved too, so a resumed run draws the same dropout
        # masks and damage as an uninterrupted one.
        super().save_own_variables(store)
        for index, state in enumerate(self.random_states()):
            store[f"random_state_{index}"] = state

    def load_own_variables(self, store):
        keys = list(store.keys())
        super().load_own_variables(
            {key: store[key] for key in keys if not key.startswith("random_state_")}
        )
        for index, state in enumerate(self.random_states()):
            if f"random_state_{index}" in keys:
                state.assign(store[f"random_state_{index}"])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "metric_discriminator": keras.saving.serialize_keras_object(self.metric_discriminator),
            "warmup_steps": self.warmup_steps,
        }
