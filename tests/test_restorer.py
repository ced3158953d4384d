import keras
import numpy as np
import pytest

from spectral_restore.losses import CombinedLoss, SpectrogramMSE
from spectral_restore.models.restorer import SpectralRestorer, build_restorer


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


def conv_params(kernel, inputs, outputs):
    """Weights of a 2-D (transposed) convolution with bias."""
    return kernel[0] * kernel[1] * inputs * outputs + outputs


def dense_params(inputs, outputs):
    return inputs * outputs + outputs


def gru_params(inputs, units):
    """Keras's GRU (reset_after=True): kernel, recurrent kernel and two biases for 3 gates."""
    return 3 * (inputs * units + units * units) + 2 * 3 * units


def expected_parameters(channels, kernel, units, layers, bidirectional, bins=256):
    """The architecture's parameter count, layer by layer (the input has 3 channels:
    magnitude, real, imaginary; every LayerNormalization has a scale and an offset per channel)."""
    total, previous = 0, 3
    for c in channels:  # encoder: conv + layer norm
        total += conv_params(kernel, previous, c) + 2 * c
        previous = c
    bottleneck = bins // 2 ** len(channels) * channels[-1]
    total += dense_params(bottleneck, units)
    directions = 2 if bidirectional else 1
    recurrent_in = units
    for _ in range(layers):
        total += directions * gru_params(recurrent_in, units)
        recurrent_in = directions * units
    total += dense_params(recurrent_in, bottleneck)
    decoder = list(reversed(channels[:-1])) + [channels[0]]
    previous = channels[-1]
    for level, c in enumerate(decoder):  # input: the previous level concatenated with its skip
        total += conv_params(kernel, previous + channels[-1 - level], c) + 2 * c
        previous = c
    return total + conv_params((1, 1), previous, 1) + conv_params((1, 1), previous, 2)


def test_presets_and_parameter_counts():
    small, base = build_restorer("small"), build_restorer("base")
    # small: encoder 224+16, 1168+32, 4640+64; dense 131200; GRU 99072; dense 132096;
    # decoder 9232+32, 2312+16, 1160+16; heads 9 + 18.
    assert expected_parameters((8, 16, 32), (3, 3), 128, 1, False) == 381_307
    assert small.count_params() == 381_307  # README: "381 k"
    assert (
        base.count_params()
        == expected_parameters((32, 64, 96, 128), (3, 5), 256, 2, True)
        == 4_502_883
    )  # "4.5 M"
    summary = []
    small.summary(print_fn=lambda line, **kwargs: summary.append(line))
    assert "Total params: 381,307" in "\n".join(summary)
    with pytest.raises(ValueError, match="preset"):
        SpectralRestorer("huge")
    with pytest.raises(ValueError, match="divisible"):
        SpectralRestorer("small", stft_config={"frame_length": 500, "hop_length": 125})
    with pytest.raises(ValueError, match="samples"):
        build_restorer("small")(np.zeros((2, 3, 100), np.float32))


def test_fit_logs_terms_and_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    clean = (0.1 * np.sin(np.arange(8000) / 5.0)[None] * rng.uniform(0.5, 1.5, (8, 1))).astype(
        np.float32
    )
    noisy = (clean + 0.03 * rng.standard_normal(clean.shape)).astype(np.float32)
    model = SpectralRestorer("small")
    loss = CombinedLoss({"recon/mse": (SpectrogramMSE(compress_exponent=0.3), 0.9), "time/l1": 0.2})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    history = model.fit(noisy, clean, epochs=3, batch_size=4, verbose=0)
    assert set(history.history) == {"loss", "recon/mse", "time/l1"}
    expected = 0.9 * np.array(history.history["recon/mse"]) + 0.2 * np.array(
        history.history["time/l1"]
    )
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-4)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "restorer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(noisy)), np.asarray(model(noisy)), atol=1e-6)
    assert isinstance(loaded.loss, CombinedLoss)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 6
    again = loaded.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)
    assert again["loss"] == pytest.approx(
        model.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)["loss"], rel=1e-5
    )


def test_input_damage_applies_in_training_only():
    from spectral_restore.data.artifacts import ArtifactChain, ArtifactLayer

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


def test_weights_saved_with_keras_transposed_convolutions_load(tmp_path):
    """The decoder's polyphase layer keeps Keras's Conv2DTranspose's variables and
    weight-file paths: weights saved by a restorer whose decoder is Keras's own layer
    (as before the change) load into today's and give the same output."""

    class KerasDecoderRestorer(SpectralRestorer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            names = [(layer.name, layer.filters) for layer in self.decoder]
            del self.decoder
            self.decoder = [
                keras.layers.Conv2DTranspose(
                    filters, self.kernel, strides=(1, 2), padding="same", name=name
                )
                for name, filters in names
            ]

    old = KerasDecoderRestorer(preset="small")
    x = (0.1 * np.random.default_rng(3).standard_normal((2, 8000))).astype(np.float32)
    old(x)
    rng = np.random.default_rng(3)
    for variable in old.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(0.0, 0.05, variable.shape).astype(np.float32))
    assert [type(layer) for layer in old.decoder] == [keras.layers.Conv2DTranspose] * 3
    path = tmp_path / "old.weights.h5"
    old.save_weights(path)
    new = build_restorer("small")
    new.load_weights(path)

    def by_path(model):  # inside the model, whatever its name
        return {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}

    mine, theirs = by_path(new), by_path(old)
    assert sorted((path, value.shape) for path, value in mine.items()) == sorted(
        (path, value.shape) for path, value in theirs.items()
    )
    for path, value in theirs.items():
        np.testing.assert_array_equal(mine[path], value)
    np.testing.assert_allclose(np.asarray(new(x)), np.asarray(old(x)), atol=1e-5)
