"""Logging every term of a CombinedLoss from inside ``train_step`` without computing it twice."""

import keras
from keras import ops

from spectral_restore.losses.combined import CombinedLoss


def attach_term_trackers(model, loss):
    """Gives ``model`` a ``term_trackers`` dict: one ``keras.metrics.Mean`` per
    active (non-zero weight) term of ``loss``, named like the term (``recon/mse``,
    ...); empty for any other loss. Kept out of Keras's state tracking: the trackers
    depend on the compiled loss, and a loaded, already built model is recompiled."""
    trackers = {}
    if isinstance(loss, CombinedLoss):
        trackers = {name: keras.metrics.Mean(name=name) for name, _, weight in loss.terms if weight}
    model.__dict__["term_trackers"] = trackers


class LossTermsMixin:
    """For a ``keras.Model`` compiled with a :class:`CombinedLoss`: ``compute_loss``
    evaluates the terms once, reports each by name (``recon/mse``, ...) next to
    ``loss``, and returns their weighted total plus any regularisation losses."""

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        attach_term_trackers(self, kwargs.get("loss", args[1] if len(args) > 1 else None))

    def compile_from_config(self, config):
        # Keras skips this for classes that override compile(); restore it explicitly.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(super().metrics) + list(getattr(self, "term_trackers", {}).values())

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.loss
        if not isinstance(loss, CombinedLoss):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        terms = loss.compute_terms(y, y_pred)
        for name, tracker in self.term_trackers.items():
            tracker.update_state(terms[name], sample_weight=sample_weight)
        per_example = terms["total"]
        if sample_weight is not None:
            per_example = per_example * ops.cast(
                ops.reshape(sample_weight, ops.shape(per_example)), per_example.dtype
            )
        total = ops.mean(per_example) if loss.reduction != "sum" else ops.sum(per_example)
        for extra in self.losses:
            total = total + ops.cast(ops.sum(extra), total.dtype)
        return total
