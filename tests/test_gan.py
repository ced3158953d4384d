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


def test_resample_fft_matches_the_analytic_signal():
    from spectral_restore.models.discriminators import resample_fft

    t48 = np.arange(4800) / 48000
    t16 = np.arange(1600) / 16000
    x = np.sin(2 * np.pi * 1000 * t48) + 0.5 * np.cos(2 * np.pi * 3000 * t48)
    y = np.asarray(resample_fft(x[None].astype(np.float32), 48000, 16000))[0]
    np.testing.assert_allclose(y, np.sin(2 * np.pi * 1000 * t16) + 0.5 * np.cos(2 * np.pi * 3000 * t16), atol=1e-4)
    up = np.asarray(resample_fft(y[None].astype(np.float32), 16000, 44100))[0]
    np.testing.assert_allclose(up[::441][:4], x[::480][:4], atol=1e-3)  # the 0, 10, 20, 30 ms samples


@pytest.fixture(scope="module")
def speech_pairs(speech_16k):
    rng = np.random.default_rng(1)
    clean = np.stack([speech_16k[12000 + 6000 * i : 20000 + 6000 * i] for i in range(4)]).astype(np.float32)
    damaged = (clean + 0.01 * rng.standard_normal(clean.shape)).astype(np.float32)
    return damaged, clean


def metric_gan(target="surrogate", with_adversary=True, rate=16000):
    from spectral_restore.models.discriminators import MetricDiscriminator

    generator = SpectralRestorer(None, sample_rate=rate, channels=(4, 4), kernel=(3, 3), recurrent_units=8,
                                 recurrent_layers=1, bidirectional=False)
    adversary = MultiResolutionDiscriminator(resolutions=((256, 64, 256),), channels=4) if with_adversary else None
    gan = RestorationGAN(generator, adversary, metric_discriminator=MetricDiscriminator(rate, channels=4))
    gan.compile(g_optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-3),
                m_optimizer=keras.optimizers.Adam(1e-3), loss=CombinedLoss({"recon/mse": 1.0}),
                metric_weight=0.5, metric_target=target)
    gan(np.zeros((1, 8000), np.float32))
    return gan


@pytest.mark.parametrize("target", ["surrogate", "reference"])
def test_metric_discriminator_learns_the_pesq_of_the_estimates(speech_pairs, target):
    """One step trains all three networks; metric/pesq is the PESQ of the estimates
    (surrogate or reference), and a silent example is left out, not the batch."""
    from pesq import pesq

    from spectral_restore.losses import PESQLoss

    damaged, clean = speech_pairs
    damaged, clean = damaged.copy(), clean.copy()
    clean[3] = 0.0  # a silent crop: the reference PESQ rejects it
    gan = metric_gan(target)
    estimate = np.asarray(gan.generator(damaged, training=True))
    if target == "surrogate":
        expected = float(np.mean(np.asarray(PESQLoss().mos(clean, estimate))))
    else:
        expected = float(np.mean([pesq(16000, c, e, "wb") for c, e in zip(clean[:3], estimate[:3])]))
    before = [weights_of(gan.generator), weights_of(gan.discriminator), weights_of(gan.metric_discriminator)]
    history = gan.fit(damaged, clean, batch_size=4, epochs=1, verbose=0).history
    after = [weights_of(gan.generator), weights_of(gan.discriminator), weights_of(gan.metric_discriminator)]
    for old, new in zip(before, after):
        assert any(not np.array_equal(a, b) for a, b in zip(old, new))
    for name in ["g_loss", "adv/disc", "adv/gen", "metric/disc", "metric/gen", "metric/pesq", "recon/mse"]:
        assert np.isfinite(history[name][0]), name
    assert history["metric/pesq"][0] == pytest.approx(expected, abs=2e-3)
    assert int(gan.m_optimizer.iterations.numpy()) == 1


def test_metric_only_gan_at_48k_saves_and_resumes_with_its_optimizer(speech_pairs, tmp_path):
    from spectral_restore.models.discriminators import resample_fft

    damaged, clean = (np.asarray(resample_fft(x, 16000, 48000)) for x in speech_pairs)
    gan = metric_gan(with_adversary=False, rate=48000)
    assert gan.discriminator is None
    history = gan.fit(damaged, clean, batch_size=2, epochs=1, verbose=0).history
    assert "adv/disc" not in history and np.isfinite(history["metric/pesq"][0])
    path = tmp_path / "metric_gan.keras"
    gan.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.metric_target == "surrogate" and loaded.metric_weight == 0.5
    assert int(loaded.m_optimizer.iterations.numpy()) == 2
    for a, b in zip(gan.m_optimizer.variables, loaded.m_optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)
    np.testing.assert_allclose(np.asarray(loaded(damaged)), np.asarray(gan(damaged)), atol=1e-5)
    with pytest.raises(ValueError, match="metric_target"):
        gan.compile(loss=CombinedLoss({"recon/mse": 1.0}), metric_target="stoi")
    with pytest.raises(ValueError, match="discriminator"):
        RestorationGAN(gan.generator, None)
