"""Speed perturbation of training segments (spectral_restore.data.speed): the Fourier
resampling against scipy.signal.resample, the speed it gives a tone, and both data
paths (AudioDataset on every backend; make_dataset where TensorFlow is installed)."""

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from spectral_restore.data import speed
from spectral_restore.data.source import AudioDataset

RATE = 16000
SIZES = [(100, 80), (101, 80), (80, 100), (81, 100), (99, 101), (64, 64), (9000, 8000)]


def _tensorflow(reason="make_dataset is the tf.data path"):
    return pytest.importorskip("tensorflow", reason=reason)


def _make_dataset(source, **options):
    _tensorflow()
    from spectral_restore.data.pipeline import make_dataset

    return next(iter(make_dataset(source, **options)))


def _peak_hz(segments):
    """The strongest frequency of each segment ``[..., samples]`` (Hann-windowed)."""
    spectrum = np.abs(np.fft.rfft(segments * np.hanning(segments.shape[-1]), axis=-1))
    return np.argmax(spectrum, axis=-1) * RATE / segments.shape[-1]


def _tones(hz=500.0, count=8, seconds=2.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack([0.3 * np.sin(2 * np.pi * hz * t + phase) for phase in range(count)]).astype(
        np.float32
    )


@pytest.mark.parametrize("samples,length", SIZES)
def test_resample_equals_scipy_signal_resample(samples, length):
    wave = np.random.default_rng(samples).standard_normal((2, samples)).astype(np.float32)
    expected = scipy.signal.resample(wave.astype(np.float64), length, axis=-1)
    got = speed.resample(wave, samples, length)
    assert got.dtype == np.float32 and got.shape == (2, length)
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("samples,length", SIZES)
def test_resample_in_tensorflow_equals_scipy_with_a_dynamic_length(samples, length):
    tf = _tensorflow("make_dataset's resampling runs in TensorFlow (stage 1 runs it)")
    import tensorflow.experimental.numpy as tnp

    @tf.function(input_signature=[tf.TensorSpec([2, None], tf.float32)])
    def resample(wave):
        return speed.resample(wave, tf.shape(wave)[-1], length, xp=tnp, fft=speed.tf_fft())

    wave = np.random.default_rng(samples).standard_normal((2, samples)).astype(np.float32)
    expected = scipy.signal.resample(wave.astype(np.float64), length, axis=-1)
    np.testing.assert_allclose(resample(wave).numpy(), expected, atol=3e-6)


def test_source_length_rounds_half_up_and_keeps_two_samples():
    assert [int(speed.source_length(1000, f)) for f in (0.9, 1.1, 1.0005, 0.0)] == [
        900,
        1100,
        1001,
        2,
    ]


def _paths(tmp_path):
    """Both data paths' first clean batch of 0.5 s crops of :func:`_tones`."""

    def batches(source, speed_perturb, **options):
        options = dict(
            segment_seconds=0.5,
            batch_size=8,
            damage="none",
            level_db=None,
            seed=5,
            speed_perturb=speed_perturb,
            **options,
        )
        yield "AudioDataset", AudioDataset(source, **options)[0]
        try:
            yield "make_dataset", tuple(np.asarray(x) for x in _make_dataset(source, **options))
        except pytest.skip.Exception:
            pass

    return batches


def test_a_tone_comes_out_faster_by_the_drawn_factor(tmp_path):
    """A 500 Hz tone read at speed 1.25 is a 625 Hz tone; factors drawn from
    (0.8, 1.2) give tones between 400 and 600 Hz, different per example; without
    perturbation the tone stays at 500 Hz."""
    tones = _tones()
    batches = _paths(tmp_path)
    for path, (_, clean) in batches(tones, (1.25, 1.25)):
        assert clean.shape == (8, RATE // 2), path
        np.testing.assert_allclose(_peak_hz(clean), 625.0, atol=2.0, err_msg=path)
    for path, (_, clean) in batches(tones, (0.8, 1.2)):
        peaks = _peak_hz(clean)
        assert np.all((peaks >= 398.0) & (peaks <= 602.0)) and len(set(peaks)) >= 4, (path, peaks)
    for path, (_, clean) in batches(tones, None):
        np.testing.assert_allclose(_peak_hz(clean), 500.0, atol=2.0, err_msg=path)


def test_speed_one_changes_nothing_else_in_the_stream(tmp_path):
    """Factor 1 reads the very crops of the unperturbed stream (same starts, same
    order): perturbation draws from its own seed stream."""
    clips = (0.1 * np.random.default_rng(3).standard_normal((8, 20000))).astype(np.float32)
    batches = _paths(tmp_path)
    plain = dict(batches(clips, None))
    for path, (_, clean) in batches(clips, (1.0, 1.0)):
        np.testing.assert_allclose(clean, plain[path][1], atol=1e-5, err_msg=path)


def test_both_sides_of_a_recorded_pair_get_the_same_speed(tmp_path):
    """A pair whose damaged side is its clean side at half the level stays so: one
    crop, one factor and one gain for both sides."""
    folders = {side: tmp_path / side for side in ("damaged", "clean")}
    for folder in folders.values():
        folder.mkdir()
    t = np.arange(2 * RATE) / RATE
    for index in range(8):
        tone = (0.3 * np.sin(2 * np.pi * (300.0 + 40 * index) * t)).astype(np.float32)
        sf.write(folders["clean"] / f"{index}.wav", tone, RATE, subtype="FLOAT")
        sf.write(folders["damaged"] / f"{index}.wav", 0.5 * tone, RATE, subtype="FLOAT")
    source = {side: str(folder) for side, folder in folders.items()}
    batches = _paths(tmp_path)
    for path, (damaged, clean) in batches(source, (0.8, 1.2)):
        np.testing.assert_allclose(damaged, 0.5 * clean, atol=1e-6, err_msg=path)
        peaks = _peak_hz(clean)
        assert np.all((peaks >= 238.0) & (peaks <= 698.0)) and len(set(peaks)) == 8, (path, peaks)


@pytest.mark.parametrize(
    "value,message",
    [
        ("fast", "must be \\(low, high\\) speed factors or None"),
        ([1.0, 1.1, 1.2], "must be \\(low, high\\) speed factors or None"),
        ([True, 1.1], "must hold two numbers"),
        ([1.1, 0.9], "must satisfy 0.5 <= low <= high <= 2.0"),
        ([0.3, 1.0], "must satisfy 0.5 <= low <= high <= 2.0"),
    ],
)
def test_bad_speed_ranges_are_named(value, message):
    with pytest.raises(ValueError, match=f"`speed_perturb` {message}"):
        speed.check_speed_range(value)
    with pytest.raises(ValueError, match=message):
        AudioDataset(_tones(count=4), batch_size=2, damage="none", speed_perturb=value)
    try:
        with pytest.raises(ValueError, match=message):
            _make_dataset(_tones(count=4), batch_size=2, damage="none", speed_perturb=value)
    except pytest.skip.Exception:
        pass
