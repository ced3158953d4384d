"""AudioEmbeddingLoss: its formula against numpy, normalisations, networks, training, errors."""

import importlib.util

import keras
import numpy as np
import pytest

from spectral_restore.losses import AudioEmbeddingLoss, CombinedLoss

needs_musicnn = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None,
    reason="the musicnn wheel (pip install --no-deps musicnn) ships the checkpoints",
)


def small_network(samples=4000):
    inputs = keras.Input((samples,))
    x = keras.layers.Reshape((samples, 1))(inputs)
    x = keras.layers.Conv1D(4, 16, strides=8, activation="relu", name="conv_a")(x)
    x = keras.layers.Conv1D(6, 4, strides=2, name="conv_b")(x)
    outputs = keras.layers.GlobalAveragePooling1D(name="summary")(x)
    return keras.Model(inputs, outputs, name="small")


def numpy_loss(clean_features, restored_features, distance, normalization, weights):
    per_layer = []
    for clean, restored in zip(clean_features, restored_features):
        clean, restored = clean.astype(np.float64), restored.astype(np.float64)
        batch = clean.shape[0]
        if distance == "cosine":
            cos = (clean * restored).sum(-1) / np.sqrt(
                (clean**2).sum(-1) * (restored**2).sum(-1) + 1e-12
            )
            d = (1 - cos).reshape(batch, -1).mean(-1)
        else:
            diff = np.abs(clean - restored) if distance == "l1" else (clean - restored) ** 2
            d = diff.reshape(batch, -1).mean(-1)
            if normalization == "variance":
                variance = clean.reshape(batch, -1).var(-1)
                d = d / ((variance if distance == "l2" else np.sqrt(variance + 1e-8)) + 1e-8)
        per_layer.append(d)
    weights = np.asarray(weights, np.float64)
    return (np.stack(per_layer, -1) * weights).sum(-1) / weights.sum()


@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("normalization", ["variance", None])
def test_formula_matches_numpy(distance, normalization):
    rng = np.random.default_rng(0)
    network = small_network()
    clean = rng.normal(size=(3, 4000)).astype("float32")
    restored = (clean + 0.3 * rng.normal(size=clean.shape)).astype("float32")
    layers, weights = ["conv_a", "conv_b"], [1.0, 3.0]
    loss = AudioEmbeddingLoss(
        network,
        layers=layers,
        distance=distance,
        normalization=normalization,
        layer_weights=weights,
        reduction="none",
    )
    probe = keras.Model(network.inputs[0], [network.get_layer(name).output for name in layers])
    expected = numpy_loss(
        [np.asarray(f) for f in probe(clean)],
        [np.asarray(f) for f in probe(restored)],
        distance,
        normalization,
        weights,
    )
    np.testing.assert_allclose(np.asarray(loss(clean, restored)), expected, rtol=1e-4)
    # Normalised by variance, rescaling a layer's activations changes nothing.
    if normalization == "variance":
        scaled = small_network()
        scaled.set_weights(
            [w * (10.0 if i >= 2 else 1.0) for i, w in enumerate(network.get_weights())]
        )
        scaled_loss = AudioEmbeddingLoss(
            scaled, layers=["conv_b"], distance=distance, reduction="none"
        )
        plain_loss = AudioEmbeddingLoss(
            network, layers=["conv_b"], distance=distance, reduction="none"
        )
        np.testing.assert_allclose(
            np.asarray(scaled_loss(clean, restored)),
            np.asarray(plain_loss(clean, restored)),
            rtol=1e-3,
        )


def test_model_outputs_are_compared_when_no_layers_are_named():
    rng = np.random.default_rng(1)
    network = small_network()
    clean, restored = rng.normal(size=(2, 2, 4000)).astype("float32")
    loss = AudioEmbeddingLoss(network, normalization=None, distance="l2", reduction="none")
    expected = ((np.asarray(network(clean)) - np.asarray(network(restored))) ** 2).mean(-1)
    np.testing.assert_allclose(np.asarray(loss(clean, restored)), expected, rtol=1e-5)


def test_running_mean_normalises_each_layer_to_one():
    rng = np.random.default_rng(2)
    network = small_network()
    clean = rng.normal(size=(4, 4000)).astype("float32")
    restored = (clean + 0.5 * rng.normal(size=clean.shape)).astype("float32")
    loss = AudioEmbeddingLoss(
        network, layers=["conv_a", "conv_b"], normalization="running_mean", decay=0.9
    )
    # Bias-corrected, the first call's running mean is the batch mean: each layer averages 1.
    assert float(loss(clean, restored)) == pytest.approx(1.0, rel=1e-5)
    assert float(loss(clean, restored)) == pytest.approx(1.0, rel=1e-5)
    # Half the noise: the third call divides by the bias-corrected average of the three batch means.
    closer = (clean + 0.25 * rng.normal(size=clean.shape)).astype("float32")
    expected = []
    for layer in ("conv_a", "conv_b"):
        raw = AudioEmbeddingLoss(network, layers=[layer], normalization=None)
        first, third = float(raw(clean, restored)), float(raw(clean, closer))
        running = (0.9 * 0.1 * first * (1 + 0.9) + 0.1 * third) / (1 - 0.9**3)
        expected.append(third / running)
    assert float(loss(clean, closer)) == pytest.approx(np.mean(expected), rel=1e-4)
    assert np.mean(expected) < 1.0
    # A model's outputs, no layers named: one running mean per output.
    outputs = AudioEmbeddingLoss(network, normalization="running_mean")
    assert float(outputs(clean, restored)) == pytest.approx(1.0, rel=1e-5)


@needs_musicnn
def test_musicnn_loss_rises_with_noise_and_has_useful_gradients(speech_16k):
    tf = pytest.importorskip("tensorflow", reason="a tf.GradientTape test (TensorFlow backend)")
    rng = np.random.default_rng(3)
    clean = speech_16k[None, 8000:40000]
    loss = AudioEmbeddingLoss("musicnn")
    values = [
        float(loss(clean, clean + s * rng.normal(size=clean.shape).astype("float32")))
        for s in (0.0, 0.003, 0.01, 0.03, 0.1)
    ]
    assert values[0] < 1e-5 and all(b > a for a, b in zip(values, values[1:]))
    noisy = tf.Variable(clean + 0.03 * rng.normal(size=clean.shape).astype("float32"))
    with tf.GradientTape() as tape:
        value = loss(clean, noisy)
    grad = tape.gradient(value, noisy)
    # A small step against the gradient lowers the loss: the gradient points somewhere useful.
    stepped = noisy - 1e-3 * grad / tf.reduce_max(tf.abs(grad))
    assert float(loss(clean, stepped)) < float(value)


@needs_musicnn
def test_resampling_inside_at_48k(speech_16k):
    from spectral_restore.audio_io import resample

    rng = np.random.default_rng(4)
    clean = speech_16k[None, 8000:40000]
    noisy = clean + 0.02 * rng.normal(size=clean.shape).astype("float32")
    at_16k = float(AudioEmbeddingLoss("musicnn")(clean, noisy))
    up = [np.asarray(resample(x, 16000, 48000)) for x in (clean, noisy)]
    at_48k = float(AudioEmbeddingLoss("musicnn", sample_rate=48000)(*up))
    assert at_48k == pytest.approx(at_16k, rel=0.05)


@needs_musicnn
def test_in_a_combined_loss_and_model_fit(speech_16k):
    rng = np.random.default_rng(5)
    clean = np.stack([speech_16k[8000:24000], speech_16k[24000:40000]])
    noisy = (clean + 0.02 * rng.normal(size=clean.shape)).astype("float32")
    combined = CombinedLoss({"embed/musicnn": 0.5, "time/l1": 1.0})
    inputs = keras.Input((clean.shape[1],))
    hidden = keras.layers.Reshape((clean.shape[1], 1))(inputs)
    outputs = keras.layers.Reshape((clean.shape[1],))(
        keras.layers.Conv1D(1, 9, padding="same")(hidden)
    )
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=combined)
    embedding_loss = {name: loss for name, loss, _ in combined.terms}["embed/musicnn"]
    frozen = [w.numpy().copy() for w in embedding_loss.network.weights]
    before = [w.numpy().copy() for w in model.weights]
    history = model.fit(noisy, clean, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, embedding_loss.network.weights))
    terms = combined.compute_terms(clean, noisy)
    expected = 0.5 * float(embedding_loss(clean, noisy)) + float(
        {n: term for n, term, _ in combined.terms}["time/l1"](clean, noisy)
    )
    assert float(combined(clean, noisy)) == pytest.approx(expected, rel=1e-4)
    assert "embed/musicnn" in terms


def test_saved_keras_model_round_trips_and_in_memory_model_explains(tmp_path):
    rng = np.random.default_rng(6)
    network = small_network()
    clean, restored = rng.normal(size=(2, 2, 4000)).astype("float32")
    in_memory = AudioEmbeddingLoss(network, layers=["conv_a", "summary"])
    with pytest.raises(ValueError, match=r"model.save\('net.keras'\)"):
        in_memory.get_config()
    path = str(tmp_path / "net.keras")
    network.save(path)
    from_path = AudioEmbeddingLoss(
        path, layers=["conv_a", "summary"], layer_weights={"summary": 2.0}
    )
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(from_path))
    assert rebuilt.get_config() == from_path.get_config()
    np.testing.assert_allclose(
        float(rebuilt(clean, restored)), float(from_path(clean, restored)), rtol=1e-6
    )
    unweighted = AudioEmbeddingLoss(path, layers=["conv_a", "summary"])
    assert float(from_path(clean, restored)) != pytest.approx(
        float(unweighted(clean, restored)), rel=1e-3
    )


def test_bad_arguments():
    network = small_network()
    with pytest.raises(ValueError, match="distance"):
        AudioEmbeddingLoss(network, distance="l3")
    with pytest.raises(ValueError, match="normalization"):
        AudioEmbeddingLoss(network, normalization="batch")
    with pytest.raises(ValueError, match="not layers of 'small'"):
        AudioEmbeddingLoss(network, layers=["conv_z"])
    with pytest.raises(ValueError, match="layer_weights"):
        AudioEmbeddingLoss(network, layers=["conv_a"], layer_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="layer_weights"):
        AudioEmbeddingLoss(network, layers=["conv_a"], layer_weights={"conv_b": 1.0})
    with pytest.raises(ValueError, match="embedding"):
        AudioEmbeddingLoss("vggish")
    with pytest.raises(TypeError, match="embedding"):
        AudioEmbeddingLoss(3)
    with pytest.raises(ValueError, match="does not exist"):
        AudioEmbeddingLoss("missing.keras")
    with pytest.raises(ValueError, match="waveform batch"):
        AudioEmbeddingLoss(network)(
            np.zeros((1, 2, 4000), "float32"), np.zeros((1, 2, 4000), "float32")
        )
    with pytest.raises(ValueError, match="openl3_audio_mel256_music.h5 not found"):
        AudioEmbeddingLoss("openl3", embedding_options={"weights": "/nonexistent"})


@needs_musicnn
def test_musicnn_layer_names_are_checked():
    with pytest.raises(ValueError, match="available"):
        AudioEmbeddingLoss("musicnn", layers=["pool1"])
    with pytest.raises(ValueError, match="Unknown musicnn"):
        AudioEmbeddingLoss("musicnn", embedding_options={"weights": "x"})


@needs_musicnn
def test_config_terms_build_embedding_losses(tmp_path):
    from training.config import build_loss

    loss = build_loss(
        {
            "embed/musicnn": {"weight": 0.1, "args": {"layers": ["cnn3"], "distance": "cosine"}},
            "time/l1": 1.0,
        }
    )
    embedding = {name: term for name, term, _ in loss.terms}["embed/musicnn"]
    assert embedding.layers == ("cnn3",) and embedding.distance == "cosine"
    assert loss.weights["embed/musicnn"] == 0.1
    with pytest.raises(ValueError, match="not found in"):
        build_loss(
            {
                "embed/openl3": {
                    "weight": 0.1,
                    "args": {"embedding_options": {"weights": str(tmp_path)}},
                }
            }
        )
