import os

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import soxr
import tensorflow as tf

from spectral_restore import audio_io
from spectral_restore.audio_io import AudioReadError, read_audio, resample, write_audio

REQUIRE_TFIO = os.environ.get("SPECTRAL_RESTORE_REQUIRE_TFIO") == "1"


def tone(seconds=0.5, rate=16000, freq=440.0, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    "name,subtype,atol",
    [
        ("a.wav", "PCM_16", 1 / 32768),
        ("b.wav", "PCM_24", 1e-6),
        ("c.wav", "FLOAT", 0.0),
        ("d.flac", "PCM_16", 1 / 32768),
        ("e.flac", "PCM_24", 1e-6),
    ],
)
def test_write_read_roundtrip(tmp_path, name, subtype, atol):
    x = tone()
    path = tmp_path / name
    write_audio(path, x, 16000, subtype=subtype)
    y, rate = read_audio(path)
    assert rate == 16000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol + 1e-7)


def test_wav_16bit_goes_through_tf_decoder_and_agrees_with_soundfile(tmp_path):
    x = tone()
    write_audio(tmp_path / "a.wav", x, 16000)
    via_tf, _ = read_audio(tmp_path / "a.wav", backend="tf")
    via_sf, _ = read_audio(tmp_path / "a.wav", backend="soundfile")
    decoded = tf.audio.decode_wav(tf.io.read_file(str(tmp_path / "a.wav")))[0].numpy()[:, 0]
    np.testing.assert_array_equal(via_tf, decoded)
    np.testing.assert_allclose(via_tf, via_sf, atol=1e-7)


def test_ogg_roundtrip_is_close(tmp_path):
    x = tone(1.0)
    write_audio(tmp_path / "a.ogg", x, 16000)
    y, rate = read_audio(tmp_path / "a.ogg")
    assert rate == 16000 and abs(len(y) - len(x)) == 0
    # Vorbis is lossy: compare levels, not samples.
    assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 0.02


def test_stereo_to_mono_and_channels_first(tmp_path):
    left, right = tone(freq=300), tone(freq=500, amp=0.25)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    mono, _ = read_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)
    both, _ = read_audio(tmp_path / "s.wav", mono=False)
    assert both.shape == (2, len(left))
    np.testing.assert_allclose(both[1], right, atol=1e-7)


def test_read_with_resampling_matches_scipy(tmp_path, speech_16k):
    write_audio(tmp_path / "s.wav", speech_16k, 16000, subtype="FLOAT")
    y, rate = read_audio(tmp_path / "s.wav", sample_rate=8000)
    assert rate == 8000
    np.testing.assert_allclose(
        y, scipy.signal.resample_poly(speech_16k.astype(np.float64), 1, 2), atol=1e-5
    )


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.wav"):
        read_audio(tmp_path / "nothere.wav")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioReadError, match=r"empty\.wav.*empty"):
        read_audio(tmp_path / "empty.wav")


def test_directory_is_rejected(tmp_path):
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioReadError, match="directory"):
        read_audio(tmp_path / "dir.wav")


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_truncated_wav(tmp_path, subtype):
    write_audio(tmp_path / "full.wav", tone(), 16000, subtype=subtype)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match=r"cut\.wav.*truncated"):
        read_audio(tmp_path / "cut.wav")


def test_truncated_flac(tmp_path):
    write_audio(tmp_path / "full.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 32000), 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match=r"cut\.flac"):
        read_audio(tmp_path / "cut.flac", backend="soundfile")


def test_corrupt_file(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(AudioReadError, match=r"junk\.wav.*could not decode"):
        read_audio(tmp_path / "junk.wav")
    (tmp_path / "junk.flac").write_bytes(os.urandom(2000))
    with pytest.raises(AudioReadError, match=r"junk\.flac.*could not decode"):
        read_audio(tmp_path / "junk.flac", backend="soundfile")


def test_nan_samples_rejected(tmp_path):
    x = tone()
    x[100] = np.nan
    x[200] = np.inf
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioReadError, match=r"nan\.wav: 2 of \d+ samples are NaN or infinite"):
        read_audio(tmp_path / "nan.wav")


def test_unsupported_rate(tmp_path):
    sf.write(tmp_path / "slow.wav", tone(rate=500), 500)
    with pytest.raises(AudioReadError, match=r"slow\.wav.*500 Hz"):
        read_audio(tmp_path / "slow.wav")
    write_audio(tmp_path / "ok.wav", tone(), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        read_audio(tmp_path / "ok.wav", sample_rate=0)
    with pytest.raises(ValueError, match="from_rate"):
        resample(tone(), 16000.5, 8000)


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        write_audio(tmp_path / "a.mp4", tone(), 16000)
    with pytest.raises(ValueError, match="NaN"):
        write_audio(tmp_path / "a.wav", np.array([0.0, np.nan]), 16000)
    with pytest.raises(ValueError, match="peak 1.500.*clip"):
        write_audio(tmp_path / "a.wav", np.array([0.0, 1.5]), 16000)
    write_audio(tmp_path / "a.wav", np.array([0.0, 1.5]), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "a.wav")[0], [0.0, 1.5])


RATE_PAIRS = [
    (16000, 8000),
    (8000, 16000),
    (44100, 16000),
    (16000, 44100),
    (48000, 16000),
    (16000, 22050),
    (22050, 16000),
    (16000, 48000),
]


@pytest.mark.parametrize("from_rate,to_rate", RATE_PAIRS)
def test_resample_matches_scipy_resample_poly_on_speech(speech_16k, from_rate, to_rate):
    # Treat the utterance as if recorded at from_rate: the ratio is what matters.
    x = speech_16k.astype(np.float64)
    g = np.gcd(from_rate, to_rate)
    want = scipy.signal.resample_poly(x, to_rate // g, from_rate // g)
    got = np.asarray(resample(speech_16k[None], from_rate, to_rate))[0]
    assert got.shape == want.shape
    interior = slice(100, -100)
    assert np.max(np.abs(got[interior] - want[interior])) <= 1e-3
    # The same filter is designed, so the whole signal agrees far more closely.
    assert np.max(np.abs(got - want)) <= 1e-5


def test_kaiser_filter_matches_scipy_firwin():
    taps, half = audio_io.kaiser_lowpass(160, 441)
    want = 160 * scipy.signal.firwin(2 * half + 1, 1.0 / 441, window=("kaiser", 5.0))
    np.testing.assert_allclose(taps, want, rtol=1e-10, atol=1e-14)


def test_resample_inside_tf_function_dynamic_length_and_gradient(speech_16k):
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def down(x):
        return resample(x, 48000, 16000)

    for length in (4800, 12345):
        x = speech_16k[None, :length]
        np.testing.assert_allclose(
            down(x).numpy()[0], scipy.signal.resample_poly(x[0].astype(np.float64), 1, 3), atol=1e-5
        )
    x = tf.constant(speech_16k[None, :4000])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = resample(x, 16000, 22050)
        total = tf.reduce_sum(y**2)
    grad = tape.gradient(total, x)
    assert np.all(np.isfinite(grad.numpy())) and float(tf.reduce_max(tf.abs(grad))) > 0


def test_resample_batched_and_identity(rng):
    x = rng.standard_normal((2, 3, 1000)).astype(np.float32)
    y = np.asarray(resample(x, 16000, 8000))
    assert y.shape == (2, 3, 500)
    np.testing.assert_allclose(
        y[1, 2], scipy.signal.resample_poly(x[1, 2].astype(np.float64), 1, 2), atol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(resample(x, 16000, 16000)), x)


def test_tfio_backend_matches_soundfile(tmp_path):
    if not audio_io.tfio_available():
        if REQUIRE_TFIO:
            pytest.fail("SPECTRAL_RESTORE_REQUIRE_TFIO=1 but tensorflow-io's ops do not load")
        pytest.skip(
            "tensorflow-io's ops load only with TensorFlow 2.16-2.17 (CI stage 2 runs this)"
        )
    x = tone(1.0)
    write_audio(tmp_path / "a.flac", x, 16000)
    via_tfio, rate = read_audio(tmp_path / "a.flac", backend="tfio")
    via_sf, _ = read_audio(tmp_path / "a.flac", backend="soundfile")
    assert rate == 16000
    np.testing.assert_allclose(via_tfio, via_sf, atol=1e-7)
    # "auto" picks tensorflow-io for non-WAV formats when it loads.
    via_auto, _ = read_audio(tmp_path / "a.flac")
    np.testing.assert_array_equal(via_auto, via_tfio)


def test_tfio_backend_unavailable_is_a_clear_error(tmp_path):
    if audio_io.tfio_available():
        pytest.skip("tensorflow-io loads here; the error path needs it absent")
    write_audio(tmp_path / "a.flac", tone(), 16000)
    with pytest.raises(AudioReadError, match="tensorflow-io"):
        read_audio(tmp_path / "a.flac", backend="tfio")


def band_limited_noise(rng, channels, length, rate, top_hz):
    """Periodic noise ``[channels, length]`` with no energy above ``top_hz``, peak 0.5:
    ``scipy.signal.resample`` (FFT interpolation) resamples it exactly."""
    spectrum = np.fft.rfft(rng.standard_normal((channels, length)), axis=-1)
    spectrum[:, np.fft.rfftfreq(length, 1 / rate) > top_hz] = 0
    x = np.fft.irfft(spectrum, length, axis=-1)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def stream_in_blocks(resampler, x, block):
    pieces = [
        resampler(x[:, start : start + block], last=start + block >= x.shape[1])
        for start in range(0, x.shape[1], block)
    ]
    return np.concatenate(pieces, axis=1)


@pytest.mark.parametrize("from_rate,to_rate", RATE_PAIRS)
def test_stream_resampler_matches_the_fft_oracle_and_whole_signal_soxr(rng, from_rate, to_rate):
    """Two channels of one second of periodic noise band-limited to 85% of the lower
    Nyquist frequency, fed in blocks of 1237 samples: within 2e-4 of the exact FFT
    resampling away from the ends (measured up to 9.6e-5 at 22.05 -> 16 kHz, the 0.01 dB
    passband ripple; 1e-7 for integer ratios), and equal to soxr on the whole signal."""
    x = band_limited_noise(rng, 2, from_rate, from_rate, 0.85 * min(from_rate, to_rate) / 2)
    got = stream_in_blocks(audio_io.StreamResampler(from_rate, to_rate, channels=2), x, 1237)
    assert got.shape == (2, to_rate) and got.dtype == np.float32
    want = scipy.signal.resample(x.astype(np.float64), to_rate, axis=-1)
    edge = to_rate // 50
    assert np.max(np.abs(got - want)[:, edge:-edge]) < 2e-4
    np.testing.assert_array_equal(got, soxr.resample(x.T.copy(order="C"), from_rate, to_rate).T)


def test_stream_resampler_rejects_what_would_alias(rng):
    """44.1 -> 16 kHz: tones between 8.4 kHz and 22 kHz leave less than -100 dB (measured
    -134 dB); a tone at 7 kHz passes within 0.01 dB."""
    t = np.arange(44100) / 44100
    for frequency in (8400.0, 9000.0, 12000.0, 20000.0, 7000.0):
        x = np.sin(2 * np.pi * frequency * t)[None].astype(np.float32)
        y = stream_in_blocks(audio_io.StreamResampler(44100, 16000, channels=1), x, 4410)[
            0, 800:-800
        ]
        ratio = np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2))
        if frequency < 8000:
            assert abs(20 * np.log10(ratio)) < 0.01, frequency
        else:
            assert ratio < 1e-5, frequency


@pytest.mark.parametrize("length", [1, 7, 4410, 12345])
@pytest.mark.parametrize(
    "from_rate,to_rate", [(44100, 16000), (16000, 44100), (8000, 22050), (16000, 16000)]
)
def test_stream_resampler_odd_lengths_and_blocks(rng, length, from_rate, to_rate):
    """Any length and block size: the same samples as whole-signal soxr (the rates'
    ratio times the length, rounded); equal rates pass the blocks through."""
    x = rng.uniform(-0.5, 0.5, (3, length)).astype(np.float32)
    whole = x if from_rate == to_rate else soxr.resample(x.T.copy(order="C"), from_rate, to_rate).T
    assert abs(whole.shape[1] - length * to_rate / from_rate) <= 1
    for block in (1, 333, length):
        np.testing.assert_array_equal(
            stream_in_blocks(audio_io.StreamResampler(from_rate, to_rate, 3), x, block),
            whole,
            err_msg=f"block {block}",
        )


def test_stream_resampler_rejects_bad_use():
    resampler = audio_io.StreamResampler(48000, 16000, channels=2)
    with pytest.raises(ValueError, match=r"\[2, frames\]"):
        resampler(np.zeros((1, 10)))
    resampler(np.zeros((2, 10)), last=True)
    with pytest.raises(ValueError, match="last block"):
        resampler(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="channels"):
        audio_io.StreamResampler(48000, 16000, channels=0)
    with pytest.raises(ValueError, match="to_rate"):
        audio_io.StreamResampler(48000, 100, channels=1)


def test_reader_blocks_are_the_file_and_writer_blocks_make_the_same_file(tmp_path, rng):
    samples = rng.uniform(-0.9, 0.9, (3, 10007))
    sf.write(tmp_path / "three.flac", samples.T, 22050, subtype="PCM_24")
    whole, _ = sf.read(tmp_path / "three.flac", dtype="float32", always_2d=True)
    with audio_io.AudioReader(tmp_path / "three.flac") as reader:
        assert (reader.sample_rate, reader.channels, reader.frames, reader.subtype) == (
            22050,
            3,
            10007,
            "PCM_24",
        )
        blocks = list(reader.blocks(1000))
    assert [last for _, last in blocks] == [False] * 10 + [True]
    assert [block.shape for block, _ in blocks][-1] == (3, 7)
    np.testing.assert_array_equal(np.concatenate([block for block, _ in blocks], axis=1), whole.T)
    with audio_io.AudioWriter(tmp_path / "blocks.wav", 22050, 3, subtype="PCM_24") as writer:
        for block, _ in blocks:
            writer.write(block)
    write_audio(tmp_path / "whole.wav", whole.T, 22050, subtype="PCM_24")
    assert (tmp_path / "blocks.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()


def test_writer_checks_every_block(tmp_path):
    with audio_io.AudioWriter(tmp_path / "a.wav", 16000, 2) as writer:
        writer.write(np.zeros((2, 10)))
        with pytest.raises(ValueError, match=r"\[2, frames\]"):
            writer.write(np.zeros((1, 10)))
        with pytest.raises(ValueError, match="NaN"):
            writer.write(np.full((2, 3), np.nan))
        with pytest.raises(ValueError, match="peak 1.500.*clip"):
            writer.write(np.full((2, 3), 1.5))
    assert sf.info(tmp_path / "a.wav").frames == 10
    with pytest.raises(ValueError, match="extension"):
        audio_io.AudioWriter(tmp_path / "a.mp4", 16000, 1)


def bad_audio_files(folder):
    """``{name: (file, expected error, message pattern)}``: each failure read_audio reports."""
    write_audio(folder / "full.wav", tone(), 16000, subtype="PCM_16")
    data = (folder / "full.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: len(data) // 2])
    (folder / "empty.wav").write_bytes(b"")
    (folder / "dir.wav").mkdir()
    (folder / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    (folder / "junk.flac").write_bytes(np.random.default_rng(0).bytes(2000))
    sf.write(folder / "slow.wav", tone(rate=500), 500)
    sf.write(folder / "none.wav", np.zeros((0, 1)), 16000)
    return {
        "missing": (folder / "nothere.wav", FileNotFoundError, r"nothere\.wav"),
        "truncated": (folder / "cut.wav", AudioReadError, r"cut\.wav.*truncated"),
        "empty": (folder / "empty.wav", AudioReadError, r"empty\.wav.*empty"),
        "directory": (folder / "dir.wav", AudioReadError, "directory"),
        "corrupt wav": (folder / "junk.wav", AudioReadError, r"junk\.wav.*could not decode"),
        "corrupt flac": (folder / "junk.flac", AudioReadError, r"junk\.flac.*could not decode"),
        "rate": (folder / "slow.wav", AudioReadError, r"slow\.wav.*500 Hz"),
        "no samples": (folder / "none.wav", AudioReadError, r"none\.wav.*no audio samples"),
    }


def test_reader_refuses_what_read_audio_refuses(tmp_path):
    for name, (path, error, pattern) in bad_audio_files(tmp_path).items():
        with pytest.raises(error, match=pattern):
            read_audio(path, backend="soundfile")
        with pytest.raises(error, match=pattern):
            audio_io.AudioReader(path)
    x = tone(1.0)
    x[12000] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with audio_io.AudioReader(tmp_path / "nan.wav") as reader:
        blocks = reader.blocks(4000)
        next(blocks)
        # The reader reads one block ahead (to tell the last one): asking for the third
        # block reads the fourth, [0.75 s, 1 s), which holds the NaN.
        next(blocks)
        with pytest.raises(AudioReadError, match=r"nan\.wav: 1 samples from 0.750 s on are NaN"):
            next(blocks)
