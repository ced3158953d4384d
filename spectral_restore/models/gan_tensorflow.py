"""RestorationGAN's training and evaluation steps under TensorFlow (``tf.GradientTape``).

Mixed into :class:`~spectral_restore.models.gan.RestorationGAN` when the Keras
backend is TensorFlow; the objectives, clipping and trackers it calls are the
model's own, shared with the JAX steps.
"""

import functools

import tensorflow as tf
from keras import ops


class TensorFlowGANSteps:
    """``train_step(data)`` and ``test_step(data)`` as Keras's TensorFlow trainer calls them."""

    def descend(self, network, optimizer, objective):
        """One optimizer step on ``network``'s trainable variables down
        ``objective() -> (loss, logged)``; returns ``logged``."""
        variables = network.trainable_variables
        with tf.GradientTape() as tape:
            loss, logged = objective()
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        optimizer.apply(self.clip_gradients(optimizer, grads), variables)
        return logged

    def train_step(self, data):
        damaged, clean = data[0], data[1]
        generate = functools.partial(self.generator, training=True)
        discriminate = judge = None
        logged = {}
        generated = generate(damaged)
        if self.discriminator is not None:
            discriminate = functools.partial(self.discriminator, training=True)
            logged.update(
                self.descend(
                    self.discriminator,
                    self.d_optimizer,
                    lambda: self.discriminator_objective(discriminate, clean, generated),
                )
            )
        if self.metric_discriminator is not None:
            estimate = ops.stop_gradient(generated)
            targets = self.metric_targets(clean, estimate, damaged)
            train_judge = functools.partial(self.metric_discriminator, training=True)
            logged.update(
                self.descend(
                    self.metric_discriminator,
                    self.m_optimizer,
                    lambda: self.metric_discriminator_objective(
                        train_judge, clean, estimate, damaged, targets
                    ),
                )
            )
            judge = functools.partial(self.metric_discriminator, training=False)
        logged.update(
            self.descend(
                self.generator,
                self.g_optimizer,
                lambda: self.generator_objective(
                    generate, discriminate, judge, damaged, clean, self.gan_step
                ),
            )
        )
        self.gan_step.assign_add(1)
        self.update_trackers(logged)
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def test_step(self, data):
        damaged, clean = data[0], data[1]
        self.update_trackers(self.evaluation_logs(clean, self.generator(damaged, training=False)))
        return {tracker.name: tracker.result() for tracker in self.evaluation_metrics}
