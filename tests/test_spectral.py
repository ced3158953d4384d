import numpy as np
import pytest
from keras import ops

from spectral_restore import spectral
from spectral_restore.spectral import STFTConfig

from reference import numpy_stft, reference_window

CONFIGS = [
    STFTConfig(),
    STFTConfig(frame_length=400, hop_length=160, fft_length=512),
    STFTConfig(frame_length=240, hop_length=50, fft_length=512),
    STFTConfig(frame_length=1024, hop_length=256, window="hamming", pad_mode="constant"),
    STFTConfig(frame_length=256, hop_length=128, window="blackman"),
    STFTConfig(frame_length=512, hop_length=128, center=False),
    STFTConfig(frame_length=300, hop_length=100, fft_length=512, window="rectangular"),
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.frame_length}-{c.fft_length}-{c.window}"
)
def test_window_is_scipys_periodic_window(cfg):
    np.testing.assert_allclose(cfg.window_array(), reference_window(cfg), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "cfg",
    CONFIGS,
    ids=lambda c: f"{c.frame_length}-{c.hop_length}-{c.fft_length}-{c.window}-{c.center}",
)
@pytest.mark.parametrize("length", [700, 16000, 16001])
def test_stft_matches_numpy_reference(cfg, length, rng):
    x = rng.standard_normal((2, length)).astype(np.float32)
    real, imag = spectral.stft(x, cfg)
    got = np.asarray(real) + 1j * np.asarray(imag)
    for b in range(2):
        want = numpy_stft(x[b].astype(np.float64), cfg)
        assert got[b].shape == want.shape
        assert got.shape[1] == cfg.num_frames(length)
        np.testing.assert_allclose(got[b], want, atol=2e-4 * np.sqrt(cfg.fft_length), rtol=0)


def test_stft_matches_librosa(speech_16k):
    librosa = pytest.importorskip("librosa", reason="librosa is in the test extras")
    cfg = STFTConfig(frame_length=400, hop_length=100, fft_length=512)
    real, imag = spectral.stft(speech_16k[None], cfg)
    want = librosa.stft(
        speech_16k.astype(np.float64), n_fft=512, hop_length=100, win_length=400, pad_mode="reflect"
    ).T
    np.testing.assert_allclose(np.asarray(real)[0] + 1j * np.asarray(imag)[0], want, atol=1e-4)


@pytest.mark.parametrize("length", [1, 2, 3, 100, 255, 511, 512, 513, 4000, 16000, 16001, 48017])
def test_default_roundtrip_exact_length_any_input(length, rng):
    x = rng.uniform(-1, 1, (3, length)).astype(np.float32)
    real, imag = spectral.stft(x)
    y = np.asarray(spectral.istft(real, imag, length=length))
    assert y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1e-5


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.frame_length}-{c.hop_length}-{c.window}-{c.center}"
)
def test_roundtrip_other_settings(cfg, speech_16k):
    x = speech_16k[None, :12345]
    y = np.asarray(spectral.istft(*spectral.stft(x, cfg), cfg, length=x.shape[-1]))
    if cfg.center:
        np.testing.assert_allclose(y, x, atol=1e-5)
    else:
        # Without centring the ends are only covered by the tails of one window.
        covered = slice(cfg.fft_length, (cfg.num_frames(x.shape[-1]) - 1) * cfg.hop_length)
        np.testing.assert_allclose(y[:, covered], x[:, covered], atol=1e-5)


def test_roundtrip_with_extra_batch_axes(rng):
    x = rng.standard_normal((2, 3, 5000)).astype(np.float32)
    real, imag = spectral.stft(x)
    assert tuple(real.shape) == (2, 3, 40, 257)
    y = np.asarray(spectral.istft(real, imag, length=5000))
    np.testing.assert_allclose(y, x, atol=1e-5)


def test_istft_default_length_and_stacking(rng):
    x = rng.standard_normal((1, 1280)).astype(np.float32)
    stacked = spectral.stack_complex(*spectral.stft(x))
    assert tuple(stacked.shape) == (1, 11, 257, 2)
    y = np.asarray(spectral.istft(*spectral.unstack_complex(stacked)))
    np.testing.assert_allclose(y, x, atol=1e-5)
    with pytest.raises(ValueError, match="last axis of size 2"):
        spectral.unstack_complex(np.zeros((1, 11, 257, 3), "float32"))
    with pytest.raises(ValueError, match="bins"):
        spectral.istft(np.zeros((1, 11, 100), "float32"), np.zeros((1, 11, 100), "float32"))


def test_roundtrip_in_tf_function_with_dynamic_length(rng):
    tf = pytest.importorskip("tensorflow", reason="a tf.function test (TensorFlow backend)")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def roundtrip(x):
        real, imag = spectral.stft(x)
        return spectral.istft(real, imag, length=tf.shape(x)[-1])

    for length in (999, 4321):
        x = rng.standard_normal((2, length)).astype(np.float32)
        np.testing.assert_allclose(roundtrip(x).numpy(), x, atol=1e-5)


def test_magnitude_phase_and_compression_match_numpy(rng):
    x = rng.standard_normal((2, 4000)).astype(np.float32)
    real, imag = spectral.stft(x)
    z = np.asarray(real, np.float64) + 1j * np.asarray(imag, np.float64)
    np.testing.assert_allclose(
        np.asarray(spectral.magnitude(real, imag)), np.abs(z), rtol=1e-5, atol=1e-5
    )
    loud = np.abs(z) > 1e-3
    got_phase = np.asarray(spectral.phase(real, imag))
    np.testing.assert_allclose(
        np.exp(1j * got_phase[loud]), np.exp(1j * np.angle(z[loud])), atol=1e-4
    )
    cr, ci = spectral.compress_complex(real, imag, 0.3)
    want = np.abs(z) ** 0.3 * np.exp(1j * np.angle(z))
    np.testing.assert_allclose(np.asarray(cr) + 1j * np.asarray(ci), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(spectral.compress_magnitude(spectral.magnitude(real, imag), 0.5)),
        np.abs(z) ** 0.5,
        rtol=1e-4,
    )


def test_floors_give_finite_values_and_gradients_on_silence():
    tf = pytest.importorskip("tensorflow", reason="a tf.GradientTape test (TensorFlow backend)")
    silent = tf.zeros((2, 2000))
    with tf.GradientTape() as tape:
        tape.watch(silent)
        real, imag = spectral.stft(silent)
        total = (
            tf.reduce_sum(spectral.magnitude(real, imag))
            + tf.reduce_sum(spectral.phase(real, imag))
            + tf.reduce_sum(tf.math.log(spectral.power(real, imag)))
            + tf.reduce_sum(spectral.compress_complex(real, imag)[0])
        )
    grad = tape.gradient(total, silent)
    assert np.isfinite(total.numpy())
    assert np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(np.asarray(spectral.magnitude(real, imag)), 1e-6, rtol=1e-5)


@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize(
    "num_mels,rate,nfft,fmin,fmax",
    [(80, 16000, 1024, 0.0, None), (40, 22050, 512, 50.0, 8000.0), (128, 48000, 2048, 20.0, None)],
)
def test_mel_filterbank_matches_librosa(num_mels, rate, nfft, fmin, fmax, htk):
    librosa = pytest.importorskip("librosa", reason="librosa is in the test extras")
    ours = spectral.mel_filterbank(num_mels, rate, nfft, fmin, fmax, htk=htk)
    want = librosa.filters.mel(
        sr=rate, n_fft=nfft, n_mels=num_mels, fmin=fmin, fmax=fmax, htk=htk
    ).T
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        spectral.mel_to_hz(spectral.hz_to_mel([0, 440, 1000, 7999], htk), htk),
        [0, 440, 1000, 7999],
        atol=1e-6,
    )


def test_mel_filterbank_unnormalised_has_unit_peaks():
    fb = spectral.mel_filterbank(20, 16000, 4096, norm=None)
    np.testing.assert_allclose(fb.max(axis=0), 1.0, atol=0.05)


def traunmuller_bark(f):
    z = 26.81 * f / (1960.0 + f) - 0.53
    if z < 2.0:
        z = z + 0.15 * (2.0 - z)
    if z > 20.1:
        z = z + 0.22 * (z - 20.1)
    return z


def test_bark_scale_matches_traunmuller_formula():
    freqs = np.array([0.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 15500.0])
    want = np.array([traunmuller_bark(f) for f in freqs])
    np.testing.assert_allclose(spectral.hz_to_bark(freqs), want, rtol=1e-12)
    # Zwicker's critical-band table: 1 kHz lies at about 8.5 Bark, 4 kHz at about 17.3.
    assert abs(spectral.hz_to_bark(1000.0) - 8.5) < 0.2
    assert abs(spectral.hz_to_bark(4000.0) - 17.3) < 0.3
    np.testing.assert_allclose(spectral.bark_to_hz(spectral.hz_to_bark(freqs)), freqs, atol=1e-6)


def test_bark_filterbank_matches_reference_loops():
    rate, nfft, bands = 16000, 512, 24
    bin_hz = np.arange(nfft // 2 + 1) * rate / nfft
    bottom, top = traunmuller_bark(0.0), traunmuller_bark(rate / 2)
    # Rectangular: each bin belongs to exactly one band.
    edges_bark = np.linspace(bottom, top, bands + 1)
    rect = spectral.bark_filterbank(bands, rate, nfft, shape="rectangular")
    for k, f in enumerate(bin_hz):
        z = traunmuller_bark(f)
        band = min(int(np.searchsorted(edges_bark, z, side="right")) - 1, bands - 1)
        expected = np.zeros(bands)
        expected[band] = 1.0
        np.testing.assert_array_equal(rect[k], expected, err_msg=f"bin {k} ({f} Hz)")
    # Triangular: evaluated in Hz between Bark-spaced corner frequencies.
    centres = np.linspace(bottom, top, bands + 2)
    corners = np.array([float(spectral.bark_to_hz(c)) for c in centres])
    tri = spectral.bark_filterbank(bands, rate, nfft)
    for m in range(bands):
        lo, mid, hi = corners[m : m + 3]
        for k, f in enumerate(bin_hz):
            want = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
            assert abs(tri[k, m] - want) < 1e-5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"frame_length": 0}, "frame_length"),
        ({"frame_length": 512, "fft_length": 256}, "fft_length"),
        ({"hop_length": 1024}, "hop_length"),
        ({"window": "kaiser"}, "window"),
        ({"pad_mode": "wrap"}, "pad_mode"),
        ({"hop_length": 1.5}, "hop_length"),
    ],
)
def test_bad_stft_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        STFTConfig(**kwargs)


def test_bad_filterbank_arguments_raise():
    with pytest.raises(ValueError, match="fmax"):
        spectral.mel_filterbank(40, 16000, 512, fmin=0, fmax=9000)
    with pytest.raises(ValueError, match="num_mels"):
        spectral.mel_filterbank(0, 16000, 512)
    with pytest.raises(ValueError, match="shape"):
        spectral.bark_filterbank(10, 16000, 512, shape="gaussian")


def test_config_roundtrip_and_coercion():
    cfg = STFTConfig(frame_length=400, hop_length=100, fft_length=512, window="hamming")
    assert STFTConfig.from_config(cfg.get_config()) == cfg
    assert spectral.as_stft_config(cfg.get_config()) == cfg
    with pytest.raises(TypeError, match="stft_config"):
        spectral.as_stft_config(512)


def test_runs_under_tf_ops_dtype_float64(rng):
    import keras

    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX computes float64 input in float32 unless jax_enable_x64 is set")
    x = rng.standard_normal((1, 3000))
    real, imag = spectral.stft(x)
    y = ops.convert_to_numpy(spectral.istft(real, imag, length=3000))
    np.testing.assert_allclose(y, x, atol=1e-9)
