import numpy as np
import pytest

from spectral_restore import spectral
from spectral_restore.losses import ComplexSTFTLoss, PhaseConsistencyLoss, anti_wrap

from reference import numpy_spectra


@pytest.fixture(scope="module")
def pair(speech_16k):
    rng = np.random.default_rng(5)
    clean = np.stack([speech_16k[:16000], speech_16k[16000:32000]]).astype(np.float32)
    noisy = (clean + 0.02 * rng.standard_normal(clean.shape)).astype(np.float32)
    return clean, noisy


def numpy_compress(z, c):
    mag = np.sqrt(np.maximum(np.abs(z) ** 2, 1e-12))
    return mag**c * np.exp(1j * np.angle(z))


@pytest.mark.parametrize("exponent", [0.3, 0.5, None])
@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_complex_stft_loss_matches_numpy(pair, exponent, kind):
    clean, noisy = pair
    cfg = spectral.STFTConfig(frame_length=400, hop_length=100, fft_length=400)
    zt, zp = numpy_spectra(clean, noisy, cfg)
    if exponent is not None:
        zt, zp = numpy_compress(zt, exponent), numpy_compress(zp, exponent)
    d = np.abs if kind == "l1" else np.square
    want = (d(zt.real - zp.real) + d(zt.imag - zp.imag)).mean(axis=(1, 2))
    got = ComplexSTFTLoss(
        compress_exponent=exponent, distance=kind, stft_config=cfg, reduction="none"
    )(clean, noisy)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4)


def test_anti_wrap_matches_numpy():
    x = np.linspace(-20, 20, 4001)
    want = np.abs(np.angle(np.exp(1j * x)))
    got = np.asarray(anti_wrap(x))
    # float64 stays float64 (JAX computes it in float32 unless jax_enable_x64 is set).
    atol = 1e-9 if got.dtype == np.float64 else 4e-6
    np.testing.assert_allclose(got, want, atol=atol)
    assert float(np.max(got)) <= np.pi + atol


def numpy_phase_terms(zt, zp, weighted):
    def wrap(x):
        return np.abs(x - 2 * np.pi * np.round(x / (2 * np.pi)))

    silent_t, silent_p = np.abs(zt) ** 2 < 1e-12, np.abs(zp) ** 2 < 1e-12
    pt = np.where(silent_t, 0.0, np.angle(zt))
    pp = np.where(silent_p, 0.0, np.angle(zp))
    mag = np.sqrt(np.maximum(np.abs(zt) ** 2, 1e-12))

    def mean(values, weights):
        if not weighted:
            return values.mean(axis=(1, 2))
        return (values * weights).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))

    ip = mean(wrap(pp - pt), mag)
    gd = mean(
        wrap(np.diff(pp, axis=2) - np.diff(pt, axis=2)), np.sqrt(mag[:, :, 1:] * mag[:, :, :-1])
    )
    iaf = mean(wrap(np.diff(pp, axis=1) - np.diff(pt, axis=1)), np.sqrt(mag[:, 1:] * mag[:, :-1]))
    return ip, gd, iaf


@pytest.mark.parametrize("weighted", [True, False])
def test_anti_wrapping_terms_match_numpy(pair, weighted):
    clean, noisy = pair
    cfg = spectral.STFTConfig()
    zt, zp = numpy_spectra(clean, noisy, cfg)
    ip, gd, iaf = numpy_phase_terms(zt, zp, weighted)
    loss = PhaseConsistencyLoss(
        magnitude_weighted=weighted,
        instantaneous_phase_weight=1.0,
        group_delay_weight=0.5,
        instantaneous_frequency_weight=2.0,
        reduction="none",
    )
    terms = loss.terms(clean, noisy)
    np.testing.assert_allclose(np.asarray(terms["instantaneous_phase"]), ip, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(terms["group_delay"]), gd, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(terms["instantaneous_frequency"]), iaf, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(loss(clean, noisy)), ip + 0.5 * gd + 2.0 * iaf, rtol=1e-3)


def test_phase_terms_known_values(pair):
    clean, _ = pair
    cfg = spectral.STFTConfig()
    real, imag = spectral.stft(clean, cfg)
    spec = spectral.stack_complex(real, imag)
    loss = PhaseConsistencyLoss(
        input_format="spectrogram", consistency_weight=0.0, reduction="none"
    )
    # A constant phase rotation: every instantaneous phase is off by 1 rad, while the
    # phase derivatives along time and frequency are unchanged.
    rotated = spectral.stack_complex(
        real * np.cos(1.0) - imag * np.sin(1.0), real * np.sin(1.0) + imag * np.cos(1.0)
    )
    terms = loss.terms(spec, rotated)
    np.testing.assert_allclose(np.asarray(terms["instantaneous_phase"]), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(terms["group_delay"]), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(terms["instantaneous_frequency"]), 0.0, atol=1e-3)
    # A sign flip is a rotation by pi: the largest possible phase error.
    flipped = PhaseConsistencyLoss(reduction="none").terms(clean, -clean)
    np.testing.assert_allclose(np.asarray(flipped["instantaneous_phase"]), np.pi, atol=1e-3)


def test_consistency_term(pair):
    librosa = pytest.importorskip("librosa", reason="librosa is in the test extras")
    clean, _ = pair
    cfg = spectral.STFTConfig()
    real, imag = spectral.stft(clean, cfg)
    loss = PhaseConsistencyLoss(
        input_format="spectrogram",
        instantaneous_phase_weight=0,
        group_delay_weight=0,
        instantaneous_frequency_weight=0,
        reduction="none",
    )
    consistent = spectral.stack_complex(real, imag)
    assert np.all(np.asarray(loss(consistent, consistent)) < 1e-9)
    # A spectrogram with random phases is not the STFT of any signal.
    rng = np.random.default_rng(0)
    mag = np.asarray(spectral.magnitude(real, imag))
    phases = rng.uniform(-np.pi, np.pi, mag.shape)
    scrambled = (mag * np.exp(1j * phases)).astype(np.complex64)
    predicted = spectral.stack_complex(
        scrambled.real.astype(np.float32), scrambled.imag.astype(np.float32)
    )
    want = []
    for z in scrambled:
        wave = librosa.istft(
            z.T.astype(np.complex128), hop_length=128, n_fft=512, window="hann", center=True
        )
        again = librosa.stft(wave, n_fft=512, hop_length=128, pad_mode="reflect").T
        want.append(np.mean(np.abs(z - again) ** 2))
    np.testing.assert_allclose(np.asarray(loss(consistent, predicted)), want, rtol=1e-3)


def test_consistency_needs_spectrograms_and_weights_are_checked():
    with pytest.raises(ValueError, match="consistency_weight"):
        PhaseConsistencyLoss(consistency_weight=1.0)
    with pytest.raises(ValueError, match="All term weights are 0"):
        PhaseConsistencyLoss(
            instantaneous_phase_weight=0, group_delay_weight=0, instantaneous_frequency_weight=0
        )
    with pytest.raises(ValueError, match="group_delay_weight"):
        PhaseConsistencyLoss(group_delay_weight=-1)
    with pytest.raises(ValueError, match="compress_exponent"):
        ComplexSTFTLoss(compress_exponent=1.5)


def test_zero_weight_terms_are_skipped(pair):
    clean, noisy = pair
    loss = PhaseConsistencyLoss(group_delay_weight=0.0, instantaneous_frequency_weight=0.0)
    assert sorted(loss.terms(clean, noisy)) == ["instantaneous_phase"]


def test_phase_gradient_points_towards_the_clean_phase(pair):
    tf = pytest.importorskip("tensorflow", reason="a tf.GradientTape test (TensorFlow backend)")
    clean, _ = pair
    cfg = spectral.STFTConfig()
    real, imag = spectral.stft(clean[:1], cfg)
    target = spectral.stack_complex(real, imag)
    angle = 0.5
    estimate = tf.Variable(
        spectral.stack_complex(
            real * np.cos(angle) - imag * np.sin(angle), real * np.sin(angle) + imag * np.cos(angle)
        )
    )
    loss = PhaseConsistencyLoss(
        input_format="spectrogram",
        consistency_weight=0.0,
        group_delay_weight=0.0,
        instantaneous_frequency_weight=0.0,
    )
    before = float(loss(target, estimate))
    for _ in range(20):
        with tf.GradientTape() as tape:
            value = loss(target, estimate)
        grad = tape.gradient(value, estimate)
        # Normalised step per bin: move each bin along the phase gradient.
        estimate.assign_sub(
            0.02 * grad / (tf.reduce_max(tf.abs(grad)) + 1e-12) * tf.reduce_max(tf.abs(estimate))
        )
    assert float(loss(target, estimate)) < before
