import keras
import numpy as np
import pytest

from spectral_restore.losses import CombinedLoss, SpectrogramMSE
from spectral_restore.models.restorer import PRESETS, SpectralRestorer, build_restorer


@pytest.fixture(scope="module")
def small():
    return build_restorer("small")


@pytest.mark.parametrize("length", [1000, 16000, 16001, 33333])
def test_untrained_model_is_the_identity_at_any_length(small, length):
    x = (0.1 * np.random.default_rng(length).standard_normal((2, length))).astype(np.float32)
    y = np.asarray(small(x))
    assert y.shape == x.shape
    # Zero-initialised heads: mask 1, residual 0; only the compression floor perturbs silence-level bins.
    assert np.max(np.abs(y - x)) < 1e-3


def test_presets_and_parameter_counts():
    counts = {name: build_restorer(name).count_params() for name in PRESETS}
    assert 2e5 < counts["small"] < 1e6 < counts["base"] < 2e7
    with pytest.raises(ValueError, match="preset"):
        SpectralRestorer("huge")
    with pytest.raises(ValueError, match="divisible"):
        SpectralRestorer("small", stft_config={"frame_length": 500, "hop_length": 125})
    with pytest.raises(ValueError, match="samples"):
        build_restorer("small")(np.zeros((2, 3, 100), np.float32))


def test_fit_logs_terms_and_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    clean = (0.1 * np.sin(np.arange(8000) / 5.0)[None] * rng.uniform(0.5, 1.5, (8, 1))).astype(np.float32)
    noisy = (clean + 0.03 * rng.standard_normal(clean.shape)).astype(np.float32)
    model = SpectralRestorer("small")
    loss = CombinedLoss({"recon/mse": (SpectrogramMSE(compress_exponent=0.3), 0.9), "time/l1": 0.2})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    history = model.fit(noisy, clean, epochs=3, batch_size=4, verbose=0)
    assert set(history.history) == {"loss", "recon/mse", "time/l1"}
    expected = 0.9 * np.array(history.history["recon/mse"]) + 0.2 * np.array(history.history["time/l1"])
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-4)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "restorer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(noisy)), np.asarray(model(noisy)), atol=1e-6)
    assert isinstance(loaded.loss, CombinedLoss)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 6
    again = loaded.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)
    assert again["loss"] == pytest.approx(model.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)["loss"], rel=1e-5)


def test_input_damage_applies_in_training_only():
    from spectral_restore.data.artifacts import ArtifactChain
    from spectral_restore.data.artifacts import ArtifactLayer

    chain = ArtifactChain([("noise", 1.0, (0.0, 0.0))]).get_config()
    model = SpectralRestorer("small", input_damage=ArtifactLayer(chain_config=chain))
    x = (0.1 * np.sin(np.arange(8000) / 5.0)[None]).astype(np.float32)
    inference = np.asarray(model(x, training=False))
    trained_view = np.asarray(model(x, training=True))
    assert np.max(np.abs(inference - x)) < 1e-3
    # 0 dB SNR noise: the training-time input differs from the clean one by its own power.
    assert np.mean((trained_view - x) ** 2) > 0.5 * np.mean(x**2)
    rebuilt = SpectralRestorer.from_config(model.get_config())
    assert isinstance(rebuilt.input_damage, ArtifactLayer)
