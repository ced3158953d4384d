"""The OpenL3 port: weight files in the official layout, a numpy forward pass, legacy Keras."""

import gzip
import importlib.util
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from spectral_restore.embeddings import openl3

FREQ_TIME = {"linear": (257, 197), "mel128": (128, 199), "mel256": (256, 199)}


def official_layers(rng, legacy_frontend=True):
    """Random weights named and shaped as the official files (Keras 2 auto names)."""
    layers = []
    if legacy_frontend:  # older kapre releases stored their front end as a layer
        layers.append(("melspectrogram_1", [rng.normal(size=(4, 3))]))
    layers.append(("batch_normalization_1", _bn(rng, 1)))
    channels, index = 1, 1
    for filters in openl3.BLOCK_FILTERS:
        for position in range(2):
            index += 1
            last = filters == openl3.BLOCK_FILTERS[-1] and position == 1
            kernel = rng.normal(scale=np.sqrt(2.0 / (9 * channels)), size=(3, 3, channels, filters))
            layers.append(
                (
                    "audio_embedding_layer" if last else f"conv2d_{index}",
                    [kernel, rng.normal(scale=0.1, size=filters)],
                )
            )
            channels = filters
            if not last:
                layers.append((f"batch_normalization_{index}", _bn(rng, filters)))
    return layers


def _bn(rng, n):
    return [
        rng.uniform(0.5, 1.5, n),
        rng.normal(scale=0.1, size=n),
        rng.normal(scale=0.1, size=n),
        rng.uniform(0.5, 2.0, n),
    ]


def write_weight_file(path, layers, under_model_weights=False):
    """The HDF5 layout of Keras 2's ``save_weights`` (``model.save`` nests it in model_weights)."""
    suffixes = {
        2: ["kernel", "bias"],
        4: ["gamma", "beta", "moving_mean", "moving_variance"],
        1: ["kernel"],
    }
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights") if under_model_weights else handle
        root.attrs["layer_names"] = [name.encode() for name, _ in layers]
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, arrays in layers:
            group = root.create_group(name)
            weight_names = [f"{name}/{suffix}:0" for suffix in suffixes[len(arrays)]]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for weight_name, array in zip(weight_names, arrays):
                group.create_dataset(weight_name, data=np.asarray(array, "float32"))


def numpy_conv_same(x, kernel, bias):
    """3x3 'same' convolution of [n, h, w, c] (cross-correlation, as Keras)."""
    n, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    columns = np.stack(
        [padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=3
    )
    return columns.reshape(n, h, w, 9 * c) @ kernel.reshape(9 * c, -1) + bias


def numpy_batch_norm(x, gamma, beta, mean, variance):
    return (x - mean) / np.sqrt(variance + 1e-3) * gamma + beta


def numpy_max_pool(x, size, stride, same=False):
    n, h, w, c = x.shape
    if same:
        out_h, out_w = -(-h // stride[0]), -(-w // stride[1])
        pad_h = max((out_h - 1) * stride[0] + size[0] - h, 0)
        pad_w = max((out_w - 1) * stride[1] + size[1] - w, 0)
        x = np.pad(
            x,
            ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
            constant_values=-np.inf,
        )
    else:
        out_h, out_w = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1
    out = np.full((n, out_h, out_w, c), -np.inf)
    for i in range(size[0]):
        for j in range(size[1]):
            out = np.maximum(
                out,
                x[
                    :,
                    i : i + out_h * stride[0] : stride[0],
                    j : j + out_w * stride[1] : stride[1],
                    :,
                ],
            )
    return out


def numpy_openl3(spectrogram, layers, input_repr, embedding_size):
    """OpenL3's forward pass in float64 numpy, from the weight list (front-end layer dropped)."""
    weights = [arrays for name, arrays in layers if "spectrogram" not in name]
    x = numpy_batch_norm(spectrogram.astype(np.float64), *weights[0])
    position = 1
    for block in range(4):
        for conv in range(2):
            x = numpy_conv_same(x, *weights[position])
            position += 1
            if block == 3 and conv == 1:
                break
            x = np.maximum(numpy_batch_norm(x, *weights[position]), 0.0)
            position += 1
        if block < 3:
            x = numpy_max_pool(x, (2, 2), (2, 2))
    pool = openl3.POOL_SIZES[input_repr][embedding_size]
    return numpy_max_pool(x, pool, pool, same=True).reshape(len(x), -1)


@pytest.mark.parametrize(
    "input_repr,embedding_size", [("linear", 6144), ("mel128", 512), ("mel256", 6144)]
)
def test_port_matches_numpy_forward_pass(tmp_path, input_repr, embedding_size):
    rng = np.random.default_rng(7)
    layers = official_layers(rng)
    path = tmp_path / openl3.weight_file_name(input_repr, "music")
    write_weight_file(path, layers)
    network = openl3.load_openl3(input_repr, "music", embedding_size, weights=str(tmp_path))
    spectrogram = (
        rng.uniform(-80.0, 0.0, size=(2, *FREQ_TIME[input_repr], 1)).astype("float32") / 20.0
    )
    ours = np.asarray(network(spectrogram)["embedding"])
    reference = numpy_openl3(spectrogram, layers, input_repr, embedding_size)
    assert ours.shape == (2, embedding_size)
    assert np.max(np.abs(reference)) > 1.0  # weights that keep the activations alive
    assert np.max(np.abs(ours - reference)) <= 1e-4


def test_gzip_and_whole_model_layouts_load_the_same(tmp_path):
    rng = np.random.default_rng(3)
    layers = official_layers(rng, legacy_frontend=False)
    plain, nested = tmp_path / "plain.h5", tmp_path / "nested.h5"
    write_weight_file(plain, layers)
    write_weight_file(nested, layers, under_model_weights=True)
    with open(plain, "rb") as source, gzip.open(tmp_path / "plain.h5.gz", "wb") as target:
        target.write(source.read())
    x = rng.uniform(-4, 0, size=(1, 128, 199, 1)).astype("float32")
    outputs = [
        np.asarray(
            openl3.load_openl3("mel128", weights=str(path), embedding_size=512)(x)["embedding"]
        )
        for path in (plain, nested, tmp_path / "plain.h5.gz")
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def numpy_spectrogram(windows, input_repr):
    """OpenL3's kapre front end in numpy/librosa: |STFT| (mel-filtered), 10 log10, -max, floor -80."""
    librosa = pytest.importorskip("librosa", reason="librosa is in the test extras")
    n_fft = 512 if input_repr == "linear" else 2048
    if input_repr != "linear":
        windows = np.pad(windows, ((0, 0), (0, 198 * 242 + 2048 - 48000)))
    frames = (windows.shape[1] - n_fft) // 242 + 1
    index = np.arange(frames)[:, None] * 242 + np.arange(n_fft)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.abs(np.fft.rfft(windows[:, index] * window, axis=-1))
    if input_repr != "linear":
        spec = spec @ librosa.filters.mel(sr=48000, n_fft=2048, n_mels=int(input_repr[3:])).T
    decibels = 10 * np.log10(np.maximum(spec, 1e-10))
    decibels = np.maximum(decibels - decibels.max(axis=(1, 2), keepdims=True), -80.0)
    return np.transpose(decibels, (0, 2, 1))[..., None]


@pytest.mark.parametrize("input_repr", ["linear", "mel128"])
def test_frontend_matches_numpy(speech_16k, input_repr):
    from spectral_restore.audio_io import resample

    clip = np.asarray(resample(speech_16k[None, 8000:24000], 16000, 48000), dtype=np.float64)
    windows = np.concatenate([clip, 0.5 * clip])
    ours = np.asarray(openl3.spectrogram(windows.astype("float32"), input_repr))
    reference = numpy_spectrogram(windows, input_repr)
    assert ours.shape == (2, *FREQ_TIME[input_repr], 1)
    # float32 STFT: 0.01 dB where the magnitude is within 10**-3 of its peak (-30 dB on
    # OpenL3's 10 log10 |X| scale); below that float32 rounding of the FFT shows.
    strong = reference > -30
    assert np.max(np.abs(ours - reference)[strong]) < 0.01
    # Everywhere, as magnitudes relative to the window's peak.
    assert np.max(np.abs(10 ** (ours / 10) - 10 ** (reference / 10))) < 1e-5


def test_embed_frames_like_openl3(tmp_path):
    rng = np.random.default_rng(5)
    write_weight_file(tmp_path / openl3.weight_file_name("mel128", "env"), official_layers(rng))
    network = openl3.load_openl3("mel128", "env", 512, weights=str(tmp_path))
    audio = rng.normal(scale=0.1, size=(2, 48000 * 2)).astype("float32")
    features = network.embed(audio, 48000, hop_seconds=0.5)
    # centred: 24000 + 96000 samples -> windows at 0, 0.5 ... 1.5 s (4), as openl3's _get_num_windows
    assert features["embedding"].shape == (2, 4, 512)
    padded = np.pad(audio, ((0, 0), (24000, 24000)))
    second = network(openl3.spectrogram(padded[:, 24000:72000], "mel128"))["embedding"]
    np.testing.assert_allclose(
        np.asarray(features["embedding"][:, 1]), np.asarray(second), atol=1e-5
    )


def test_missing_and_malformed_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ValueError, match="marl/openl3/raw/models/openl3_audio_mel256_music"):
        openl3.load_openl3()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="openl3_audio_linear_env.h5 not found"):
        openl3.load_openl3("linear", "env", weights=str(tmp_path))
    layers = official_layers(np.random.default_rng(0))
    write_weight_file(tmp_path / "short.h5", layers[:-3])
    with pytest.raises(ValueError, match="audio_embedding_layer"):
        openl3.load_openl3(weights=str(tmp_path / "short.h5"))
    layers[3] = (layers[3][0], [np.zeros((3, 3, 2, 64)), np.zeros(64)])
    write_weight_file(tmp_path / "shapes.h5", layers)
    with pytest.raises(ValueError, match="weight shapes"):
        openl3.load_openl3(weights=str(tmp_path / "shapes.h5"))
    with pytest.raises(ValueError, match="input_repr"):
        openl3.OpenL3Network("mel64")
    with pytest.raises(ValueError, match="embedding_size"):
        openl3.OpenL3Network("mel128", 1024)


def test_weights_found_in_an_installed_openl3_package(tmp_path, monkeypatch):
    package = tmp_path / "openl3"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_weight_file(
        package / openl3.weight_file_name("mel256", "music"),
        official_layers(np.random.default_rng(1)),
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    network = openl3.load_openl3("mel256", "music", 512)
    assert network(np.zeros((1, 256, 199, 1), "float32"))["embedding"].shape == (1, 512)


# The architecture as openl3's models.py builds it, in legacy Keras (tf-keras), which
# writes its weights with save_weights: an independent writer of the official layout.
LEGACY = textwrap.dedent("""
    import sys
    import numpy as np
    import tf_keras as keras
    from tf_keras import layers
    x_in = layers.Input((128, 199, 1))
    y = layers.BatchNormalization()(x_in)
    for filters in (64, 128, 256, 512):
        y = layers.Conv2D(filters, (3, 3), padding="same")(y)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        if filters == 512:
            y = layers.Conv2D(filters, (3, 3), padding="same", name="audio_embedding_layer")(y)
        else:
            y = layers.Conv2D(filters, (3, 3), padding="same")(y)
            y = layers.Activation("relu")(layers.BatchNormalization()(y))
            y = layers.MaxPooling2D((2, 2), strides=2)(y)
    y = layers.Flatten()(layers.MaxPooling2D((4, 8), padding="same")(y))
    model = keras.Model(x_in, y)
    rng = np.random.default_rng(11)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.name or "gamma" in w.name
                       else rng.normal(scale=0.05, size=w.shape) for w in model.weights])
    model.save_weights(sys.argv[1])
    x = np.random.default_rng(12).uniform(-4, 0, (2, 128, 199, 1)).astype("float32")
    np.save(sys.argv[2], x)
    np.save(sys.argv[3], model.predict(x, verbose=0))
""")


@pytest.mark.large
def test_weights_saved_by_legacy_keras_load_and_agree(tmp_path):
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf-keras (legacy Keras 2) is needed to write the reference weight file")
    script = tmp_path / "legacy.py"
    script.write_text(LEGACY)
    paths = [str(tmp_path / name) for name in ("weights.h5", "x.npy", "y.npy")]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(script), *paths], check=True, env=env, capture_output=True)
    network = openl3.load_openl3("mel128", "music", 6144, weights=paths[0])
    ours = np.asarray(network(np.load(paths[1]))["embedding"])
    reference = np.load(paths[2])
    assert ours.shape == reference.shape == (2, 6144)
    assert np.max(np.abs(ours - reference)) <= 1e-4 * max(1.0, np.max(np.abs(reference)))


def test_saved_and_reloaded_network_gives_the_same_embedding(tmp_path):
    import keras

    rng = np.random.default_rng(8)
    write_weight_file(tmp_path / openl3.weight_file_name("linear", "music"), official_layers(rng))
    network = openl3.load_openl3("linear", "music", 512, weights=str(tmp_path))
    spectrogram = rng.uniform(-4, 0, size=(1, 257, 197, 1)).astype("float32")
    path = str(tmp_path / "openl3.keras")
    network.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, openl3.OpenL3Network) and reloaded.embedding_size == 512
    np.testing.assert_array_equal(
        np.asarray(reloaded(spectrogram)["embedding"]),
        np.asarray(network(spectrogram)["embedding"]),
    )


def test_finite_gradients_on_silence_and_speech(tmp_path, speech_16k):
    import tensorflow as tf

    write_weight_file(
        tmp_path / openl3.weight_file_name("mel128", "music"),
        official_layers(np.random.default_rng(9)),
    )
    network = openl3.load_openl3("mel128", "music", 512, weights=str(tmp_path))
    for waveform in (np.zeros((1, 16000), "float32"), speech_16k[None, 8000:24000]):
        x = tf.Variable(waveform)
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(network.embed(x, 16000)["embedding"])
        gradient = tape.gradient(value, x).numpy()
        assert np.isfinite(float(value)) and np.all(np.isfinite(gradient))
    assert np.any(gradient != 0)  # speech: the embedding depends on the waveform
