import keras
import numpy as np
import pytest

from spectral_restore.losses import CombinedLoss
from spectral_restore.models.discriminators import MultiResolutionDiscriminator
from spectral_restore.models.gan import RestorationGAN
from spectral_restore.models.restorer import SpectralRestorer


def tiny_gan(warmup_steps=0, adversarial="lsgan"):
    generator = SpectralRestorer(None, channels=(4, 4), kernel=(3, 3), recurrent_units=8, recurrent_layers=1, bidirectional=False)
    discriminator = MultiResolutionDiscriminator(resolutions=((256, 64, 256), (512, 128, 512)), channels=4)
    gan = RestorationGAN(generator, discriminator, warmup_steps=warmup_steps)
    gan.compile(
        g_optimizer=keras.optimizers.Adam(1e-3),
        d_optimizer=keras.optimizers.Adam(1e-3),
        loss=CombinedLoss({"recon/mse": 1.0, "time/l1": 0.5}),
        adversarial=adversarial,
        clip_norm=10.0,
    )
    gan(np.zeros((1, 4000), np.float32))
    return gan


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    clean = (0.1 * np.sin(np.arange(4000) / 7.0)[None] * rng.uniform(0.5, 1.5, (8, 1))).astype(np.float32)
    damaged = (clean + 0.02 * rng.standard_normal(clean.shape)).astype(np.float32)
    return damaged, clean


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("adversarial", ["lsgan", "hinge"])
def test_one_step_updates_both_networks_and_logs_every_term(pairs, adversarial):
    damaged, clean = pairs
    gan = tiny_gan(adversarial=adversarial)
    g_before, d_before = weights_of(gan.generator), weights_of(gan.discriminator)
    history = gan.fit(damaged, clean, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, weights_of(gan.generator)))
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, weights_of(gan.discriminator)))
    for name in ["g_loss", "adv/disc", "adv/gen", "adv/feature_matching", "recon/mse", "time/l1"]:
        assert name in history.history and np.isfinite(history.history[name][0]), name
    assert int(gan.gan_step.numpy()) == 1 and int(gan.g_optimizer.iterations.numpy()) == 1
    assert int(gan.d_optimizer.iterations.numpy()) == 1


def test_warmup_excludes_adversarial_terms(pairs):
    damaged, clean = pairs
    gan = tiny_gan(warmup_steps=100)
    history = gan.fit(damaged, clean, batch_size=8, epochs=1, verbose=0)
    expected = history.history["recon/mse"][0] + 0.5 * history.history["time/l1"][0]
    assert history.history["g_loss"][0] == pytest.approx(expected, rel=1e-4)
    after = tiny_gan(warmup_steps=0).fit(damaged, clean, batch_size=8, epochs=1, verbose=0).history
    assert after["g_loss"][0] > after["recon/mse"][0] + 0.5 * after["time/l1"][0]


def test_save_load_keeps_outputs_and_both_optimizer_states(pairs, tmp_path):
    damaged, clean = pairs
    gan = tiny_gan()
    gan.fit(damaged, clean, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "gan.keras"
    gan.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(damaged)), np.asarray(gan(damaged)), atol=1e-6)
    for name in ("g_optimizer", "d_optimizer"):
        ours, theirs = getattr(gan, name), getattr(loaded, name)
        assert int(theirs.iterations.numpy()) == int(ours.iterations.numpy()) == 2
        for a, b in zip(ours.variables, theirs.variables):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)
    assert loaded.adversarial == "lsgan" and loaded.restoration_loss.weights == {"recon/mse": 1.0, "time/l1": 0.5}
    # Training resumes from the saved state: one more step equals one more step of the original.
    gan.fit(damaged[:4], clean[:4], batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(damaged[:4], clean[:4], batch_size=4, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(np.asarray(loaded(damaged)), np.asarray(gan(damaged)), atol=1e-4)


def test_bad_compile_arguments():
    gan = RestorationGAN(SpectralRestorer("small"), MultiResolutionDiscriminator())
    with pytest.raises(TypeError, match="CombinedLoss"):
        gan.compile(loss="mse")
    with pytest.raises(ValueError, match="adversarial"):
        gan.compile(loss=CombinedLoss({"time/l1": 1.0}), adversarial="wgan")
