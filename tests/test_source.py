"""AudioDataset, the PyDataset source of every backend: crops, silence, levels,
order, resuming, unreadable files, its sources and recorded pairs. Runs under any
Keras backend."""

import numpy as np
import pytest
import soundfile as sf

from spectral_restore.data.artifacts import ArtifactChain
from spectral_restore.data.files import FilePair, ReadStats, match_pairs
from spectral_restore.data.source import AudioDataset, load_npz, save_npz

from recorded_pairs import (
    RATES,
    assert_aligned_crops,
    check_skips,
    expected_pairs,
    write_problem_pairs,
)
from reference import numpy_stft

RATE = 16000


def _bursts(seed, count=10, seconds=(0.6, 1.4)):
    """Noise bursts of different lengths and levels, rounded to 16-bit PCM so that
    arrays, WAV files and .npz files hold the very same samples."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        length = int(rng.uniform(*seconds) * RATE)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * np.arange(length) / RATE)
        wave = rng.uniform(0.02, 0.3) * envelope * rng.standard_normal(length)
        clips.append(np.round(np.clip(wave, -1, 1) * 32767) / 32768)
    return [clip.astype(np.float32) for clip in clips]


def _pcm16(clip):
    """The integers behind a :func:`_bursts` clip (written as such: exact in a WAV file)."""
    return np.round(clip * 32768).astype(np.int16)


def _where(crop, clips):
    """(clip index, start) of ``crop`` inside one of ``clips``, found by brute force."""
    for index, clip in enumerate(clips):
        for start in range(len(clip) - len(crop) + 1):
            if clip[start] == crop[0] and np.array_equal(clip[start : start + len(crop)], crop):
                return index, start
    return None


def _batches(dataset, count):
    return [dataset[i] for i in range(count)]


def _options(**changes):
    options = dict(segment_seconds=0.25, batch_size=4, damage="none", level_db=None, seed=7)
    options.update(changes)
    return options


def test_crops_come_from_the_clips_once_per_epoch_in_a_seeded_order():
    clips = _bursts(0, count=8)
    dataset = AudioDataset(clips, **_options(repeat=True))
    epochs = []
    for epoch in range(2):
        crops = np.concatenate([dataset[2 * epoch + i][1] for i in range(2)])
        found = [_where(crop, clips) for crop in crops]
        assert None not in found
        epochs.append([index for index, _ in found])
    # Each epoch visits every clip once, in its own order.
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(8))
    assert epochs[0] != epochs[1] and epochs[0] != list(range(8))
    again = AudioDataset(clips, **_options(repeat=True))
    for first, second in zip(_batches(dataset, 4), _batches(again, 4)):
        np.testing.assert_array_equal(first[1], second[1])
    other = AudioDataset(clips, **_options(repeat=True, seed=8))
    assert not np.array_equal(dataset[0][1], other[0][1])
    in_order = AudioDataset(clips, **_options(shuffle=False))
    assert [_where(crop, clips)[0] for crop in in_order[0][1]] == [0, 1, 2, 3]


def test_silent_crops_are_dropped():
    clips = _bursts(1, count=4, seconds=(1.0, 1.0))
    for clip in clips:
        clip[RATE // 2 :] = 0.0  # the second half of every clip is digital silence
    clips += [np.zeros(RATE, np.float32), np.full(RATE, 1e-4, np.float32)]  # -80 dB
    dataset = AudioDataset(clips, **_options(repeat=True, segment_seconds=0.1))
    crops = np.concatenate([batch[1] for batch in _batches(dataset, 12)])
    rms_db = 10 * np.log10(np.mean(crops.astype(np.float64) ** 2, axis=1) + 1e-12)
    assert np.all(rms_db > -60.0)
    found = [_where(crop, clips) for crop in crops]
    # Only crops that overlap the audible half survive; the silent clips never appear.
    assert all(index < 4 and start < RATE // 2 for index, start in found)


def test_levels_follow_the_numpy_formula():
    clips = _bursts(2, count=6)
    clips.append(
        (np.arange(RATE) % 400 == 0).astype(np.float32) * 0.5
    )  # clicks: the peak limit acts
    raw = AudioDataset(clips, **_options(repeat=True))
    levelled = AudioDataset(clips, **_options(repeat=True, level_db=-20.0))
    for index in range(4):
        crops, result = raw[index][1].astype(np.float64), levelled[index][1]
        gain = 10 ** (-20.0 / 20) / np.sqrt(np.mean(crops**2, axis=1, keepdims=True) + 1e-12)
        expected = (
            crops
            * gain
            * np.minimum(1.0, 0.99 / np.max(np.abs(crops * gain), axis=1, keepdims=True))
        )
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
        assert np.max(np.abs(result)) <= 0.99 + 1e-6
    peaky = AudioDataset([clips[-1]], **_options(repeat=True, level_db=-20.0, batch_size=1))[0][1]
    assert abs(np.max(np.abs(peaky)) - 0.99) < 1e-6 and 10 * np.log10(np.mean(peaky**2)) < -20.5


@pytest.mark.parametrize("cache_batches", [0, 3])
def test_skipping_batches_resumes_on_exactly_the_same_batches(cache_batches):
    clips = _bursts(3, count=7)
    options = _options(repeat=True, cache_batches=cache_batches)
    whole = _batches(AudioDataset(clips, **options), 9)
    resumed = _batches(AudioDataset(clips, skip_batches=4, **options), 5)
    for expected, got in zip(whole[4:], resumed):
        np.testing.assert_array_equal(expected[1], got[1])
    if cache_batches:
        distinct = {tuple(np.round(batch[1][:, 0], 6)) for batch in whole}
        assert len(distinct) == cache_batches


def test_finite_epochs_reshuffle_and_keras_iterates_with_workers():
    import keras

    clips = _bursts(4, count=9)
    dataset = AudioDataset(clips, **_options(workers=2))
    assert len(dataset) == dataset.num_batches == 2
    first = [batch[1] for batch in dataset]
    dataset.on_epoch_end()
    second = [batch[1] for batch in dataset]
    assert not np.array_equal(first[0], second[0])
    with pytest.raises(IndexError):
        dataset[2]
    # keras's own adapter, with its worker threads, yields the batches in order.
    from keras.src.trainers.data_adapters import get_data_adapter

    adapter = get_data_adapter(
        AudioDataset(clips, **_options(repeat=True, workers=2)), shuffle=False
    )
    adapter.on_epoch_begin()
    iterator = adapter.get_numpy_iterator()
    fetched = [next(iterator) for _ in range(3)]
    adapter.on_epoch_end()
    serial = AudioDataset(clips, **_options(repeat=True))
    for index, batch in enumerate(fetched):
        np.testing.assert_array_equal(batch[1], serial[index][1])
    assert keras.backend.backend() in ("tensorflow", "jax", "torch")


def test_unreadable_files_are_skipped_counted_once_and_replaced(tmp_path):
    clips = _bursts(5, count=6)
    for index, clip in enumerate(clips):
        sf.write(tmp_path / f"clip{index}.wav", _pcm16(clip), RATE, subtype="PCM_16")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (tmp_path / "empty.ogg").write_bytes(b"")
    bad = np.full(RATE, 0.1, np.float32)
    bad[5] = np.nan
    sf.write(tmp_path / "nan.wav", bad, RATE, subtype="FLOAT")
    (tmp_path / "notes.txt").write_text("not audio")
    stats = ReadStats()
    dataset = AudioDataset(tmp_path, stats=stats, **_options(repeat=True, batch_size=3))
    crops = np.concatenate([batch[1] for batch in _batches(dataset, 9)])  # three epochs of 9 files
    assert crops.shape == (27, 4000) and np.all(np.isfinite(crops))
    assert all(_where(crop, clips) is not None for crop in crops)
    assert stats.files_skipped == 3
    reasons = dict(stats.skipped)
    assert "could not decode" in reasons[str(tmp_path / "corrupt.wav")]
    assert "empty" in reasons[str(tmp_path / "empty.ogg")]
    assert "NaN" in reasons[str(tmp_path / "nan.wav")]
    assert stats.files_read >= 6


def test_folder_npz_and_array_sources_give_the_same_batches(tmp_path):
    train, test = _bursts(6, count=6), _bursts(7, count=4)
    for split, clips in (("train", train), ("test", test)):
        (tmp_path / "folder" / split).mkdir(parents=True)
        for index, clip in enumerate(clips):
            sf.write(
                tmp_path / "folder" / split / f"{index:02d}.wav",
                _pcm16(clip),
                RATE,
                subtype="PCM_16",
            )
    save_npz(tmp_path / "speech.npz", RATE, train=train, test=test)
    for split, clips in (("train", train), ("test", test)):
        options = _options(split=split, level_db=-25.0)
        from_array = AudioDataset(clips, **options)[0][1]
        from_list = AudioDataset(np.stack([c[: RATE // 2] for c in clips]), **options)[0][1]
        assert from_list.shape == from_array.shape
        np.testing.assert_array_equal(
            AudioDataset(tmp_path / "folder", **options)[0][1], from_array
        )
        np.testing.assert_array_equal(
            AudioDataset(str(tmp_path / "speech.npz"), **options)[0][1], from_array
        )
    for clip, loaded in zip(test, load_npz(tmp_path / "speech.npz", "test", RATE)):
        np.testing.assert_array_equal(clip, loaded)
    pcm = np.stack([_pcm16(c[: RATE // 2]) for c in train])
    np.savez(tmp_path / "matrix.npz", train=pcm)
    np.testing.assert_array_equal(
        np.stack(load_npz(tmp_path / "matrix.npz", "train", RATE)), pcm / 32768.0
    )
    # Integer PCM (as TFDS yields it) is saved as the same samples, not as saturated floats.
    save_npz(tmp_path / "pcm.npz", RATE, train=list(pcm))
    np.testing.assert_array_equal(
        np.stack(load_npz(tmp_path / "pcm.npz", "train", RATE)), pcm / 32768.0
    )
    with pytest.raises(ValueError, match="no split 'valid'"):
        load_npz(tmp_path / "speech.npz", "valid", RATE)
    with pytest.raises(ValueError, match="16000 Hz"):
        load_npz(tmp_path / "speech.npz", "train", 8000)


def test_spectrogram_output_is_the_stft_of_the_waveforms():
    from spectral_restore import spectral

    clips = _bursts(8, count=4)
    waves = AudioDataset(clips, **_options())[0][1]
    spectrograms = AudioDataset(clips, output="spectrogram", **_options())[0][1]
    config = spectral.STFTConfig()
    for wave, spectrogram in zip(waves, spectrograms):
        reference = numpy_stft(wave.astype(np.float64), config)
        np.testing.assert_allclose(spectrogram[..., 0], reference.real, atol=2e-4)
        np.testing.assert_allclose(spectrogram[..., 1], reference.imag, atol=2e-4)


def test_damage_in_the_source_is_seeded_per_batch_and_recorded():
    from spectral_restore.data.artifacts import ArtifactChain

    clips = _bursts(9, count=8)
    chain = ArtifactChain([("noise", 1.0, (10.0, 10.0))])
    dataset = AudioDataset(
        clips, chain=chain, return_record=True, **_options(repeat=True, damage="pipeline")
    )
    damaged, clean, record = dataset[3]
    snr = 10 * np.log10(np.sum(clean**2, axis=1) / np.sum((damaged - clean) ** 2, axis=1))
    np.testing.assert_allclose(snr, 10.0, atol=0.05)
    assert record["noise"]["applied"].all()
    np.testing.assert_array_equal(dataset[3][0], damaged)
    assert not np.array_equal(dataset[4][0] - dataset[4][1], damaged - clean)
    model_side = AudioDataset(clips, chain=chain, **_options(repeat=True, damage="model"))
    np.testing.assert_array_equal(*model_side[3])
    np.testing.assert_array_equal(model_side[3][1], clean)


def _snr(reference, other):
    reference = reference.astype(np.float64)
    return 10 * np.log10(np.mean(reference**2, axis=1) / np.mean((other - reference) ** 2, axis=1))


def test_a_recording_floor_lies_under_both_sides_before_the_damage(speech_pairs):
    """With a floor 40 dB down, the clean side is the floorless stream's crop plus the
    floor at 40 dB, the damaged side that plus the chain's noise at 10 dB below the
    floored speech; "model" damage yields the floored crop on both sides; recorded
    pairs keep their own background (no floor)."""
    from spectral_restore.data.artifacts import ArtifactChain, RecordingFloor

    clips = _bursts(9, count=8)
    floor = RecordingFloor(1.0, rumble_below_db=(40.0, 40.0), hiss_below_db=(300.0, 300.0))
    chain = ArtifactChain([("noise", 1.0, (10.0, 10.0))])
    options = _options(repeat=True, damage="pipeline")
    plain = AudioDataset(clips, chain=chain, **options)[2][1]
    damaged, clean = AudioDataset(clips, chain=chain, floor=floor, **options)[2]
    np.testing.assert_allclose(_snr(plain, clean), 40.0, atol=0.01)
    np.testing.assert_allclose(_snr(clean, damaged), 10.0, atol=0.05)
    model_side = AudioDataset(clips, floor=floor, **_options(repeat=True, damage="model"))[2]
    np.testing.assert_array_equal(model_side[0], model_side[1])
    np.testing.assert_array_equal(model_side[1], clean)
    pairs = AudioDataset(speech_pairs, floor=floor, segment_seconds=0.5, batch_size=3, seed=3)
    assert pairs.floor is None
    np.testing.assert_array_equal(
        pairs[0][1], AudioDataset(speech_pairs, segment_seconds=0.5, batch_size=3, seed=3)[0][1]
    )
    with pytest.raises(TypeError, match="`floor` must be a RecordingFloor"):
        AudioDataset(clips, floor=0.5, **options)


def test_bad_arguments_are_named():
    clips = _bursts(10, count=4)
    for name, value in (
        ("damage", "gpu"),
        ("output", "mel"),
        ("batch_size", 0),
        ("skip_batches", -1),
        ("segment_seconds", 0),
        ("cache_batches", 1.5),
    ):
        with pytest.raises(ValueError, match=name):
            AudioDataset(clips, **{**_options(), name: value})
    with pytest.raises(ValueError, match="fewer than one batch"):
        AudioDataset(clips, **_options(batch_size=5))
    with pytest.raises(ValueError, match="needs an ArtifactChain"):
        AudioDataset(clips, **_options(damage="pipeline", chain=None))
    with pytest.raises(TypeError, match="source"):
        AudioDataset(42, **_options())
    with pytest.raises(ValueError, match="No audible"):
        AudioDataset([np.zeros(RATE, np.float32)] * 4, **_options())[0]
    with pytest.raises(TypeError, match="no length"):
        len(AudioDataset(clips, **_options(repeat=True)))


def test_tfds_source_reads_the_prepared_split(tmp_path):
    pytest.importorskip("tensorflow", reason="TFDS sources need TensorFlow")
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets is in the test extras"
    )
    import shutil

    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are needed (tests/run_tests.sh installs them)")
    import tfds_builders  # noqa: F401 - registers synthetic_speech

    dataset = AudioDataset(
        "tfds:synthetic_speech/tiny",
        split="test",
        data_dir=str(tmp_path),
        **_options(shuffle=False),
    )
    examples = list(
        tfds.as_numpy(tfds.load("synthetic_speech/tiny", split="test", data_dir=str(tmp_path)))
    )
    assert len(dataset.clips) == len(examples)
    for clip, example in zip(dataset.clips, examples):
        np.testing.assert_array_equal(clip, example["audio"] / 32768.0)
    assert dataset[0][1].shape == (4, 4000)


def test_match_pairs_by_relative_path_reports_every_unmatched_file(tmp_path):
    files = [
        "damaged/a.flac",
        "damaged/sub/b.wav",
        "damaged/orphan.wav",
        "damaged/c.wav",
        "damaged/c.flac",
        "clean/a.wav",
        "clean/sub/b.WAV",
        "clean/c.wav",
        "clean/lonely.ogg",
        "clean/notes.txt",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    pairs, problems = match_pairs(tmp_path / "damaged", tmp_path / "clean")
    path = lambda name: str(tmp_path / name)  # noqa: E731
    assert pairs == [
        FilePair("a", path("damaged/a.flac"), path("clean/a.wav")),
        FilePair("sub/b", path("damaged/sub/b.wav"), path("clean/sub/b.WAV")),
    ]
    assert dict(problems) == {
        path("damaged/c.flac"): "ambiguous: 2 damaged files named c.*",
        path("damaged/c.wav"): "ambiguous: 2 damaged files named c.*",
        path("clean/c.wav"): "damaged partner ambiguous (2 files named c.*)",
        path("damaged/orphan.wav"): "no clean partner",
        path("clean/lonely.ogg"): "no damaged partner",
    }
    with pytest.raises(FileNotFoundError, match="nowhere"):
        match_pairs(tmp_path / "nowhere", tmp_path / "clean")


def test_recorded_pairs_are_aligned_crops_without_synthetic_damage(speech_pairs):
    """Noise, clipping (clean side at 44.1 kHz) and lowpass (damaged side at 8 kHz,
    FLAC, in a subfolder): every example is the same stretch of both sides of one
    pair, resampled to 16 kHz and levelled by one gain, and the default damage mode
    applies no chain to recorded pairs; ``damage_pairs=True`` adds it on top."""
    expected = expected_pairs(speech_pairs)
    options = dict(
        segment_seconds=0.5, batch_size=3, seed=3, repeat=True
    )  # level_db -25 and damage="pipeline"
    dataset = AudioDataset(speech_pairs, **options)
    assert dataset.paired and dataset.chain is None
    names = []
    for index in range(4):
        damaged, clean = dataset[index]
        assert damaged.shape == clean.shape == (3, 8000)
        names += assert_aligned_crops(damaged, clean, expected)
        np.testing.assert_allclose(
            10 * np.log10(np.mean(clean.astype(np.float64) ** 2, axis=1)), -25.0, atol=1e-3
        )
    assert set(names) == set(RATES)
    chain = ArtifactChain([("noise", 1.0, (10.0, 10.0))])
    on_top = AudioDataset(
        speech_pairs, chain=chain, damage_pairs=True, return_record=True, **options
    )
    damaged, clean, record = on_top[0]
    recorded, same_clean = dataset[0]
    np.testing.assert_array_equal(clean, same_clean)
    assert record["noise"]["applied"].all()
    noise = damaged.astype(np.float64) - recorded
    snr = 10 * np.log10(
        np.mean(recorded.astype(np.float64) ** 2, axis=1) / np.mean(noise**2, axis=1)
    )
    np.testing.assert_allclose(snr, 10.0, atol=0.5)


def test_utterances_are_whole_clips_levelled_as_crops_are(speech_pairs, speech_16k, tmp_path):
    """``utterance(i)``: clip i at its full length, at -25 dB RMS (the crops' level
    rule); a recorded pair as ``[damaged, clean]`` scaled by the clean side's gain."""
    sf.write(tmp_path / "a.wav", speech_16k[:5000], 16000)
    sf.write(tmp_path / "b.wav", speech_16k, 16000)
    single = AudioDataset(str(tmp_path), batch_size=1, damage="none")
    for index, length in ((0, 5000), (1, len(speech_16k))):
        utterance = single.utterance(index).astype(np.float64)
        assert utterance.shape == (length,)
        assert 10 * np.log10(np.mean(utterance**2)) == pytest.approx(-25.0, abs=1e-3)
        original = sf.read(tmp_path / ("a.wav", "b.wav")[index])[0]
        assert np.corrcoef(utterance, original)[0, 1] > 1 - 1e-9
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        single.utterance(2)
    pairs = AudioDataset(speech_pairs, batch_size=1, damage="none")
    expected = expected_pairs(speech_pairs)
    for index, pair in enumerate(pairs.clips):
        damaged, clean = pairs.utterance(index).astype(np.float64)
        reference_damaged, reference_clean = expected[pair.name]
        gain = np.sqrt(np.mean(clean**2) / np.mean(reference_clean**2))
        assert 10 * np.log10(np.mean(clean**2)) == pytest.approx(-25.0, abs=1e-3)
        np.testing.assert_allclose(clean, gain * reference_clean, atol=2e-5 * max(gain, 1.0))
        np.testing.assert_allclose(damaged, gain * reference_damaged, atol=2e-5 * max(gain, 1.0))


def test_pair_problems_are_counted_by_name_and_reported_in_one_line(tmp_path, speech_16k, caplog):
    folders, skips = write_problem_pairs(str(tmp_path), speech_16k)
    stats = ReadStats()
    with caplog.at_level("WARNING", logger="spectral_restore.data.files"):
        dataset = AudioDataset(folders, stats=stats, **_options(batch_size=2, segment_seconds=0.5))
    (summary,) = [record.getMessage() for record in caplog.records]
    assert "6 matched: 1 files skipped" in summary and "orphan.wav (no clean partner)" in summary
    assert (
        len(dataset.clips) == 6
    )  # 3 recorded kinds, long, near and corrupt: read when first drawn
    for index in range(len(dataset)):
        dataset[index]
    check_skips(stats, folders, skips)
    assert "tolerance 0.05 s" in dict(stats.skipped)[folders["damaged"] + "/long.wav"]
    lenient = ReadStats()
    dataset = AudioDataset(
        folders, stats=lenient, pair_tolerance_seconds=0.25, **_options(batch_size=2)
    )
    for index in range(len(dataset)):
        dataset[index]
    check_skips(
        lenient, folders, {name: reason for name, reason in skips.items() if name != "long.wav"}
    )
    with pytest.raises(ValueError, match="pair_tolerance_seconds"):
        AudioDataset(folders, pair_tolerance_seconds=-1, **_options())
    with pytest.raises(ValueError, match="folder-pair source"):
        AudioDataset({"noisy": folders["damaged"], "clean": folders["clean"]}, **_options())
