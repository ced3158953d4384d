"""Adversarial objectives on (multi-resolution) discriminator outputs.

A discriminator output is a list of ``(logits, feature_maps)``, one per
resolution; every function returns one value per example, averaged over
resolutions (and over each logit map's frames and bins).
"""

from __future__ import annotations

import keras
from keras import ops

from spectral_restore._typing import DiscriminatorOutputs, DType, Tensor
from spectral_restore.checks import check_choice
from spectral_restore.losses.base import per_example_mean

KINDS = ("lsgan", "hinge")
register = keras.saving.register_keras_serializable(package="spectral_restore")


def _check_kind(kind):
    return check_choice("adversarial", kind, KINDS)


def discriminator_loss(
    real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs, kind: str = "lsgan"
) -> Tensor:
    """Least squares (Mao et al., ICCV 2017): ``(D(real) - 1)^2 + D(fake)^2``;
    hinge (Lim & Ye 2017): ``relu(1 - D(real)) + relu(1 + D(fake))``."""
    _check_kind(kind)
    total = 0.0
    for (real, _), (fake, _) in zip(real_outputs, fake_outputs):
        if kind == "lsgan":
            total = (
                total
                + per_example_mean(ops.square(real - 1.0))
                + per_example_mean(ops.square(fake))
            )
        else:
            total = (
                total
                + per_example_mean(ops.relu(1.0 - real))
                + per_example_mean(ops.relu(1.0 + fake))
            )
    return total / len(real_outputs)


def generator_adversarial_loss(fake_outputs: DiscriminatorOutputs, kind: str = "lsgan") -> Tensor:
    """Least squares: ``(D(fake) - 1)^2``; hinge: ``-D(fake)``."""
    _check_kind(kind)
    total = 0.0
    for fake, _ in fake_outputs:
        total = total + (
            per_example_mean(ops.square(fake - 1.0)) if kind == "lsgan" else -per_example_mean(fake)
        )
    return total / len(fake_outputs)


def feature_matching_loss(
    real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs
) -> Tensor:
    """Mean absolute difference of every discriminator feature map between real
    and generated audio, averaged over layers and resolutions (Kumar et al.,
    "MelGAN", NeurIPS 2019, eq. 3). Real features carry no gradient."""
    total, count = 0.0, 0
    for (_, real_features), (_, fake_features) in zip(real_outputs, fake_outputs):
        for real, fake in zip(real_features, fake_features):
            total = total + per_example_mean(ops.abs(ops.stop_gradient(real) - fake))
            count += 1
    return total / max(count, 1)


@register
class FeatureMatchingLoss(keras.losses.Loss):
    """:func:`feature_matching_loss` as a Keras loss: ``y_true`` and ``y_pred`` are the
    discriminator outputs (lists of ``(logits, feature_maps)``) for real and generated audio."""

    def __init__(
        self,
        reduction: str = "sum_over_batch_size",
        name: str = "feature_matching",
        dtype: DType = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    def call(self, y_true: DiscriminatorOutputs, y_pred: DiscriminatorOutputs) -> Tensor:
        return feature_matching_loss(y_true, y_pred)
