import keras
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from spectral_restore import spectral
from spectral_restore.data import levels
from spectral_restore.data.artifacts import ArtifactChain, ArtifactLayer
from spectral_restore.data.pipeline import ReadStats, crop_or_pad, make_dataset
from spectral_restore.data.source import AudioDataset, is_pair_source

from recorded_pairs import (
    RATES,
    assert_aligned_crops,
    check_skips,
    expected_pairs,
    write_problem_pairs,
)
from reference import binomial_tolerance


@pytest.fixture(scope="module")
def clips(speech_16k):
    return np.stack([np.roll(speech_16k, 1500 * i) for i in range(12)]).astype(np.float32)


def test_pairs_are_shaped_finite_aligned_and_damaged(clips):
    dataset = make_dataset(clips, batch_size=4, segment_seconds=1.5, return_record=True, seed=1)
    batches = list(dataset)
    assert len(batches) == 3
    for damaged, clean, record in batches:
        assert damaged.shape == clean.shape == (4, 24000)
        assert np.all(np.isfinite(damaged.numpy())) and np.all(np.isfinite(clean.numpy()))
        # Normalised to -25 dB RMS (unless the peak needed headroom).
        rms_db = 10 * np.log10(np.mean(clean.numpy() ** 2, axis=1))
        assert np.all(rms_db <= -25 + 0.01) and np.all(rms_db > -45)
        assert np.max(np.abs(clean.numpy())) <= 0.99 + 1e-6
        # Paired and aligned: damaged signals still correlate with their clean ones sample
        # for sample (all but an example that drew reverb, babble and phase damage at once).
        correlations = [
            abs(np.corrcoef(d, c)[0, 1]) for d, c in zip(damaged.numpy(), clean.numpy())
        ]
        assert np.median(correlations) > 0.5
        assert np.all(np.max(np.abs(damaged.numpy() - clean.numpy()), axis=1) > 1e-4)
        applied = np.stack([v["applied"].numpy() for v in record.values()], axis=1)
        assert np.all(applied.any(axis=1))


def test_crops_come_from_the_source_and_seed_is_reproducible(clips):
    first = [
        c.numpy()
        for _, c in make_dataset(
            clips, batch_size=4, segment_seconds=1.0, seed=5, level_db=None, damage="none"
        )
    ]
    again = [
        c.numpy()
        for _, c in make_dataset(
            clips, batch_size=4, segment_seconds=1.0, seed=5, level_db=None, damage="none"
        )
    ]
    other = [
        c.numpy()
        for _, c in make_dataset(
            clips, batch_size=4, segment_seconds=1.0, seed=6, level_db=None, damage="none"
        )
    ]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    for segment in np.concatenate(first):
        # Each clean segment is a verbatim slice of one of the clips.
        found = False
        for clip in clips:
            for start in np.flatnonzero(clip[: len(clip) - len(segment) + 1] == segment[0]):
                found = found or np.array_equal(clip[start : start + len(segment)], segment)
        assert found


def test_spectrogram_output_and_unknown_options(clips):
    cfg = spectral.STFTConfig(400, 100, 512)
    damaged, clean = next(
        iter(
            make_dataset(
                clips, batch_size=2, segment_seconds=1.0, output="spectrogram", stft_config=cfg
            )
        )
    )
    assert damaged.shape == clean.shape == (2, 161, 257, 2)
    with pytest.raises(ValueError, match="output"):
        make_dataset(clips, output="mel")
    with pytest.raises(ValueError, match="damage"):
        make_dataset(clips, damage="gpu")
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(clips, batch_size=0)
    with pytest.raises(TypeError, match="source"):
        make_dataset(42)


def test_folder_with_corrupt_files_is_read_with_them_skipped_and_counted(tmp_path, speech_16k):
    for i in range(5):
        sf.write(tmp_path / f"good{i}.wav", np.roll(speech_16k, 700 * i), 16000)
    sf.write(tmp_path / "sub_48k.flac", speech_16k[:20000], 48000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (tmp_path / "empty.ogg").write_bytes(b"")
    good = np.zeros(8000, np.float32)
    good[100] = np.nan
    sf.write(tmp_path / "nan.wav", good, 16000, subtype="FLOAT")
    (tmp_path / "notes.txt").write_text("not audio")
    stats = ReadStats()
    batches = list(
        make_dataset(tmp_path, batch_size=2, segment_seconds=1.0, stats=stats, shuffle=False)
    )
    assert len(batches) == 3
    assert stats.files_read == 6 and stats.files_skipped == 3
    reasons = dict(stats.skipped)
    assert "could not decode" in reasons[str(tmp_path / "corrupt.wav")]
    assert "empty" in reasons[str(tmp_path / "empty.ogg")]
    assert "NaN" in reasons[str(tmp_path / "nan.wav")]
    assert "3 skipped" in stats.summary()


def test_silent_segments_are_dropped(speech_16k):
    clips = np.zeros((6, 20000), np.float32)
    clips[::2] = speech_16k[:20000]
    batches = list(make_dataset(clips, batch_size=1, segment_seconds=1.0, shuffle=False))
    assert len(batches) == 3


def test_damage_modes_and_tf_dataset_sources(clips):
    clean_pairs = make_dataset(clips, batch_size=2, segment_seconds=1.0, damage="none")
    for damaged, clean in clean_pairs.take(2):
        np.testing.assert_array_equal(damaged.numpy(), clean.numpy())
    pcm = tf.data.Dataset.from_tensor_slices({"audio": (clips * 32767).astype(np.int16)})
    damaged, clean = next(iter(make_dataset(pcm, batch_size=2, segment_seconds=1.0)))
    assert damaged.shape == (2, 16000)
    short = [np.ones(3000, np.float32) * 0.1, np.ones(5000, np.float32) * 0.2]
    _, padded = next(
        iter(
            make_dataset(
                short,
                batch_size=2,
                segment_seconds=0.5,
                shuffle=False,
                level_db=None,
                damage="none",
            )
        )
    )
    assert padded.shape == (2, 8000)
    assert np.all(padded.numpy()[0, 3000:] == 0)


def test_crop_and_level_helpers():
    wave = tf.range(100, dtype=tf.float32)
    crop = crop_or_pad(wave, 10, tf.constant([1, 1], tf.int64)).numpy()
    assert np.array_equal(crop, np.arange(crop[0], crop[0] + 10))
    quiet = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01
    level = levels.normalise_level(tf.constant(quiet), -20.0, peak=1.0, xp=tf.experimental.numpy)
    assert abs(10 * np.log10(np.mean(level.numpy() ** 2)) + 20.0) < 0.01
    # The tf.data binding of the level rules is the numpy one, sample for sample.
    np.testing.assert_allclose(
        level.numpy(), levels.normalise_level(quiet, -20.0, peak=1.0), rtol=1e-6
    )


def test_artifact_layer_damages_only_in_training(clips):
    layer = ArtifactLayer(
        chain_config=ArtifactChain([("noise", 1.0, (10.0, 10.0))]).get_config(), seed=3
    )
    batch = tf.constant(clips[:2, :16000])
    np.testing.assert_array_equal(layer(batch, training=False).numpy(), batch.numpy())
    first = layer(batch, training=True).numpy()
    second = layer(batch, training=True).numpy()
    snr = 10 * np.log10(
        np.mean(batch.numpy() ** 2, axis=1) / np.mean((first - batch.numpy()) ** 2, axis=1)
    )
    np.testing.assert_allclose(snr, 10.0, atol=0.5)
    assert not np.array_equal(first, second)
    rebuilt = ArtifactLayer.from_config(layer.get_config())
    assert rebuilt.chain.get_config() == layer.chain.get_config()
    inputs = keras.Input((16000,))
    model = keras.Model(inputs, keras.layers.Dense(1)(ArtifactLayer()(inputs)[..., None])[..., 0])
    model.compile("adam", "mse")
    model.fit(clips[:4, :16000], clips[:4, :16000], epochs=1, batch_size=2, verbose=0)


def test_clean_and_mild_examples_in_tf_data(clips):
    """A chain with fractions inside ``tf.data``: its undamaged examples equal their clean
    segments exactly, in the asked share (five binomial standard deviations), and its
    mild ones differ from them by the same pipeline's damage without fractions (same
    seed: same crops, same links) weakened by the recorded ``r`` dB; the other examples
    are damaged as without fractions."""
    # No babble: it mixes in the batch's other examples, which the undamaged ones change.
    links = [
        ("noise", 0.8, (0.0, 20.0)),
        ("hard_clip", 0.3, (0.1, 0.6)),
        ("bit_depth", 0.2, (4.0, 8.0)),
    ]
    fractions = ArtifactChain(links, clean_fraction=0.3, mild_fraction=0.2)
    options = dict(batch_size=40, segment_seconds=0.25, seed=3, repeat=True, return_record=True)
    damaged, clean, plain, undamaged, mild, reduction = ([] for _ in range(6))
    for (noisy, target, record), (full, _, _) in zip(
        make_dataset(clips, chain=fractions, **options).take(10),
        make_dataset(clips, chain=ArtifactChain(links), **options),
    ):
        damaged.append(noisy.numpy())
        clean.append(target.numpy())
        plain.append(full.numpy())
        undamaged.append(record["undamaged"]["applied"].numpy())
        mild.append(record["mild"]["applied"].numpy())
        reduction.append(record["mild"]["strength"].numpy())
    damaged, clean, plain, undamaged, mild, reduction = map(
        np.concatenate, (damaged, clean, plain, undamaged, mild, reduction)
    )
    count = len(damaged)
    equal = np.all(damaged == clean, axis=1)
    np.testing.assert_array_equal(equal, undamaged)
    assert abs(equal.sum() - 0.3 * count) <= binomial_tolerance(count, 0.3)
    assert abs(mild.sum() - 0.2 * count) <= binomial_tolerance(count, 0.2)
    weaker = 10 * np.log10(
        np.sum((plain[mild] - clean[mild]) ** 2, axis=1)
        / np.sum((damaged[mild] - clean[mild]) ** 2, axis=1)
    )
    np.testing.assert_allclose(weaker, reduction[mild], atol=0.01)
    full = ~equal & ~mild
    np.testing.assert_array_equal(damaged[full], plain[full])


def test_a_recording_floor_lies_under_both_sides_in_tf_data(clips):
    """``tf.data`` with a floor 40 dB down: the clean side is the floorless stream's
    crop plus the floor at 40 dB, the damaged side that plus the chain's noise at 10 dB
    below the floored speech; "model" damage yields the floored crop on both sides."""
    from spectral_restore.data.artifacts import RecordingFloor

    floor = RecordingFloor(1.0, rumble_below_db=(300.0, 300.0), hiss_below_db=(40.0, 40.0))
    chain = ArtifactChain([("noise", 1.0, (10.0, 10.0))])
    options = dict(batch_size=4, segment_seconds=0.25, seed=3, chain=chain)
    plain = next(iter(make_dataset(clips, **options)))[1].numpy().astype(np.float64)
    damaged, clean = (x.numpy() for x in next(iter(make_dataset(clips, floor=floor, **options))))

    def snr(reference, other):
        return 10 * np.log10(
            np.mean(reference**2, axis=1) / np.mean((other - reference) ** 2, axis=1)
        )

    np.testing.assert_allclose(snr(plain, clean), 40.0, atol=0.01)
    np.testing.assert_allclose(snr(clean.astype(np.float64), damaged), 10.0, atol=0.05)
    model_side = next(iter(make_dataset(clips, floor=floor, damage="model", **options)))
    np.testing.assert_array_equal(model_side[0].numpy(), model_side[1].numpy())
    np.testing.assert_array_equal(model_side[1].numpy(), clean)
    with pytest.raises(TypeError, match="`floor` must be a RecordingFloor"):
        make_dataset(clips, floor="room", **options)


def test_tfds_synthetic_speech_source(tmp_path):
    pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is in the test extras")
    import shutil

    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are needed (tests/run_tests.sh installs them)")
    import tfds_builders  # noqa: F401 - registers the project's builders

    batches = list(
        make_dataset(
            "tfds:synthetic_speech/tiny",
            split="test",
            data_dir=str(tmp_path),
            batch_size=2,
            segment_seconds=1.0,
            shuffle=False,
        )
    )
    assert len(batches) == 3
    for damaged, clean in batches:
        assert damaged.shape == clean.shape == (2, 16000)
        assert np.all(np.isfinite(damaged.numpy()))


def test_recorded_folder_pairs_are_aligned_crops_without_synthetic_damage(speech_pairs):
    """The tf.data path of recorded pairs: every example is the same stretch of both
    sides of one pair (noise; clipping with its clean side at 44.1 kHz; lowpass with
    its damaged side at 8 kHz), levelled by one gain; no chain unless damage_pairs."""
    expected = expected_pairs(speech_pairs)
    # A small shuffle buffer: the default one (256) reads every file 64 times before the first batch.
    options = dict(segment_seconds=0.5, batch_size=3, seed=3, repeat=True, shuffle_buffer=3)
    names = []
    for damaged, clean in make_dataset(speech_pairs, **options).take(4):
        assert damaged.shape == clean.shape == (3, 8000)
        names += assert_aligned_crops(damaged.numpy(), clean.numpy(), expected)
    assert set(names) == set(RATES)
    chain = ArtifactChain([("noise", 1.0, (10.0, 10.0))])
    recorded = make_dataset(speech_pairs, **options)
    on_top = make_dataset(
        speech_pairs, chain=chain, damage_pairs=True, return_record=True, **options
    )
    for (plain, clean), (damaged, same_clean, record) in zip(recorded.take(2), on_top.take(2)):
        np.testing.assert_array_equal(clean.numpy(), same_clean.numpy())
        assert record["noise"]["applied"].numpy().all()
        noise = damaged.numpy().astype(np.float64) - plain.numpy()
        snr = 10 * np.log10(
            np.mean(plain.numpy().astype(np.float64) ** 2, axis=1) / np.mean(noise**2, axis=1)
        )
        np.testing.assert_allclose(snr, 10.0, atol=0.5)
    spectrograms = make_dataset(speech_pairs, output="spectrogram", **options)
    ((damaged_spectrum, _),) = spectrograms.take(1)
    ((damaged_wave, _),) = make_dataset(speech_pairs, **options).take(1)
    np.testing.assert_allclose(
        damaged_spectrum.numpy(), spectral.stack_complex(*spectral.stft(damaged_wave)).numpy()
    )


def test_pair_problems_are_counted_once_by_name_in_tf_data(tmp_path, speech_16k, caplog):
    folders, skips = write_problem_pairs(str(tmp_path), speech_16k)
    stats = ReadStats()
    with caplog.at_level("WARNING", logger="spectral_restore.data.files"):
        dataset = make_dataset(
            folders, batch_size=1, segment_seconds=0.5, stats=stats, shuffle=False, repeat=True
        )
        summaries = [record.getMessage() for record in caplog.records]
    assert len(summaries) == 1 and "orphan.wav (no clean partner)" in summaries[0]
    batches = list(dataset.take(12))  # three passes over the four readable pairs
    assert len(batches) == 12
    check_skips(stats, folders, skips)


def test_tfds_voicebank_demand_yields_its_noisy_side_resampled(tmp_path):
    """``tfds:voicebank_demand/48k`` (the builder's dummy archives) read at 16 kHz:
    the recorded noisy/clean pairs of the prepared dataset, resampled, aligned, in
    both data paths; ``manual_dir`` is where the archives are."""
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets is in the test extras"
    )
    import scipy.signal

    import tfds_builders  # noqa: F401 - registers the project's builders
    from tfds_builders.voicebank_demand.voicebank_demand_dataset_builder_test import (
        VoicebankDemandTest,
    )

    source, data_dir = "tfds:voicebank_demand/48k", str(tmp_path)
    options = dict(
        segment_seconds=0.1,
        batch_size=2,
        split="test",
        data_dir=data_dir,
        manual_dir=str(VoicebankDemandTest.dummy_data),
        shuffle=False,
        repeat=True,
    )
    batches = list(make_dataset(source, **options).take(3))
    assert is_pair_source(source, data_dir) and not is_pair_source(
        "tfds:synthetic_speech", data_dir
    )
    examples = tfds.as_numpy(tfds.load("voicebank_demand/48k", split="test", data_dir=data_dir))
    expected = {
        example["id"].decode(): tuple(
            scipy.signal.resample_poly(example[field] / 32768.0, 1, 3)
            for field in ("noisy", "audio")
        )
        for example in examples
    }
    assert len(expected) == 2
    for damaged, clean in batches:
        assert damaged.shape == (2, 1600)
        assert_aligned_crops(damaged.numpy(), clean.numpy(), expected)
    for index in range(3):
        assert_aligned_crops(*AudioDataset(source, **options)[index], expected)


def test_tfds_audio_folder_pairs_counts_clean_files_without_damaged_side(
    tmp_path, speech_pairs, speech_16k, monkeypatch
):
    """Also: ``data_dir`` and ``manual_dir`` given with ``~`` are the home folder's."""
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets is in the test extras"
    )
    import os
    import shutil

    import tfds_builders  # noqa: F401 - registers the project's builders

    manual = tmp_path / "manual"
    shutil.copytree(os.path.dirname(speech_pairs["clean"]), manual)
    sf.write(manual / "clean" / "alone.wav", speech_16k, 16000)
    monkeypatch.setenv("HOME", str(tmp_path))
    source, data_dir = "tfds:audio_folder_pairs", str(tmp_path / "data")
    options = dict(
        segment_seconds=0.5,
        batch_size=3,
        data_dir="~/data",
        manual_dir="~/manual",
        seed=5,
        repeat=True,
    )
    stats = ReadStats()
    batches = list(make_dataset(source, stats=stats, shuffle_buffer=3, **options).take(3))
    examples = tfds.as_numpy(tfds.load("audio_folder_pairs", split="train", data_dir=data_dir))
    expected = {
        example["path"].decode(): (example["damaged"] / 32768.0, example["audio"] / 32768.0)
        for example in examples
        if example["has_damaged"]
    }
    assert sorted(expected) == ["clipping.wav", "noise.wav", os.path.join("sub", "lowpass.wav")]
    names = []
    for damaged, clean in batches:
        names += assert_aligned_crops(damaged.numpy(), clean.numpy(), expected)
    assert set(names) == set(expected)
    assert stats.skipped == [("audio_folder_pairs/train/alone.wav", "no damaged partner")]
    neutral_stats = ReadStats()
    neutral = AudioDataset(source, stats=neutral_stats, **options)
    assert len(neutral.clips) == 3 and neutral_stats.skipped == stats.skipped
    assert_aligned_crops(*neutral[0], expected)


def test_an_unregistered_tfds_dataset_says_how_to_register_it():
    pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is in the test extras")
    with pytest.raises(ValueError, match="import tfds_builders"):
        make_dataset("tfds:no_such_dataset_of_spectral_restore", batch_size=2, segment_seconds=0.5)
