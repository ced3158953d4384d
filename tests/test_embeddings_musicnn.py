"""The musicnn port against the original TF1 model code restoring the same checkpoints."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spectral_restore.embeddings import musicnn

needs_musicnn = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None,
    reason="the musicnn wheel (pip install --no-deps musicnn) ships the checkpoints",
)

# Runs musicnn's own models.define_model in tf.compat.v1 graph mode (legacy Keras
# layers from tf-keras), restores the wheel's checkpoint and saves every output.
ORIGINAL = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()
    from musicnn import models
    inputs = np.load(sys.argv[1])
    results = {}
    for name in sys.argv[3:]:
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, inputs.shape[1], 96])
            is_training = tf.compat.v1.placeholder(tf.bool)
            outputs = models.define_model(x, is_training, name, 50)
        with tf.compat.v1.Session() as session:
            tf.compat.v1.train.Saver().restore(session, os.path.join(os.path.dirname(models.__file__), name) + "/")
            values = session.run(list(outputs) + [tf.nn.sigmoid(outputs[0])], {x: inputs, is_training: False})
        for i, value in enumerate(values):
            results[f"{name}/{i}"] = value
    np.savez(sys.argv[2], **results)
""")
ORIGINAL_ORDER = {
    "musicnn": [
        "logits",
        "timbral",
        "temporal",
        "cnn1",
        "cnn2",
        "cnn3",
        "mean_pool",
        "max_pool",
        "penultimate",
        "taggram",
    ],
    "vgg": ["logits", "pool1", "pool2", "pool3", "pool4", "pool5", "taggram"],
}


def _music_like(rate=16000, seconds=3.0, seed=0):
    """Plucked tones with harmonics and a noise-burst beat: exercises every band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    signal = np.zeros_like(t)
    for start, f0 in zip(np.arange(0, seconds, 0.375), rng.choice([196, 247, 294, 392, 440], 8)):
        envelope = np.where(t >= start, np.exp(-(t - start) * 6), 0.0)
        signal += envelope * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    beats = np.where((t % 0.5) < 0.03, rng.standard_normal(t.size), 0.0)
    return (0.2 * signal / np.max(np.abs(signal)) + 0.1 * beats).astype("float32")


@needs_musicnn
@pytest.mark.large
def test_port_matches_original_on_every_shipped_checkpoint(tmp_path, speech_16k):
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf-keras is needed to run musicnn's tf.compat.v1.layers code")
    clips = np.stack([speech_16k[:48000], _music_like()])
    mels = np.asarray(musicnn.log_mel(clips))[:, : musicnn.PATCH_FRAMES]
    np.save(tmp_path / "x.npy", mels)
    models = ["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"]
    script = tmp_path / "original.py"
    script.write_text(ORIGINAL)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "x.npy"), str(tmp_path / "out.npz"), *models],
        check=True,
        env=env,
        capture_output=True,
    )
    original = np.load(tmp_path / "out.npz")
    for name in models:
        network = musicnn.load_musicnn(name)
        ours = network(mels)
        for i, feature in enumerate(ORIGINAL_ORDER[network.architecture]):
            reference = original[f"{name}/{i}"]
            value = np.asarray(ours[feature])
            reference = reference.reshape(value.shape)  # the original keeps a unit axis on cnn1-3
            error = np.max(np.abs(value - reference))
            if feature in ("taggram", "penultimate", "logits"):
                assert error <= 1e-4, (name, feature, error)
            else:  # float32 rounding of activations up to ~60
                assert error <= 1e-4 * max(1.0, np.max(np.abs(reference))), (name, feature, error)
        # A real prediction, not a constant: the two clips get different tags.
        assert np.max(np.abs(np.asarray(ours["taggram"][0] - ours["taggram"][1]))) > 0.05


def test_log_mel_matches_librosa(speech_16k):
    librosa = pytest.importorskip("librosa", reason="librosa is in the test extras")
    clip = speech_16k[:32000]
    reference = librosa.feature.melspectrogram(
        y=clip.astype(np.float64),
        sr=16000,
        hop_length=256,
        n_fft=512,
        n_mels=96,
        pad_mode="constant",
    ).T
    reference = np.log10(10000 * reference + 1)
    ours = np.asarray(musicnn.log_mel(clip[None]))[0]
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=2e-4)


@needs_musicnn
def test_embed_resamples_and_patches(speech_16k):
    network = musicnn.load_musicnn("MTT_musicnn")
    clip = speech_16k[:32000]
    at_16k = network.embed(clip[None], 16000)
    from spectral_restore.audio_io import resample

    at_48k = network.embed(np.asarray(resample(clip[None], 16000, 48000)), 48000)
    # 48 kHz input comes back to (nearly) the same 16 kHz features.
    np.testing.assert_allclose(
        np.asarray(at_48k["taggram"]), np.asarray(at_16k["taggram"]), atol=0.02
    )
    vgg = musicnn.load_musicnn("MTT_vgg")
    features = vgg.embed(np.stack([clip, clip]), 16000)  # 126 frames -> one zero-padded patch
    assert features["pool5"].shape == (2, 1, 2, 1, 128)
    mel = np.zeros((1, musicnn.PATCH_FRAMES, 96), "float32")
    mel[:, :126] = np.asarray(musicnn.log_mel(clip[None]))
    np.testing.assert_allclose(
        np.asarray(features["taggram"][0, 0]), np.asarray(vgg(mel)["taggram"][0]), atol=1e-5
    )


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="model"):
        musicnn.load_musicnn("MTT_resnet")
    with pytest.raises(ValueError, match="No TF checkpoint"):
        musicnn.load_musicnn("MTT_musicnn", checkpoint=str(tmp_path) + "/")
    with pytest.raises(ValueError, match="architecture"):
        musicnn.MusicnnNetwork("resnet")
    with pytest.raises(ValueError, match="log-mel input"):
        musicnn.MusicnnNetwork()(np.zeros((1, 10, 40), "float32"))


@needs_musicnn
def test_loader_rejects_another_models_checkpoint():
    with pytest.raises(ValueError, match="lacks|shape"):
        musicnn.load_musicnn("MTT_musicnn", checkpoint=musicnn.installed_checkpoint("MTT_vgg"))


@needs_musicnn
def test_network_is_frozen_and_float32():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        network = musicnn.load_musicnn("MTT_musicnn")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert network.trainable_weights == []
    assert {w.dtype for w in network.weights} == {"float32"}
    assert network(np.zeros((1, 50, 96), "float32"))["taggram"].dtype == "float32"


@needs_musicnn
def test_saved_and_reloaded_network_gives_the_same_features(tmp_path, speech_16k):
    import keras

    network = musicnn.load_musicnn("MTT_musicnn")
    mel = np.asarray(musicnn.log_mel(speech_16k[None, :32000]))
    path = str(tmp_path / "musicnn.keras")
    network.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, musicnn.MusicnnNetwork) and reloaded.trainable_weights == []
    for name, value in network(mel).items():
        np.testing.assert_array_equal(np.asarray(reloaded(mel)[name]), np.asarray(value))
