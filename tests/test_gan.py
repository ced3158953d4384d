import keras
import numpy as np
import pytest

from spectral_restore.losses import CombinedLoss
from spectral_restore.models.discriminators import MultiResolutionDiscriminator
from spectral_restore.models.gan import RestorationGAN
from spectral_restore.models.restorer import SpectralRestorer


def tiny_gan(warmup_steps=0, adversarial="lsgan"):
    generator = SpectralRestorer(
        None,
        channels=(4, 4),
        kernel=(3, 3),
        recurrent_units=8,
        recurrent_layers=1,
        bidirectional=False,
    )
    discriminator = MultiResolutionDiscriminator(
        resolutions=((256, 64, 256), (512, 128, 512)), channels=4
    )
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
    clean = (0.1 * np.sin(np.arange(4000) / 7.0)[None] * rng.uniform(0.5, 1.5, (8, 1))).astype(
        np.float32
    )
    damaged = (clean + 0.02 * rng.standard_normal(clean.shape)).astype(np.float32)
    return damaged, clean


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def value_of(variable):
    return keras.ops.convert_to_numpy(variable)


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
    assert int(value_of(gan.gan_step)) == 1 and int(value_of(gan.g_optimizer.iterations)) == 1
    assert int(value_of(gan.d_optimizer.iterations)) == 1


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
        assert int(value_of(theirs.iterations)) == int(value_of(ours.iterations)) == 2
        for a, b in zip(ours.variables, theirs.variables):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)
    assert loaded.adversarial == "lsgan" and loaded.restoration_loss.weights == {
        "recon/mse": 1.0,
        "time/l1": 0.5,
    }
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
    with pytest.raises(ValueError, match="clip_norm"):
        gan.compile(loss=CombinedLoss({"time/l1": 1.0}), clip_norm=0.0)


@pytest.fixture(scope="module")
def speech_pairs(speech_16k):
    rng = np.random.default_rng(1)
    clean = np.stack([speech_16k[12000 + 6000 * i : 20000 + 6000 * i] for i in range(4)]).astype(
        np.float32
    )
    damaged = (clean + 0.01 * rng.standard_normal(clean.shape)).astype(np.float32)
    return damaged, clean


def metric_gan(
    target="surrogate",
    with_adversary=True,
    rate=16000,
    optimizer=lambda: keras.optimizers.Adam(1e-3),
    loss=None,
    warmup_steps=0,
    **compile_kwargs,
):
    from spectral_restore.models.discriminators import MetricDiscriminator

    generator = SpectralRestorer(
        None,
        sample_rate=rate,
        channels=(4, 4),
        kernel=(3, 3),
        recurrent_units=8,
        recurrent_layers=1,
        bidirectional=False,
    )
    adversary = (
        MultiResolutionDiscriminator(resolutions=((256, 64, 256),), channels=4)
        if with_adversary
        else None
    )
    gan = RestorationGAN(
        generator,
        adversary,
        metric_discriminator=MetricDiscriminator(rate, channels=4),
        warmup_steps=warmup_steps,
    )
    gan.compile(
        g_optimizer=optimizer(),
        d_optimizer=optimizer(),
        m_optimizer=optimizer(),
        loss=loss or CombinedLoss({"recon/mse": 1.0}),
        metric_weight=0.5,
        metric_target=target,
        **compile_kwargs,
    )
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
        expected = float(
            np.mean([pesq(16000, c, e, "wb") for c, e in zip(clean[:3], estimate[:3])])
        )
    before = [
        weights_of(gan.generator),
        weights_of(gan.discriminator),
        weights_of(gan.metric_discriminator),
    ]
    history = gan.fit(damaged, clean, batch_size=4, epochs=1, verbose=0).history
    after = [
        weights_of(gan.generator),
        weights_of(gan.discriminator),
        weights_of(gan.metric_discriminator),
    ]
    for old, new in zip(before, after):
        assert any(not np.array_equal(a, b) for a, b in zip(old, new))
    for name in [
        "g_loss",
        "adv/disc",
        "adv/gen",
        "metric/disc",
        "metric/gen",
        "metric/pesq",
        "recon/mse",
    ]:
        assert np.isfinite(history[name][0]), name
    assert history["metric/pesq"][0] == pytest.approx(expected, abs=2e-3)
    assert int(value_of(gan.m_optimizer.iterations)) == 1


def test_metric_only_gan_at_48k_saves_and_resumes_with_its_optimizer(speech_pairs, tmp_path):
    from spectral_restore.audio_io import resample

    damaged, clean = (np.asarray(resample(x, 16000, 48000)) for x in speech_pairs)
    gan = metric_gan(with_adversary=False, rate=48000)
    assert gan.discriminator is None
    history = gan.fit(damaged, clean, batch_size=2, epochs=1, verbose=0).history
    assert "adv/disc" not in history and np.isfinite(history["metric/pesq"][0])
    path = tmp_path / "metric_gan.keras"
    gan.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.metric_target == "surrogate" and loaded.metric_weight == 0.5
    assert int(value_of(loaded.m_optimizer.iterations)) == 2
    for a, b in zip(gan.m_optimizer.variables, loaded.m_optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)
    np.testing.assert_allclose(np.asarray(loaded(damaged)), np.asarray(gan(damaged)), atol=1e-5)
    with pytest.raises(ValueError, match="metric_target"):
        gan.compile(loss=CombinedLoss({"recon/mse": 1.0}), metric_target="stoi")
    with pytest.raises(ValueError, match="discriminator"):
        RestorationGAN(gan.generator, None)


NETWORKS = ("generator", "discriminator", "metric_discriminator")
OPTIMIZERS = ("g_optimizer", "d_optimizer", "m_optimizer")
CLIP = 1e-2


def update_norm(before, after):
    """Global norm of a network's weight change, in float64."""
    return float(
        np.sqrt(sum(np.sum((b.astype(np.float64) - a) ** 2) for a, b in zip(before, after)))
    )


@pytest.mark.every_backend
def test_first_steps_train_every_network_with_warmup_clipping_and_logs(speech_pairs, tmp_path):
    """With SGD at learning rate 1 a step moves each network by its clipped
    gradient, so every network's weight change has global norm ``clip_norm``;
    the first step (warm-up) has no adversarial or metric term in ``g_loss``, the
    second has all of them with their weights; the metric discriminator's target
    is the ``pesq`` package's score (a host call from the compiled step); a saved
    model reloads with every optimizer's state, the step counter and the random
    states."""
    from pesq import pesq

    damaged, clean = speech_pairs
    gan = metric_gan(
        "reference",
        optimizer=lambda: keras.optimizers.SGD(1.0),
        loss=CombinedLoss({"recon/mse": 1.0, "time/l1": 0.5}),
        clip_norm=CLIP,
        warmup_steps=1,
    )
    assert gan.optimizer.optimizers == [gan.g_optimizer, gan.d_optimizer, gan.m_optimizer]
    estimate = np.asarray(gan.generator(damaged, training=True))
    before = {name: weights_of(getattr(gan, name)) for name in NETWORKS}
    first = gan.fit(damaged, clean, batch_size=4, epochs=1, verbose=0, shuffle=False).history
    assert first["metric/pesq"][0] == pytest.approx(
        np.mean([pesq(16000, c, e, "wb") for c, e in zip(clean, estimate)]), abs=2e-3
    )
    for name in NETWORKS:
        assert update_norm(before[name], weights_of(getattr(gan, name))) == pytest.approx(
            CLIP, rel=2e-3
        ), name
    names = [
        "g_loss",
        "adv/disc",
        "adv/gen",
        "adv/feature_matching",
        "metric/disc",
        "metric/gen",
        "metric/pesq",
        "recon/mse",
        "time/l1",
    ]
    assert sorted(first) == sorted(names)
    assert all(np.isfinite(first[name][0]) for name in names)
    assert first["g_loss"][0] == pytest.approx(
        first["recon/mse"][0] + 0.5 * first["time/l1"][0], rel=1e-5
    )
    second = gan.fit(damaged, clean, batch_size=4, epochs=1, verbose=0, shuffle=False).history
    expected = (
        second["recon/mse"][0]
        + 0.5 * second["time/l1"][0]
        + second["adv/gen"][0]
        + 2.0 * second["adv/feature_matching"][0]
        + 0.5 * second["metric/gen"][0]
    )
    assert second["g_loss"][0] == pytest.approx(expected, rel=1e-5)
    assert int(value_of(gan.gan_step)) == 2
    assert [int(value_of(getattr(gan, name).iterations)) for name in OPTIMIZERS] == [2, 2, 2]

    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    np.testing.assert_allclose(np.asarray(loaded(damaged)), np.asarray(gan(damaged)), atol=1e-6)
    assert_same_training_state(loaded, gan)
    assert loaded.clip_norm == CLIP and loaded.warmup_steps == 1 and loaded.metric_weight == 0.5


def assert_same_training_state(ours, theirs, atol=0.0):
    """Every network's weights, every optimizer's variables, the step counter and
    the random states agree."""
    for name in NETWORKS:
        for a, b in zip(weights_of(getattr(ours, name)), weights_of(getattr(theirs, name))):
            np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=name)
    for name in OPTIMIZERS:
        assert getattr(ours, name).built and getattr(theirs, name).built, name
        mine, other = getattr(ours, name).variables, getattr(theirs, name).variables
        assert len(mine) == len(other), name
        for a, b in zip(mine, other):
            np.testing.assert_allclose(
                value_of(a), value_of(b), rtol=0, atol=atol, err_msg=f"{name} {a.path}"
            )
    assert int(value_of(ours.gan_step)) == int(value_of(theirs.gan_step))
    assert len(ours.random_states()) == len(theirs.random_states()) > 0
    for a, b in zip(ours.random_states(), theirs.random_states()):
        np.testing.assert_array_equal(value_of(a), value_of(b))


class Interrupt(keras.callbacks.Callback):
    """Stops training with an error as the second epoch begins (after the first
    epoch's backup)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


@pytest.mark.large
@pytest.mark.every_backend
def test_backup_and_restore_resumes_exactly(speech_pairs, tmp_path):
    """A run interrupted after its first epoch and resumed by BackupAndRestore in a
    new model (built from another seed, so nothing survives but the backup) ends
    in the state of the same-seed run that went on uninterrupted: weights, every
    optimizer's variables, gan_step and the dropout seeds, exactly. (The
    uninterrupted run is the interrupted model trained on in memory: the error
    was raised between epochs and left its state as it was.)"""
    damaged, clean = speech_pairs

    def new_gan(seed):
        keras.utils.set_random_seed(seed)
        return metric_gan(clip_norm=1.0, warmup_steps=1)

    def fit(model, **kwargs):
        model.fit(damaged, clean, batch_size=2, epochs=2, verbose=0, shuffle=False, **kwargs)

    uninterrupted = new_gan(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(
            uninterrupted,
            callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), Interrupt()],
        )
    assert int(value_of(uninterrupted.gan_step)) == 2
    fit(uninterrupted, initial_epoch=1)
    resumed = new_gan(1)
    fit(resumed, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert int(value_of(resumed.gan_step)) == 4
    # Adam's moments are part of the restored state (iterations and learning rate alone are 2 variables).
    assert all(len(getattr(resumed, name).variables) > 2 for name in OPTIMIZERS)
    assert_same_training_state(resumed, uninterrupted)


@pytest.mark.large
@pytest.mark.every_backend
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps_clip_the_true_gradients(speech_pairs, policy):
    """Under mixed_float16 every optimizer scales its loss (LossScaleOptimizer) and
    the clipping limit applies to the unscaled gradients; mixed_bfloat16 needs no
    scaling. Either way an SGD step at learning rate 1 moves each network by
    exactly ``clip_norm``."""
    damaged, clean = speech_pairs
    keras.mixed_precision.set_global_policy(policy)
    try:
        gan = metric_gan(optimizer=lambda: keras.optimizers.SGD(1.0), clip_norm=CLIP)
        scaled = [
            isinstance(getattr(gan, name), keras.mixed_precision.LossScaleOptimizer)
            for name in OPTIMIZERS
        ]
        assert scaled == [policy == "mixed_float16"] * 3
        if policy == "mixed_float16":
            # A smaller starting scale than the default 2^15, at which the
            # discriminator's float16 gradients overflowed in the first JAX step (loss
            # scaling then skips that step and halves the scale); still far from 1.
            gan.build_optimizers()
            for name in OPTIMIZERS:
                getattr(gan, name).dynamic_scale.assign(256.0)
        before = {name: weights_of(getattr(gan, name)) for name in NETWORKS}
        history = gan.fit(damaged, clean, batch_size=4, epochs=1, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(values[0]) for values in history.values())
    for name in NETWORKS:
        assert update_norm(before[name], weights_of(getattr(gan, name))) == pytest.approx(
            CLIP, rel=2e-3
        ), name


def test_every_backend_case_under_jax(rerun_under_jax):
    rerun_under_jax()
