import keras
import numpy as np
import pytest

from spectral_restore.losses.adversarial import (
    FeatureMatchingLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from spectral_restore.models.discriminators import MultiResolutionDiscriminator
from spectral_restore.models.restorer import SpectralRestorer


def outputs(rng, batch=3):
    return [
        (
            rng.standard_normal((batch, 5, 7)).astype(np.float32),
            [rng.standard_normal((batch, 5, 7, 2)).astype(np.float32) for _ in range(2)],
        )
        for _ in range(2)
    ]


def test_adversarial_losses_match_numpy():
    rng = np.random.default_rng(0)
    real, fake = outputs(rng), outputs(rng)

    def mean(x):
        return x.reshape(len(x), -1).mean(axis=1)

    want_d_ls = np.mean(
        [mean((r - 1) ** 2) + mean(f**2) for (r, _), (f, _) in zip(real, fake)], axis=0
    )
    want_d_hinge = np.mean(
        [
            mean(np.maximum(0, 1 - r)) + mean(np.maximum(0, 1 + f))
            for (r, _), (f, _) in zip(real, fake)
        ],
        axis=0,
    )
    want_g_ls = np.mean([mean((f - 1) ** 2) for f, _ in fake], axis=0)
    want_g_hinge = np.mean([-mean(f) for f, _ in fake], axis=0)
    want_fm = np.mean(
        [mean(np.abs(a - b)) for (_, fr), (_, ff) in zip(real, fake) for a, b in zip(fr, ff)],
        axis=0,
    )
    np.testing.assert_allclose(
        np.asarray(discriminator_loss(real, fake, "lsgan")), want_d_ls, rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(discriminator_loss(real, fake, "hinge")), want_d_hinge, rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(generator_adversarial_loss(fake, "lsgan")), want_g_ls, rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(generator_adversarial_loss(fake, "hinge")), want_g_hinge, rtol=1e-5
    )
    np.testing.assert_allclose(np.asarray(feature_matching_loss(real, fake)), want_fm, rtol=1e-5)
    np.testing.assert_allclose(float(FeatureMatchingLoss()(real, fake)), want_fm.mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="adversarial"):
        discriminator_loss(real, fake, "wgan")


def test_feature_matching_loss_serializes():
    loss = FeatureMatchingLoss(reduction="sum", name="fm")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again, FeatureMatchingLoss) and again.get_config() == loss.get_config()


def test_models_and_adversarial_terms_have_finite_gradients_on_silence():
    tf = pytest.importorskip("tensorflow", reason="a tf.GradientTape test (TensorFlow backend)")
    silence = tf.Variable(np.zeros((2, 4000), np.float32))
    generator = SpectralRestorer(
        None,
        channels=(4, 4),
        kernel=(3, 3),
        recurrent_units=8,
        recurrent_layers=1,
        bidirectional=False,
    )
    discriminator = MultiResolutionDiscriminator(resolutions=((256, 64, 256),), channels=4)
    with tf.GradientTape() as tape:
        restored = generator(silence, training=True)
        real, fake = discriminator(tf.zeros_like(restored)), discriminator(restored)
        total = (
            tf.reduce_sum(restored)
            + tf.reduce_sum(generator_adversarial_loss(fake))
            + tf.reduce_sum(discriminator_loss(real, fake))
            + tf.reduce_sum(feature_matching_loss(real, fake))
        )
    variables = [silence, *generator.trainable_variables, *discriminator.trainable_variables]
    grads = tape.gradient(total, variables)
    assert np.isfinite(float(total))
    for variable, grad in zip(variables, grads):
        # Every variable is connected (tests/test_gradients.py checks the values).
        assert grad is not None, f"no gradient reaches {variable.name}"
        assert np.all(np.isfinite(np.asarray(grad))), variable.name
