"""Adversarial training of a restoration generator against spectrogram discriminators."""

import keras
import tensorflow as tf
from keras import ops

from spectral_restore.losses.adversarial import (
    KINDS,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from spectral_restore.losses.combined import CombinedLoss
from spectral_restore.losses.p862 import mos as p862_mos
from spectral_restore.models.discriminators import resample_fft

METRIC_TARGETS = ("surrogate", "reference")
# MOS-LQO of identical signals (P.862.2): the normalised score (MOS - 1) / (BEST - 1) is 1.
BEST_WB_MOS = 4.644

register = keras.saving.register_keras_serializable(package="spectral_restore")


def _maybe_loss_scaled(optimizer):
    """Wraps an optimizer for dynamic loss scaling under a mixed_float16 policy."""
    policy = keras.mixed_precision.global_policy()
    if policy.name == "mixed_float16" and not isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def normalised_pesq(clean, estimate, sample_rate, target):
    """``(MOS-LQO - 1) / (4.644 - 1)`` per example, wide band: from the differentiable
    surrogate (``"surrogate"``, on the accelerator, resampled to 16 kHz inside) or the
    reference ``pesq`` package on the CPU (``"reference"``; NaN where PESQ rejects an
    example, e.g. a silent crop)."""
    clean, estimate = ops.cast(clean, "float32"), ops.cast(estimate, "float32")
    if target == "surrogate":
        score = p862_mos(resample_fft(clean, sample_rate, 16000), resample_fft(estimate, sample_rate, 16000), 16000, "wb")
    else:
        from spectral_restore.metrics import pesq_score

        def reference(c, e):
            return pesq_score(c, e, sample_rate, "wb", processes=1).scores.astype("float32")

        score = tf.numpy_function(reference, [clean, estimate], tf.float32, stateful=False)
        score = tf.reshape(score, [tf.shape(clean)[0]])
    return (score - 1.0) / (BEST_WB_MOS - 1.0)


def masked_squared_error(prediction, target):
    """Mean of ``(prediction - target)^2`` over the examples whose target is finite."""
    valid = ops.isfinite(target)
    error = ops.where(valid, ops.square(prediction - ops.where(valid, target, 0.0)), 0.0)
    return ops.sum(error) / ops.maximum(ops.sum(ops.cast(valid, "float32")), 1.0)


@register
class RestorationGAN(keras.Model):
    """A generator trained with a :class:`CombinedLoss` plus adversarial and
    feature-matching terms from a discriminator and, optionally, a metric
    discriminator's quality term (TensorFlow backend).

    Each ``train_step`` first updates the discriminator on (clean, generated)
    audio, then the generator on ``sum_i w_i L_i + w_adv L_adv + w_fm L_fm``.
    During the first ``warmup_steps`` steps the adversarial and feature-matching
    terms have weight 0 (the discriminator still learns). Every term is logged by
    name: the CombinedLoss terms, ``adv/gen``, ``adv/feature_matching``,
    ``adv/disc`` and ``g_loss``.

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

    Args:
        generator: keras.Model. Waveform to waveform.
        discriminator: keras.Model or None. Waveform to a list of ``(logits,
            features)``; None trains with the metric discriminator alone.
        warmup_steps: int. Generator-only steps before the adversarial terms.
            Defaults to 0.
        metric_discriminator: keras.Model or None. ``(clean, estimate)`` to a
            normalised score per example. Defaults to None.
    """

    def __init__(self, generator, discriminator=None, warmup_steps=0, metric_discriminator=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(generator, dict):
            generator = keras.saving.deserialize_keras_object(generator)
        if isinstance(discriminator, dict):
            discriminator = keras.saving.deserialize_keras_object(discriminator)
        if isinstance(metric_discriminator, dict):
            metric_discriminator = keras.saving.deserialize_keras_object(metric_discriminator)
        if discriminator is None and metric_discriminator is None:
            raise ValueError("RestorationGAN needs a `discriminator`, a `metric_discriminator` or both")
        self.generator = generator
        self.discriminator = discriminator
        self.metric_discriminator = metric_discriminator
        self.warmup_steps = int(warmup_steps)
        self.gan_step = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False, name="gan_step")
        self.g_tracker = keras.metrics.Mean(name="g_loss")
        self.d_tracker = keras.metrics.Mean(name="adv/disc")
        self.adv_tracker = keras.metrics.Mean(name="adv/gen")
        self.fm_tracker = keras.metrics.Mean(name="adv/feature_matching")
        self.metric_d_tracker = keras.metrics.Mean(name="metric/disc")
        self.metric_g_tracker = keras.metrics.Mean(name="metric/gen")
        self.metric_pesq_tracker = keras.metrics.Mean(name="metric/pesq")
        self.__dict__["term_trackers"] = {}

    def call(self, waveform, training=False):
        return self.generator(waveform, training=training)

    def build(self, input_shape):
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
        g_optimizer=None,
        d_optimizer=None,
        loss=None,
        adversarial="lsgan",
        adversarial_weight=1.0,
        feature_matching_weight=2.0,
        clip_norm=None,
        m_optimizer=None,
        metric_weight=0.05,
        metric_target="surrogate",
        **kwargs,
    ):
        """Args beyond Keras's own ``compile`` keywords (passed through):
        g_optimizer, d_optimizer, m_optimizer: optimizers of the generator, the
            discriminator and the metric discriminator (Adam 2e-4, betas 0.8/0.99 by default).
        loss: CombinedLoss. The generator's reconstruction terms.
        adversarial: "lsgan" or "hinge". adversarial_weight, feature_matching_weight: floats.
        clip_norm: float or None. Global-norm clipping of the networks' gradients.
        metric_weight: float. Weight of the metric term (0.05 in CMGAN and MP-SENet).
        metric_target: "surrogate" or "reference" (not with ``jit_compile=True``:
            the reference runs outside the graph).
        """
        if not isinstance(loss, CombinedLoss):
            raise TypeError(f"`loss` must be a CombinedLoss; received {type(loss).__name__}")
        if adversarial not in KINDS:
            raise ValueError(f"`adversarial` must be one of {KINDS}. Received: {adversarial!r}")
        if metric_target not in METRIC_TARGETS:
            raise ValueError(f"`metric_target` must be one of {METRIC_TARGETS}. Received: {metric_target!r}")
        if metric_target == "reference" and self.metric_discriminator is not None and kwargs.get("jit_compile") is True:
            raise ValueError("metric_target='reference' runs the pesq package outside the graph: use jit_compile=False")
        super().compile(**kwargs)
        self.g_optimizer = _maybe_loss_scaled(g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.8, beta_2=0.99))
        self.d_optimizer = _maybe_loss_scaled(d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.8, beta_2=0.99))
        self.m_optimizer = _maybe_loss_scaled(m_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.8, beta_2=0.99))
        self.metric_weight = float(metric_weight)
        self.metric_target = metric_target
        self.restoration_loss = loss
        self.adversarial = adversarial
        self.adversarial_weight = float(adversarial_weight)
        self.feature_matching_weight = float(feature_matching_weight)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        # Per-term trackers depend on the loss, so they are made here; kept out of Keras's
        # state tracking (a loaded, already built model is recompiled from its config).
        self.__dict__["term_trackers"] = {name: keras.metrics.Mean(name=name) for name, _, weight in loss.terms if weight}
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
            **{k: v for k, v in kwargs.items() if k in ("jit_compile", "steps_per_execution", "run_eagerly")},
        }

    @property
    def metrics(self):
        trackers = [self.g_tracker]
        if self.discriminator is not None:
            trackers += [self.d_tracker, self.adv_tracker, self.fm_tracker]
        if self.metric_discriminator is not None:
            trackers += [self.metric_d_tracker, self.metric_g_tracker, self.metric_pesq_tracker]
        return trackers + list(self.term_trackers.values())

    def _apply(self, optimizer, loss, tape, variables):
        scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, variables)
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        optimizer.apply(grads, variables)

    def train_step(self, data):
        damaged, clean = data[0], data[1]
        if self.discriminator is not None:
            with tf.GradientTape() as tape:
                generated = self.generator(damaged, training=True)
                real_outputs = self.discriminator(clean, training=True)
                fake_outputs = self.discriminator(ops.stop_gradient(generated), training=True)
                d_loss = ops.mean(discriminator_loss(real_outputs, fake_outputs, self.adversarial))
            self._apply(self.d_optimizer, d_loss, tape, self.discriminator.trainable_variables)
            self.d_tracker.update_state(d_loss)
        else:
            generated = self.generator(damaged, training=True)

        if self.metric_discriminator is not None:
            estimate = ops.stop_gradient(generated)
            rate = self.generator_sample_rate()
            target_estimate = normalised_pesq(clean, estimate, rate, self.metric_target)
            target_damaged = normalised_pesq(clean, damaged, rate, self.metric_target)
            with tf.GradientTape() as tape:
                on_clean = self.metric_discriminator((clean, clean), training=True)
                on_estimate = self.metric_discriminator((clean, estimate), training=True)
                on_damaged = self.metric_discriminator((clean, damaged), training=True)
                m_loss = (ops.mean(ops.square(on_clean - 1.0)) + masked_squared_error(on_estimate, target_estimate)
                          + masked_squared_error(on_damaged, target_damaged))
            self._apply(self.m_optimizer, m_loss, tape, self.metric_discriminator.trainable_variables)
            self.metric_d_tracker.update_state(m_loss)
            finite = ops.isfinite(target_estimate)
            mos = 1.0 + ops.where(finite, target_estimate, 0.0) * (BEST_WB_MOS - 1.0)
            self.metric_pesq_tracker.update_state(mos, sample_weight=ops.cast(finite, "float32"))

        active = ops.cast(self.gan_step >= self.warmup_steps, "float32")
        with tf.GradientTape() as tape:
            generated = self.generator(damaged, training=True)
            terms = self.restoration_loss.compute_terms(clean, generated)
            g_loss = ops.mean(terms["total"])
            if self.discriminator is not None:
                fake_outputs = self.discriminator(generated, training=True)
                real_outputs = self.discriminator(clean, training=True)
                adv = ops.mean(generator_adversarial_loss(fake_outputs, self.adversarial))
                fm = ops.mean(feature_matching_loss(real_outputs, fake_outputs))
                g_loss += active * (self.adversarial_weight * adv + self.feature_matching_weight * fm)
            if self.metric_discriminator is not None:
                metric_gen = ops.mean(ops.square(self.metric_discriminator((clean, generated), training=False) - 1.0))
                g_loss += active * self.metric_weight * metric_gen
        self._apply(self.g_optimizer, g_loss, tape, self.generator.trainable_variables)
        self.gan_step.assign_add(1)

        self.g_tracker.update_state(g_loss)
        if self.discriminator is not None:
            self.adv_tracker.update_state(adv)
            self.fm_tracker.update_state(fm)
        if self.metric_discriminator is not None:
            self.metric_g_tracker.update_state(metric_gen)
        for name, tracker in self.term_trackers.items():
            tracker.update_state(terms[name])
        return {m.name: m.result() for m in self.metrics}

    def generator_sample_rate(self):
        return int(getattr(self.generator, "sample_rate", None) or getattr(self.metric_discriminator, "sample_rate", 16000))

    def test_step(self, data):
        damaged, clean = data[0], data[1]
        generated = self.generator(damaged, training=False)
        terms = self.restoration_loss.compute_terms(clean, generated)
        self.g_tracker.update_state(ops.mean(terms["total"]))
        for name, tracker in self.term_trackers.items():
            tracker.update_state(terms[name])
        return {m.name: m.result() for m in [self.g_tracker, *self.term_trackers.values()]}

    def get_compile_config(self):
        return dict(getattr(self, "_compile_settings", {}))

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("g_optimizer", "d_optimizer", "m_optimizer", "loss"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)
        if self.built:
            self.build_optimizers()

    def build_optimizers(self):
        """Creates every optimizer's state that does not exist yet (before loading a
        checkpoint into it); state already built is kept."""
        for optimizer, network in ((self.g_optimizer, self.generator), (self.d_optimizer, self.discriminator),
                                   (self.m_optimizer, self.metric_discriminator)):
            if network is not None and not optimizer.built:
                optimizer.build(network.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "metric_discriminator": keras.saving.serialize_keras_object(self.metric_discriminator),
            "warmup_steps": self.warmup_steps,
        }
