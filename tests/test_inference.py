import numpy as np
import pytest
import soundfile as sf
import soxr

from spectral_restore.inference import AudioRestorer, restore_file, restore_files
from spectral_restore.models.restorer import build_restorer
from training import cli

from reference import chunked_crossfade

CHUNK_SECONDS, OVERLAP_SECONDS = 0.5, 0.125  # 8000 and 2000 samples at 16 kHz


@pytest.fixture(scope="module")
def identity_model_file(tmp_path_factory):
    """An untrained restorer: mask softplus(0.5413) = 1 + 5e-5 and residual 0, so it
    returns its input to within 1e-4 relative; what the files go through around it shows."""
    path = tmp_path_factory.mktemp("model") / "identity.keras"
    build_restorer("small").save(path)
    return str(path)


def soxr_resample(samples, from_rate, to_rate):
    """``[channels, samples]`` resampled whole by ``soxr.resample`` (HQ), the library call
    whose block-wise use restore_file makes."""
    if from_rate == to_rate:
        return samples
    # A fresh C-order copy: numpy 1.x keeps odd strides for a length-1 axis, which
    # soxr.resample refuses.
    return soxr.resample(np.asarray(samples, np.float32).T.copy(order="C"), from_rate, to_rate).T


def fit_length(samples, length):
    """``samples`` cut or zero-padded at the end to ``length``."""
    samples = samples[..., :length]
    return np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(0, length - samples.shape[-1])])


def soxr_round_trip(samples, rate, model_rate=16000):
    """The resampling restore_file does around the model, on the whole signal at once."""
    samples = np.atleast_2d(samples)
    return fit_length(
        soxr_resample(soxr_resample(samples, rate, model_rate), model_rate, rate), samples.shape[-1]
    )


def test_restore_keeps_rate_length_channels_and_format(identity_model_file, tmp_path, rng):
    stereo = 0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * 2) / 44100)[:, None] * [
        1.0,
        0.5,
    ] + rng.normal(0, 0.01, (44100 * 2, 2))
    sf.write(tmp_path / "stereo.flac", stereo, 44100, subtype="PCM_24")
    mono = rng.normal(0, 0.05, 12345)
    sf.write(tmp_path / "mono.wav", mono, 16000, subtype="FLOAT")
    sf.write(tmp_path / "low.ogg", 0.2 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000), 8000)
    results = restore_files(
        identity_model_file,
        [tmp_path / "stereo.flac", tmp_path / "mono.wav", tmp_path / "low.ogg"],
        tmp_path / "out",
        progress=False,
    )
    assert [r.error for r in results] == [None, None, None]
    for name, source_rate in (("stereo.flac", 44100), ("mono.wav", 16000), ("low.ogg", 8000)):
        before, after = sf.info(tmp_path / name), sf.info(tmp_path / "out" / name)
        assert (after.samplerate, after.channels, after.frames, after.subtype) == (
            before.samplerate,
            before.channels,
            before.frames,
            before.subtype,
        ), name
    original, _ = sf.read(tmp_path / "stereo.flac", always_2d=True)
    restored, _ = sf.read(tmp_path / "out" / "stereo.flac", always_2d=True)
    expected = soxr_round_trip(original.T, 44100).T
    assert np.max(np.abs(restored - expected)) < 1e-4
    original, _ = sf.read(tmp_path / "mono.wav")
    restored, _ = sf.read(tmp_path / "out" / "mono.wav")
    assert np.max(np.abs(restored - original)) < 1e-4 * np.max(np.abs(original))


def test_a_failing_file_is_reported_and_the_others_restored(
    identity_model_file, tmp_path, rng, capsys
):
    sf.write(tmp_path / "good.wav", rng.normal(0, 0.05, 8000), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    (tmp_path / "empty.flac").write_bytes(b"")
    code = cli.main(
        [
            "restore",
            str(tmp_path / "corrupt.wav"),
            str(tmp_path / "good.wav"),
            str(tmp_path / "empty.flac"),
            "-o",
            str(tmp_path / "out"),
            "-m",
            identity_model_file,
            "-q",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "1 restored; skipped: 2 unreadable files" in captured.out
    for name in ("corrupt.wav", "empty.flac"):
        assert f"spectral-restore: skipped unreadable audio: {tmp_path / name}: " in captured.err
    assert sf.info(tmp_path / "out" / "good.wav").frames == 8000
    assert not (tmp_path / "out" / "corrupt.wav").exists()


def test_overshoot_beyond_full_scale_is_clipped_and_counted(identity_model_file, tmp_path):
    # A full-scale square wave at 8 kHz overshoots after resampling (Gibbs ripple).
    square = np.where(np.sin(2 * np.pi * 250 * np.arange(8000) / 8000) >= 0, 0.999, -0.999)
    sf.write(tmp_path / "square.wav", square, 8000, subtype="PCM_16")
    quantised, _ = sf.read(tmp_path / "square.wav")
    (result,) = restore_files(
        identity_model_file, [tmp_path / "square.wav"], tmp_path / "out", progress=False
    )
    expected = int(np.count_nonzero(np.abs(soxr_round_trip(quantised, 8000)) > 1.0))
    assert expected > 100
    assert abs(result.clipped_samples - expected) <= 0.01 * expected
    restored, _ = sf.read(tmp_path / "out" / "square.wav")
    assert np.max(np.abs(restored)) <= 1.0


def test_keras_file_and_saved_model_restore_alike(identity_model_file, tmp_path, rng):
    from spectral_restore.export import export_saved_model

    export_saved_model(identity_model_file, tmp_path / "sm")
    from_keras, from_export = AudioRestorer(identity_model_file), AudioRestorer(tmp_path / "sm")
    assert from_keras.sample_rate == from_export.sample_rate == 16000
    wave = rng.normal(0, 0.1, (2, 20000)).astype(np.float32)
    np.testing.assert_allclose(from_keras(wave), from_export(wave), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        from_keras(wave[0])
    with pytest.raises(TypeError, match="float"):
        from_keras((wave * 1000).astype(np.int16))


def test_clashing_output_names_are_refused(identity_model_file, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        sf.write(tmp_path / folder / "take.wav", np.zeros(100), 16000)
    with pytest.raises(ValueError, match="overwrite each other"):
        restore_files(
            identity_model_file,
            [tmp_path / "a" / "take.wav", tmp_path / "b" / "take.wav"],
            tmp_path / "out",
            progress=False,
        )


def test_keras_models_are_chunked_on_the_host_as_the_export_chunks(tmp_path, rng):
    """A trained-like (non-identity) model, inputs of several chunks: the host-side
    chunking (of .keras models and exports alike) gives what the SavedModel's own
    TensorFlow graph gives when its serving signature is handed the whole input."""
    pytest.importorskip("tensorflow", reason="the SavedModel export needs TensorFlow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the SavedModel export runs under the TensorFlow backend")
    from spectral_restore.export import export_saved_model

    model = build_restorer("small")
    model(np.zeros((1, 4000), np.float32))
    model.set_weights(
        [w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    export_saved_model(path, tmp_path / "sm", chunk_seconds=0.5, overlap_seconds=0.125)
    wave = rng.normal(0, 0.1, (2, 21000)).astype(np.float32)
    from_keras = AudioRestorer(path, chunk_seconds=0.5, overlap_seconds=0.125)(wave)
    from_export = AudioRestorer(tmp_path / "sm")(wave)
    import tensorflow as tf

    serving = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    in_graph = serving(waveform=tf.constant(wave))["restored"].numpy()
    assert np.max(np.abs(from_keras - wave)) > 1e-3  # the model changes its input: chunking shows
    np.testing.assert_allclose(from_keras, in_graph, atol=2e-5)
    np.testing.assert_allclose(from_export, in_graph, atol=2e-5)


@pytest.fixture(scope="module")
def perturbed_model_file(perturbed_restorer, tmp_path_factory):
    path = tmp_path_factory.mktemp("perturbed") / "perturbed.keras"
    perturbed_restorer.save(path)
    return str(path)


def test_keras_file_restorer_chunks_and_crossfades_like_numpy(
    perturbed_restorer, perturbed_model_file, rng
):
    restorer = AudioRestorer(
        perturbed_model_file, chunk_seconds=CHUNK_SECONDS, overlap_seconds=OVERLAP_SECONDS
    )
    for length in (5000, 8001, 17000):
        wave = rng.normal(0, 0.1, (2, length)).astype(np.float32)
        restored = restorer(wave)
        assert restored.shape == wave.shape
        np.testing.assert_allclose(
            restored,
            chunked_crossfade(perturbed_restorer, wave, 8000, 2000),
            atol=1e-5,
            err_msg=f"{length} samples",
        )
        assert (
            np.max(np.abs(restored - wave)) > 0.01
        )  # the model changes the audio (far beyond the tolerance)
    # 17000 samples went through three chunks: the model given the whole input differs.
    assert np.max(np.abs(restored - np.asarray(perturbed_restorer(wave)))) > 1e-4


def test_padding_restores_short_inputs_at_a_multiple_of_pad_seconds(
    perturbed_restorer, perturbed_model_file, rng
):
    """``pad_seconds``: an input of at most one chunk is the model's output on it
    zero-padded to the next multiple (never beyond the chunk), cut back; a longer one
    is chunked as without padding."""
    restorer = AudioRestorer(
        perturbed_model_file,
        chunk_seconds=CHUNK_SECONDS,
        overlap_seconds=OVERLAP_SECONDS,
        pad_seconds=0.125,
    )
    for length, padded in ((3000, 4000), (7999, 8000), (17000, 17000)):
        wave = rng.normal(0, 0.1, (1, length)).astype(np.float32)
        if padded == length:
            expected = chunked_crossfade(perturbed_restorer, wave, 8000, 2000)
        else:
            expected = np.asarray(perturbed_restorer(np.pad(wave, [(0, 0), (0, padded - length)])))[
                :, :length
            ]
        np.testing.assert_allclose(restorer(wave), expected, atol=1e-5, err_msg=f"{length} samples")
    # The padding shows: near its end, the model's output on the unpadded input differs.
    assert (
        np.max(
            np.abs(AudioRestorer(perturbed_model_file)(wave[:, :3000]) - restorer(wave[:, :3000]))
        )
        > 1e-3
    )
    with pytest.raises(ValueError, match="pad_seconds"):
        AudioRestorer(perturbed_model_file, pad_seconds=0)


def model_reference(model, samples, rate, model_rate=16000, chunk=8000, overlap=2000):
    """What restore_file should write for ``samples`` ``[channels, samples]``: the whole
    signal resampled to the model rate by ``soxr.resample``, the numpy chunked crossfade
    of the model's outputs, resampled back, cut or zero-padded to the input length."""
    there = np.asarray(soxr_resample(samples, rate, model_rate), np.float32)
    # A file of a sample or two can have none at the model's rate: nothing to restore.
    restored = chunked_crossfade(model, there, chunk, overlap) if there.shape[-1] else there
    return fit_length(soxr_resample(restored, model_rate, rate), samples.shape[-1])


@pytest.mark.parametrize("entry", ["keras_file", "saved_model_cli"])
def test_restored_files_are_the_models_output_at_every_rate_and_channel_count(
    entry, perturbed_restorer, perturbed_model_file, tmp_path, rng
):
    """Files at 8, 16, 22.05, 44.1 and 48 kHz with 1 to 3 channels, long enough to be
    chunked at the model rate, are written as the model's chunked output, resampled
    back: through the Python API with a .keras file, and through the command with an export."""
    inputs = {
        "mono_8k.wav": (8000, 1, 0.7),
        "mono_16k.wav": (16000, 1, 0.6),
        "stereo_44k.flac": (44100, 2, 0.55),
        "three_22k.wav": (22050, 3, 0.6),
        "mono_48k.wav": (48000, 1, 0.65),
    }
    originals = {}
    for name, (rate, channels, seconds) in inputs.items():
        t = np.arange(int(rate * seconds)) / rate
        tone = 0.2 * np.sin(2 * np.pi * 330 * t)[None] * np.linspace(1.0, 0.4, channels)[:, None]
        samples = tone + rng.normal(0, 0.02, (channels, len(t)))
        subtype = "PCM_24" if name.endswith(".flac") else "FLOAT"
        sf.write(tmp_path / name, samples.T, rate, subtype=subtype)
        originals[name] = sf.read(tmp_path / name, always_2d=True)[0].T
    paths = [tmp_path / name for name in inputs]
    if entry == "keras_file":
        restorer = AudioRestorer(
            perturbed_model_file, chunk_seconds=CHUNK_SECONDS, overlap_seconds=OVERLAP_SECONDS
        )
        results = restore_files(restorer, paths, tmp_path / "out", progress=False)
        assert [r.error for r in results] == [None] * len(paths)
    else:
        from spectral_restore.export import export_saved_model

        export_saved_model(
            perturbed_model_file,
            tmp_path / "sm",
            chunk_seconds=CHUNK_SECONDS,
            overlap_seconds=OVERLAP_SECONDS,
        )
        assert (
            cli.main(
                [
                    "restore",
                    *map(str, paths),
                    "-o",
                    str(tmp_path / "out"),
                    "-m",
                    str(tmp_path / "sm"),
                    "-q",
                ]
            )
            == 0
        )
    for name, (rate, channels, _) in inputs.items():
        restored, written_rate = sf.read(tmp_path / "out" / name, always_2d=True)
        assert written_rate == rate and restored.shape == originals[name].T.shape, name
        expected = model_reference(perturbed_restorer, originals[name], rate)
        # Measured up to 2.2e-7: float32 rounding of the crossfade and 24-bit FLAC's 6e-8.
        np.testing.assert_allclose(restored.T, expected, atol=1e-6, err_msg=name)
        assert np.max(np.abs(restored.T - originals[name])) > 0.01, name  # far beyond the tolerance


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    """A one-level CRN with 8 GRU units and seeded random weights (a few thousand
    parameters): fast enough to restore minutes of audio in a test, and its output
    differs from its input, so chunking and resampling show."""
    import keras

    from spectral_restore.models.restorer import SpectralRestorer

    keras.utils.set_random_seed(3)
    model = SpectralRestorer(channels=(4,), recurrent_units=8)
    model(np.zeros((1, 4000), np.float32))
    rng = np.random.default_rng(3)
    for variable in model.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(0.0, 0.05, variable.shape).astype(np.float32))
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return str(path), model


@pytest.mark.large
def test_a_two_minute_file_restored_in_blocks_equals_the_whole_array_at_once(
    tiny_model_file, tmp_path, rng
):
    """Two minutes of 22.05 kHz stereo read in blocks of 3.7 s (not aligned with the
    model's 10 s chunks or the resampling ratio): the file written equals the whole
    array resampled at once (soxr), restored at once by the numpy crossfade of the
    same model's outputs on 10 s chunks, resampled back, within 1e-4."""
    path, model = tiny_model_file
    rate, length = 22050, 120 * 22050
    t = np.arange(length) / rate
    samples = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t + 1.0)])
    samples += rng.normal(0, 0.02, samples.shape)
    sf.write(tmp_path / "long.wav", samples.T, rate, subtype="FLOAT")
    original = sf.read(tmp_path / "long.wav", dtype="float32", always_2d=True)[0].T
    result = restore_file(
        AudioRestorer(path), tmp_path / "long.wav", tmp_path / "out", block_seconds=3.7
    )
    restored, written_rate = sf.read(tmp_path / "out" / "long.wav", always_2d=True)
    assert (result.error, written_rate, restored.shape) == (None, rate, (length, 2))
    expected = model_reference(model, original, rate, chunk=160000, overlap=8000)
    assert np.max(np.abs(restored.T - expected)) < 1e-4
    assert np.max(np.abs(restored.T - original)) > 0.01  # the model changes the audio


@pytest.mark.parametrize(
    "rate,channels,length", [(44100, 2, 1), (44100, 1, 7), (8000, 3, 12345), (48000, 2, 26459)]
)
def test_odd_lengths_keep_their_length_exactly(
    perturbed_restorer, perturbed_model_file, tmp_path, rng, rate, channels, length
):
    """Down- and upsampling around the model, one sample to several chunks, 1 to 3
    channels: as many frames written as read, each the model's chunked output."""
    samples = rng.normal(0, 0.1, (channels, length))
    sf.write(tmp_path / "odd.wav", samples.T, rate, subtype="FLOAT")
    original = sf.read(tmp_path / "odd.wav", dtype="float32", always_2d=True)[0].T
    restorer = AudioRestorer(
        perturbed_model_file, chunk_seconds=CHUNK_SECONDS, overlap_seconds=OVERLAP_SECONDS
    )
    restore_file(restorer, tmp_path / "odd.wav", tmp_path / "out", block_seconds=0.13)
    restored, _ = sf.read(tmp_path / "out" / "odd.wav", always_2d=True)
    assert restored.shape == (length, channels)
    np.testing.assert_allclose(
        restored.T, model_reference(perturbed_restorer, original, rate), atol=1e-6
    )


def test_a_file_failing_midway_leaves_no_output(identity_model_file, tmp_path):
    samples = np.full((5 * 16000, 2), 0.1)
    samples[3 * 16000 + 5, 1] = np.nan
    sf.write(tmp_path / "bad.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"bad\.wav: 1 samples from 3.000 s on are NaN"):
        restore_file(
            AudioRestorer(identity_model_file),
            tmp_path / "bad.wav",
            tmp_path / "out",
            block_seconds=1.0,
        )
    assert list((tmp_path / "out").iterdir()) == []
