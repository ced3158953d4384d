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

register = keras.saving.register_keras_serializable(package="spectral_restore")


def _maybe_loss_scaled(optimizer):
    """Wraps an optimizer for dynamic loss scaling under a mixed_float16 policy."""
    policy = keras.mixed_precision.global_policy()
    if policy.name == "mixed_float16" and not isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


@register
class RestorationGAN(keras.Model):
    """A generator trained with a :class:`CombinedLoss` plus adversarial and
    feature-matching terms from a discriminator (TensorFlow backend).

    Each ``train_step`` first updates the discriminator on (clean, generated)
    audio, then the generator on ``sum_i w_i L_i + w_adv L_adv + w_fm L_fm``.
    During the first ``warmup_steps`` steps the adversarial and feature-matching
    terms have weight 0 (the discriminator still learns). Every term is logged by
    name: the CombinedLoss terms, ``adv/gen``, ``adv/feature_matching``,
    ``adv/disc`` and ``g_loss``.

    Args:
        generator: keras.Model. Waveform to waveform.
        discriminator: keras.Model. Waveform to a list of ``(logits, features)``.
        warmup_steps: int. Generator-only steps before the adversarial terms.
            Defaults to 0.
    """

    def __init__(self, generator, discriminator, warmup_steps=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(generator, dict):
            generator = keras.saving.deserialize_keras_object(generator)
        if isinstance(discriminator, dict):
            discriminator = keras.saving.deserialize_keras_object(discriminator)
        self.generator = generator
        self.discriminator = discriminator
        self.warmup_steps = int(warmup_steps)
        self.gan_step = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False, name="gan_step")
        self.g_tracker = keras.metrics.Mean(name="g_loss")
        self.d_tracker = keras.metrics.Mean(name="adv/disc")
        self.adv_tracker = keras.metrics.Mean(name="adv/gen")
        self.fm_tracker = keras.metrics.Mean(name="adv/feature_matching")
        self.__dict__["term_trackers"] = {}

    def call(self, waveform, training=False):
        return self.generator(waveform, training=training)

    def build(self, input_shape):
        # Both networks create their weights on a dummy batch (the discriminator has
        # no build of its own: its layers are sized by the STFTs it takes).
        length = input_shape[-1] if input_shape[-1] is not None else 4096
        dummy = ops.zeros((1, length))
        self.generator(dummy)
        self.discriminator(dummy)
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
        **kwargs,
    ):
        """Args beyond Keras's own ``compile`` keywords (passed through):
        g_optimizer, d_optimizer: optimizers (Adam 2e-4 / 2e-4, betas 0.8/0.99 by default).
        loss: CombinedLoss. The generator's reconstruction terms.
        adversarial: "lsgan" or "hinge". adversarial_weight, feature_matching_weight: floats.
        clip_norm: float or None. Global-norm clipping of both networks' gradients.
        """
        if not isinstance(loss, CombinedLoss):
            raise TypeError(f"`loss` must be a CombinedLoss; received {type(loss).__name__}")
        if adversarial not in KINDS:
            raise ValueError(f"`adversarial` must be one of {KINDS}. Received: {adversarial!r}")
        super().compile(**kwargs)
        self.g_optimizer = _maybe_loss_scaled(g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.8, beta_2=0.99))
        self.d_optimizer = _maybe_loss_scaled(d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.8, beta_2=0.99))
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
            "loss": keras.saving.serialize_keras_object(loss),
            "adversarial": adversarial,
            "adversarial_weight": self.adversarial_weight,
            "feature_matching_weight": self.feature_matching_weight,
            "clip_norm": self.clip_norm,
            **{k: v for k, v in kwargs.items() if k in ("jit_compile", "steps_per_execution", "run_eagerly")},
        }

    @property
    def metrics(self):
        return [self.g_tracker, self.d_tracker, self.adv_tracker, self.fm_tracker, *self.term_trackers.values()]

    def _apply(self, optimizer, loss, tape, variables):
        scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, variables)
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        optimizer.apply(grads, variables)

    def train_step(self, data):
        damaged, clean = data[0], data[1]
        with tf.GradientTape() as tape:
            generated = self.generator(damaged, training=True)
            real_outputs = self.discriminator(clean, training=True)
            fake_outputs = self.discriminator(ops.stop_gradient(generated), training=True)
            d_loss = ops.mean(discriminator_loss(real_outputs, fake_outputs, self.adversarial))
        self._apply(self.d_optimizer, d_loss, tape, self.discriminator.trainable_variables)

        active = ops.cast(self.gan_step >= self.warmup_steps, "float32")
        with tf.GradientTape() as tape:
            generated = self.generator(damaged, training=True)
            terms = self.restoration_loss.compute_terms(clean, generated)
            fake_outputs = self.discriminator(generated, training=True)
            real_outputs = self.discriminator(clean, training=True)
            adv = ops.mean(generator_adversarial_loss(fake_outputs, self.adversarial))
            fm = ops.mean(feature_matching_loss(real_outputs, fake_outputs))
            g_loss = ops.mean(terms["total"]) + active * (self.adversarial_weight * adv + self.feature_matching_weight * fm)
        self._apply(self.g_optimizer, g_loss, tape, self.generator.trainable_variables)
        self.gan_step.assign_add(1)

        self.g_tracker.update_state(g_loss)
        self.d_tracker.update_state(d_loss)
        self.adv_tracker.update_state(adv)
        self.fm_tracker.update_state(fm)
        for name, tracker in self.term_trackers.items():
            tracker.update_state(terms[name])
        return {m.name: m.result() for m in self.metrics}

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
        for key in ("g_optimizer", "d_optimizer", "loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)
        if self.built:
            self.g_optimizer.build(self.generator.trainable_variables)
            self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "warmup_steps": self.warmup_steps,
        }
