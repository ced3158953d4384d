"""RestorationGAN's training and evaluation steps under JAX (stateless, ``jax.value_and_grad``).

Mixed into :class:`~spectral_restore.models.gan.RestorationGAN` when the Keras
backend is JAX. Keras's JAX trainer calls ``train_step(state, data)`` with the
model's state as four lists (trainable, non-trainable, optimizer and metric
variables' values, in the order of ``model.trainable_variables``,
``model.non_trainable_variables``, ``model.optimizer.variables`` and
``model.metrics_variables``) and expects ``(logs, state)`` back; nothing is
assigned in place. Each network runs through ``stateless_call``, each optimizer
through ``stateless_apply``, each tracker through ``stateless_update_state``; the
objectives, clipping and logged names are the model's own, shared with the
TensorFlow steps.
"""

import jax
import keras


class VariableValues:
    """The values of a step's variables, looked up by variable, and the networks
    called statelessly on them (each call's non-trainable updates, e.g. dropout
    seeds, kept for the next call)."""

    def __init__(self, pairs=()):
        self.values = {id(variable): value for variable, value in pairs}

    def get(self, variables):
        return [self.values[id(variable)] for variable in variables]

    def set(self, variables, values):
        self.values.update(zip(map(id, variables), values))

    def copy(self):
        copied = VariableValues()
        copied.values = dict(self.values)
        return copied

    def caller(self, network, training):
        """``network`` as a function of its inputs, on these values; None for no network."""
        if network is None:
            return None

        def call(inputs):
            outputs, non_trainable = network.stateless_call(
                self.get(network.trainable_variables),
                self.get(network.non_trainable_variables),
                inputs,
                training=training,
            )
            self.set(network.non_trainable_variables, non_trainable)
            return outputs

        return call


class JAXGANSteps:
    """``train_step(state, data)`` and ``test_step(state, data)`` as Keras's JAX trainer calls them."""

    def descend(self, values, network, optimizer, objective):
        """One optimizer step on ``network``'s trainable variables down
        ``objective(values) -> (loss, logged)``, where ``values`` holds the
        network's weights being differentiated; updates ``values`` (weights,
        optimizer state, the non-trainable state of every network called) and
        returns ``logged``."""
        optimizer_state = list(zip(optimizer.variables, values.get(optimizer.variables)))
        non_trainable = self.non_trainable_variables

        def scaled_loss(weights):
            inner = values.copy()
            inner.set(network.trainable_variables, weights)
            loss, logged = objective(inner)
            # Under a LossScaleOptimizer the scale is one of its variables: read from the step's state.
            with keras.StatelessScope(state_mapping=optimizer_state):
                scaled = optimizer.scale_loss(loss)
            return scaled, (logged, inner.get(non_trainable))

        weights = values.get(network.trainable_variables)
        (_, (logged, non_trainable_values)), grads = jax.value_and_grad(scaled_loss, has_aux=True)(
            weights
        )
        with keras.StatelessScope(state_mapping=optimizer_state):
            grads = self.clip_gradients(optimizer, grads)
        weights, optimizer_values = optimizer.stateless_apply(
            [value for _, value in optimizer_state], grads, weights
        )
        values.set(non_trainable, non_trainable_values)
        values.set(network.trainable_variables, weights)
        values.set(optimizer.variables, optimizer_values)
        return logged

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_values, metric_values = state
        damaged, clean = data[0], data[1]
        values = VariableValues(
            [
                *zip(self.trainable_variables, trainable),
                *zip(self.non_trainable_variables, non_trainable),
                *zip(self.optimizer.variables, optimizer_values),
            ]
        )
        step = values.get([self.gan_step])[0]
        generated = values.caller(self.generator, training=True)(damaged)
        logged = {}
        if self.discriminator is not None:
            logged.update(
                self.descend(
                    values,
                    self.discriminator,
                    self.d_optimizer,
                    lambda inner: self.discriminator_objective(
                        inner.caller(self.discriminator, True), clean, generated
                    ),
                )
            )
        if self.metric_discriminator is not None:
            estimate = jax.lax.stop_gradient(generated)
            targets = self.metric_targets(clean, estimate, damaged)
            logged.update(
                self.descend(
                    values,
                    self.metric_discriminator,
                    self.m_optimizer,
                    lambda inner: self.metric_discriminator_objective(
                        inner.caller(self.metric_discriminator, True),
                        clean,
                        estimate,
                        damaged,
                        targets,
                    ),
                )
            )
        logged.update(
            self.descend(
                values,
                self.generator,
                self.g_optimizer,
                lambda inner: self.generator_objective(
                    inner.caller(self.generator, True),
                    inner.caller(self.discriminator, True),
                    inner.caller(self.metric_discriminator, False),
                    damaged,
                    clean,
                    step,
                ),
            )
        )
        values.set([self.gan_step], [step + 1])
        metric_values, logs = self.stateless_track(metric_values, logged, self.metrics)
        state = (
            values.get(self.trainable_variables),
            values.get(self.non_trainable_variables),
            values.get(self.optimizer.variables),
            metric_values,
        )
        return logs, state

    def test_step(self, state, data):
        trainable, non_trainable, metric_values = state
        damaged, clean = data[0], data[1]
        values = VariableValues(
            [
                *zip(self.trainable_variables, trainable),
                *zip(self.non_trainable_variables, non_trainable),
            ]
        )
        generated = values.caller(self.generator, training=False)(damaged)
        metric_values, logs = self.stateless_track(
            metric_values, self.evaluation_logs(clean, generated), self.evaluation_metrics
        )
        return logs, (trainable, values.get(self.non_trainable_variables), metric_values)

    def stateless_track(self, metric_values, logged, reported):
        """Adds each logged ``(value, sample_weight)`` to the tracker of its name, on
        ``metric_values`` (in ``self.metrics`` order); returns the new values and
        the results of the ``reported`` trackers."""
        updated, results, start = [], {}, 0
        for tracker in self.metrics:
            own = metric_values[start : start + len(tracker.variables)]
            start += len(tracker.variables)
            if tracker.name in logged:
                value, weight = logged[tracker.name]
                own = tracker.stateless_update_state(own, value, sample_weight=weight)
            updated.extend(own)
            results[tracker.name] = tracker.stateless_result(own)
        return updated, {tracker.name: results[tracker.name] for tracker in reported}
