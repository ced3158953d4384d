"""Tests of ``spectral_restore.data.artifacts`` under the active Keras backend.

Every test is ``every_backend``: a TensorFlow run repeats the file under JAX and under
PyTorch in subprocesses (``rerun_under_jax``, a large test), so every statistical and
reference test passes on each backend; under another backend it runs natively. Only
the ``tf.function`` and ``tf.data`` tests are TensorFlow-only (they skip elsewhere).
"""

import keras
import numpy as np
import pytest
import scipy.signal
from keras import ops

from spectral_restore import spectral
from spectral_restore.data import artifacts as A

from reference import binomial_tolerance

SR = 16000
SEED = [3, 7]
BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="tf.function and tf.data exist only under the TensorFlow backend",
)
pytestmark = pytest.mark.every_backend


def as_numpy(x):
    return ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def speech(speech_16k):
    return np.stack(
        [speech_16k[:32000], speech_16k[20000:52000], 0.1 * speech_16k[8000:40000]]
    ).astype(np.float32)


def snr_db(clean, damaged):
    return 10 * np.log10(np.mean(clean**2, axis=1) / np.mean((damaged - clean) ** 2, axis=1))


# --- seeds -------------------------------------------------------------------------


def lowbias32(x):
    x = np.asarray(x, np.uint64) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def test_fold_in_matches_the_published_hash_in_numpy():
    seed = np.array([3, 0xDEADBEEF], np.uint64)
    for salt in (0, 1, 2000, 123456789):
        key = lowbias32(salt ^ 0x9E3779B9)
        first = lowbias32(seed[0] ^ key)
        second = lowbias32((seed[1] + first) & 0xFFFFFFFF)
        expected = (
            np.array([lowbias32(first ^ second), second], np.uint64)
            .astype(np.uint32)
            .view(np.int32)
        )
        np.testing.assert_array_equal(as_numpy(A.fold_in(seed.astype(np.int64), salt)), expected)
    # Integer tensors of any width: the low 32 bits count.
    wide = ops.convert_to_tensor(np.array([3, 0x7EADBEEF], np.int32))
    np.testing.assert_array_equal(
        as_numpy(A.fold_in(wide, 5)), as_numpy(A.fold_in([3, 0x7EADBEEF], 5))
    )
    salts = np.stack([as_numpy(A.fold_in(SEED, salt)) for salt in range(200)])
    assert len(np.unique(salts, axis=0)) == 200
    with pytest.raises(ValueError, match="shape"):
        A.fold_in([1, 2, 3], 0)
    with pytest.raises(TypeError, match="integers"):
        A.fold_in([1.5, 2.0], 0)


# --- independent references for the deterministic artifacts ------------------------


def numpy_band_limit(x, low, high, transition=100.0):
    """The docstring's raised-cosine FFT-domain band-pass, in float64 numpy."""
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / SR)
    low, high = np.reshape(low, (-1, 1)), np.reshape(high, (-1, 1))
    rise = np.where(low <= 0, 1.0, np.clip((freqs - low) / transition, 0, 1))
    fall = np.clip((high - freqs) / transition, 0, 1)
    gain = (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    return np.fft.irfft(np.fft.rfft(x.astype(np.float64), axis=-1) * gain, n=x.shape[-1], axis=-1)


# Float32 FFTs of 32000 samples against float64 numpy: errors of a few 1e-7 of the peak.
FFT_ATOL = 1e-5


def test_band_limits_match_numpy(speech):
    np.testing.assert_allclose(
        as_numpy(A.lowpass(speech, 3000.0, SR)),
        numpy_band_limit(speech, 0.0, 3000.0),
        atol=FFT_ATOL,
    )
    np.testing.assert_allclose(
        as_numpy(A.telephone(speech, SR)), numpy_band_limit(speech, 300.0, 3400.0), atol=FFT_ATOL
    )
    lows, highs = [0.0, 500.0, 1000.0], [2500.0, 4000.0, 7900.0]
    odd = speech[:, :31999]
    np.testing.assert_allclose(
        as_numpy(A.band_limit(odd, lows, highs, SR)),
        numpy_band_limit(odd, lows, highs),
        atol=FFT_ATOL,
    )


def test_clipping_matches_numpy(speech):
    peak = np.max(np.abs(speech), axis=1, keepdims=True)
    thresholds = np.array([[0.1], [0.5], [0.9]], np.float32)
    np.testing.assert_array_equal(
        as_numpy(A.hard_clip(speech, thresholds[:, 0])),
        np.clip(speech, -thresholds * peak, thresholds * peak),
    )
    for drive_db in (6.0, 20.0):
        gain = 10 ** (drive_db / 20)
        expected = peak * np.tanh(gain * speech.astype(np.float64) / peak) / np.tanh(gain)
        np.testing.assert_allclose(
            as_numpy(A.soft_clip(speech, drive_db)), expected, rtol=1e-5, atol=1e-7
        )


def test_requantisation_matches_numpy(speech):
    for bits, expected_levels in ((4.0, 8.0), (7.6, 128.0), (1.0, 2.0)):
        expected = np.round(speech * np.float32(expected_levels)) / np.float32(expected_levels)
        np.testing.assert_array_equal(as_numpy(A.bit_depth(speech, bits)), expected)


@pytest.mark.parametrize("length", [32000, 31999, 31997])
def test_aliasing_matches_scipy_decimation_and_fft_resampling(speech, length):
    x = speech[:, :length]
    for factor in (2, 3, 4):
        padded = np.pad(x.astype(np.float64), [(0, 0), (0, -length % factor)])
        expected = scipy.signal.resample(padded[:, ::factor], padded.shape[1], axis=1)[:, :length]
        np.testing.assert_allclose(as_numpy(A.aliasing(x, float(factor))), expected, atol=FFT_ATOL)
    mixed = as_numpy(A.aliasing(x, [1.7, 3.2, 9.0]))
    for row, factor in enumerate((2, 3, 4)):
        np.testing.assert_allclose(
            mixed[row], as_numpy(A.aliasing(x[row : row + 1], float(factor)))[0], atol=1e-6
        )


def test_mix_at_snr_matches_numpy(speech):
    noise = np.random.default_rng(2).standard_normal(speech.shape).astype(np.float32)
    noise[2] = 0.0
    clean = speech.copy()
    clean[1] = 0.0
    snr = np.array([5.0, 10.0, 20.0])
    p_clean = np.maximum(np.mean(clean.astype(np.float64) ** 2, axis=1), 1e-10)
    p_noise = np.mean(noise.astype(np.float64) ** 2, axis=1)
    scale = np.where(
        p_noise > 1e-10, np.sqrt(p_clean / 10 ** (snr / 10) / np.maximum(p_noise, 1e-10)), 0.0
    )
    np.testing.assert_allclose(
        as_numpy(A.mix_at_snr(clean, noise, snr)),
        clean + scale[:, None] * noise,
        rtol=1e-5,
        atol=1e-7,
    )


# --- statistics of the random artifacts -------------------------------------------


@pytest.mark.parametrize("target", [-5.0, 0.0, 12.5, 30.0])
def test_noise_and_babble_hit_the_target_snr(speech, target):
    for color in (0.0, 1.0, 2.0):
        noisy = as_numpy(A.add_noise(speech, SEED, target, color=color))
        np.testing.assert_allclose(snr_db(speech, noisy), target, atol=0.5)
    babble = as_numpy(A.add_babble(speech, SEED, target))
    np.testing.assert_allclose(snr_db(speech, babble), target, atol=0.5)
    pool = np.random.default_rng(0).uniform(-1, 1, (2, 40000)).astype(np.float32)
    from_pool = as_numpy(A.add_noise_from_pool(speech, SEED, target, pool))
    np.testing.assert_allclose(snr_db(speech, from_pool), target, atol=0.5)
    per_example = as_numpy(A.add_noise(speech, SEED, [0.0, 10.0, 20.0]))
    np.testing.assert_allclose(snr_db(speech, per_example), [0.0, 10.0, 20.0], atol=0.5)


def test_noise_colors_have_the_right_spectral_slope():
    for exponent in (0.0, 1.0, 2.0):
        noise = as_numpy(A.colored_noise([4, 2**15], SEED, exponent))
        spectrum = np.mean(np.abs(np.fft.rfft(noise, axis=1)) ** 2, axis=0)
        freqs = np.fft.rfftfreq(2**15)
        band = (freqs > 0.01) & (freqs < 0.4)
        slope = np.polyfit(np.log(freqs[band]), np.log(spectrum[band]), 1)[0]
        assert abs(slope + exponent) < 0.1


def test_pool_noise_comes_from_the_pool(speech):
    pool = np.zeros((1, 40000), np.float32)
    pool[0, ::2] = 1.0
    noisy = as_numpy(A.add_noise_from_pool(speech, SEED, 0.0, pool))
    residual = noisy - speech
    assert len(np.unique(np.round(residual[0] / np.max(np.abs(residual[0])), 5))) == 2


def test_hard_clip_peak_at_threshold(speech):
    for threshold in (0.1, 0.5):
        clipped = as_numpy(A.hard_clip(speech, threshold))
        np.testing.assert_allclose(
            np.max(np.abs(clipped), axis=1), threshold * np.max(np.abs(speech), axis=1), rtol=1e-6
        )
        below = np.abs(speech) < threshold * np.max(np.abs(speech), axis=1, keepdims=True)
        np.testing.assert_array_equal(clipped[below], speech[below])


def test_soft_clip_keeps_peak_and_compresses(speech):
    soft = as_numpy(A.soft_clip(speech, 12.0))
    np.testing.assert_allclose(
        np.max(np.abs(soft), axis=1), np.max(np.abs(speech), axis=1), rtol=1e-5
    )

    def crest(x):
        return np.max(np.abs(x), axis=1) / np.sqrt(np.mean(x**2, axis=1))

    assert np.all(crest(soft) < 0.7 * crest(speech))


def band_energy_db(x, low, high):
    spectrum = np.abs(np.fft.rfft(x, axis=1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1 / SR)
    return 10 * np.log10(spectrum[:, (freqs >= low) & (freqs < high)].sum(axis=1) + 1e-30)


def test_band_limiting_removes_energy_outside_the_band():
    white = np.random.default_rng(1).standard_normal((2, 32000)).astype(np.float32)
    low = as_numpy(A.lowpass(white, 3000.0, SR))
    assert np.all(band_energy_db(white, 3000, 8000) - band_energy_db(low, 3000, 8000) >= 40)
    assert np.all(np.abs(band_energy_db(white, 100, 2800) - band_energy_db(low, 100, 2800)) < 0.2)
    phone = as_numpy(A.telephone(white, SR))
    assert np.all(band_energy_db(white, 3400, 8000) - band_energy_db(phone, 3400, 8000) >= 40)
    assert np.all(band_energy_db(white, 0, 300) - band_energy_db(phone, 0, 300) >= 40)
    assert np.all(np.abs(band_energy_db(white, 500, 3200) - band_energy_db(phone, 500, 3200)) < 0.2)


def schroeder_rt60(rir):
    """T20 from the Schroeder backward-integrated energy decay, extrapolated to 60 dB."""
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0])
    t = np.arange(len(rir)) / SR
    fit = (edc <= -5) & (edc >= -25)
    slope = np.polyfit(t[fit], edc[fit], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.2, 0.4, 0.8, 1.2])
def test_rir_has_the_requested_rt60(rt60):
    rir = as_numpy(A.synthetic_rir(SEED, rt60, SR, int(3 * rt60 * SR), batch=1))[0]
    assert abs(schroeder_rt60(rir) - rt60) <= 0.2 * rt60


def test_reverb_keeps_level_and_smears(speech):
    wet = as_numpy(A.reverb(speech, SEED, 0.6, SR))
    np.testing.assert_allclose(np.mean(wet**2, axis=1), np.mean(speech**2, axis=1), rtol=1e-3)
    # A burst followed by silence: the reverberant tail fills the silence and decays.
    burst = np.zeros((1, 16000), np.float32)
    burst[0, :1600] = np.random.default_rng(0).standard_normal(1600)
    tail = as_numpy(A.reverb(burst, SEED, 0.6, SR))[0, 1600:]
    levels = [10 * np.log10(np.mean(tail[i : i + 800] ** 2)) for i in (0, 4000)]
    # 4000 samples = 0.25 s at 60 dB per 0.6 s: about 25 dB down.
    assert 15 < levels[0] - levels[1] < 35


def test_phase_damage_keeps_the_magnitude(speech):
    cfg = spectral.STFTConfig(512, 128)

    def mag(x):
        return as_numpy(spectral.magnitude(*spectral.stft(x, cfg)))

    def phase(x):
        return as_numpy(spectral.phase(*spectral.stft(x, cfg)))

    m_clean = mag(speech)
    loud = m_clean > 0.05 * m_clean.max()

    def magnitude_error(damaged):
        return np.linalg.norm(mag(damaged)[loud] - m_clean[loud]) / np.linalg.norm(m_clean[loud])

    def phase_error(damaged):
        return np.abs(np.angle(np.exp(1j * (phase(damaged) - phase(speech)))))[loud].mean()

    # All-pass dispersion: the spectrum's magnitude is exactly kept. Its phase response
    # has 24 random coefficients, so the phase moved over speech's few loud bands varies
    # from draw to draw (0.9-2.1 rad): judged over 8 draws.
    dispersed = [as_numpy(A.allpass(speech, [seed, 7], 1.0)) for seed in range(8)]
    for damaged in dispersed:
        np.testing.assert_allclose(
            np.abs(np.fft.rfft(damaged, axis=1)),
            np.abs(np.fft.rfft(speech, axis=1)),
            rtol=1e-3,
            atol=1e-3,
        )
        assert magnitude_error(damaged) < 0.15
    assert np.mean([phase_error(damaged) for damaged in dispersed]) > 1.2
    # STFT phase noise, re-projected: magnitude within 10 %, phase clearly moved.
    noisy = as_numpy(A.phase_noise(speech, SEED, 0.5))
    assert magnitude_error(noisy) < 0.1 and phase_error(noisy) > 0.15
    # Griffin-Lim phase from scratch: phase unrelated, magnitude within 30 %.
    rebuilt = as_numpy(A.griffin_lim_phase(speech, SEED))
    assert magnitude_error(rebuilt) < 0.3 and phase_error(rebuilt) > 1.2
    for damaged in (dispersed[0], noisy, rebuilt):
        assert snr_db(speech, damaged).max() < 15


def test_codec_drops_weak_bins_and_quantises(speech):
    cfg = spectral.STFTConfig(512, 128)
    coded = as_numpy(A.codec(speech, 1.0, SR))
    m_clean = as_numpy(spectral.magnitude(*spectral.stft(speech, cfg)))
    m_coded = as_numpy(spectral.magnitude(*spectral.stft(coded, cfg)))
    assert (m_coded < 1e-4).mean() > (m_clean < 1e-4).mean() + 0.3
    assert np.all(band_energy_db(speech, 4100, 8000) - band_energy_db(coded, 4100, 8000) > 20)
    mild = as_numpy(A.codec(speech, 0.0, SR))
    assert np.all(snr_db(speech, mild) > snr_db(speech, coded))


def test_dropouts_zero_packets_and_crossfade_has_no_steps(speech):
    plain = as_numpy(A.dropouts(speech, SEED, 5.0, SR, duration_ms=20.0))
    zeroed = (plain == 0) & (speech != 0)
    per_second_samples = zeroed.sum(axis=1) / 2.0
    assert np.all(per_second_samples > 0) and np.all(per_second_samples <= 5 * 320 + 1)
    ones = np.ones((1, 32000), np.float32)
    hard = as_numpy(A.dropouts(ones, SEED, 5.0, SR))[0]
    faded = as_numpy(A.dropouts(ones, SEED, 5.0, SR, crossfade_ms=5.0))[0]
    assert np.max(np.abs(np.diff(hard))) == 1.0
    assert np.max(np.abs(np.diff(faded))) < 0.02
    # The gaps themselves are the same and still silent; the fades stay within 2 x 5 ms of them.
    np.testing.assert_array_equal(faded[hard == 0], 0.0)
    near_gap = np.convolve((hard == 0).astype(float), np.ones(2 * 160 + 1), mode="same") > 0
    np.testing.assert_array_equal(faded[~near_gap], 1.0)


def test_spectral_holes_remove_energy_in_rectangles():
    cfg = spectral.STFTConfig(512, 128)
    white = np.random.default_rng(4).standard_normal((3, 32000)).astype(np.float32)
    holed = as_numpy(A.spectral_holes(white, SEED, 5.0, SR))
    m_clean = as_numpy(spectral.magnitude(*spectral.stft(white, cfg)))
    m_holed = as_numpy(spectral.magnitude(*spectral.stft(holed, cfg)))
    ratio = (m_holed / m_clean).reshape(3, -1)
    # Ten holes of up to 12 x 40 bins in 2 s: a few percent of the bins lose most energy...
    assert np.all((ratio < 0.3).mean(axis=1) > 0.005)
    # ...and the rest is untouched.
    assert np.all(np.median(ratio, axis=1) > 0.98)


def test_bit_depth_levels(speech):
    quantised = as_numpy(A.bit_depth(speech, 4.0))
    assert np.all(np.abs(quantised * 8 - np.round(quantised * 8)) < 1e-6)
    assert np.max(np.abs(quantised - speech)) <= 1 / 16 + 1e-6


def test_aliasing_folds_high_tones_down():
    t = np.arange(32000) / SR
    tone = np.sin(2 * np.pi * 5000 * t).astype(np.float32)[None]
    aliased = as_numpy(A.aliasing(tone, 2.0))[0]
    spectrum = np.abs(np.fft.rfft(aliased))
    freqs = np.fft.rfftfreq(len(aliased), 1 / SR)
    # 5 kHz sampled at 8 kHz without a filter appears at 8 - 5 = 3 kHz.
    assert abs(freqs[np.argmax(spectrum)] - 3000) < 5
    assert spectrum[np.argmin(np.abs(freqs - 5000))] < 1e-3 * spectrum.max()


# --- determinism ---------------------------------------------------------------------


def default_strength(name):
    spec = {s.name: s for s in A.DEFAULT_CHAIN}
    return (
        float(np.mean(spec[name].strength))
        if name in spec
        else {"dropouts": 3.0, "griffin_lim": 0.0}[name]
    )


@pytest.mark.parametrize("name", sorted(set(A.ARTIFACTS) - {"noise_file"}))
def test_same_seed_same_damage_different_seed_different(speech, name):
    fn = A.ARTIFACTS[name][1]
    strength = default_strength(name)
    first = as_numpy(fn(speech, [1, 2], strength, SR))
    again = as_numpy(fn(speech, np.array([1, 2]), strength, SR))
    np.testing.assert_array_equal(first, again)
    assert np.all(np.isfinite(first)) and first.shape == speech.shape
    random_ones = {
        "noise",
        "babble",
        "dropouts",
        "dropouts_crossfade",
        "spectral_holes",
        "reverb",
        "phase_noise",
        "allpass",
        "griffin_lim",
    }
    if name in random_ones:
        other = as_numpy(fn(speech, [1, 3], strength, SR))
        assert np.max(np.abs(first - other)) > 1e-3


def chain_outputs(chain, wave, seed):
    damaged, record = chain(wave, seed)
    return damaged, {name: (entry["applied"], entry["strength"]) for name, entry in record.items()}


# Eager, tf.function and tf.data (or jit) draw the same numbers, but graph rewrites
# and thread pools reorder float32 arithmetic: up to 4e-6 measured on full-scale speech
# (after Griffin-Lim's iterations), against 1e-3 between two seeds' damage.
ROUNDING = 1e-5


def assert_same_damage(first, second, atol=0.0):
    """Identical records; waveforms identical, or within ``atol`` across execution modes."""
    for name, (applied, strength) in first[1].items():
        np.testing.assert_array_equal(as_numpy(applied), as_numpy(second[1][name][0]))
        np.testing.assert_array_equal(as_numpy(strength), as_numpy(second[1][name][1]))
    np.testing.assert_allclose(as_numpy(first[0]), as_numpy(second[0]), rtol=0, atol=atol)


@pytest.fixture(scope="module")
def default_chain():
    return A.ArtifactChain()


def compiled(chain):
    """``chain`` compiled as the backend compiles a training step: ``tf.function`` for
    any batch and length, ``jax.jit`` with the seed traced (PyTorch: eager)."""

    def damage(wave, seed):
        return chain_outputs(chain, wave, seed)

    if BACKEND == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([2], tf.int32)]
        return tf.function(damage, input_signature=signature)
    if BACKEND == "jax":
        import jax

        return jax.jit(damage)
    return damage


@pytest.fixture(scope="module")
def compiled_chain(default_chain):
    """The default chain compiled once for the module (:func:`compiled`)."""
    return compiled(default_chain)


def test_compiled_chain_reproduces_the_eager_damage(speech, default_chain, compiled_chain):
    """Repeated compiled calls give identical damage, and the same damage as eager execution."""
    wave = speech[:, :8000]
    outputs = []
    for seed in ([1, 2], [5, 9]):
        seed = ops.convert_to_tensor(np.array(seed, np.int32))
        outputs.append(compiled_chain(wave, seed))
        assert_same_damage(compiled_chain(wave, seed), outputs[-1])
        assert_same_damage(outputs[-1], chain_outputs(default_chain, wave, seed), atol=ROUNDING)
    assert np.max(np.abs(as_numpy(outputs[0][0]) - as_numpy(outputs[1][0]))) > 1e-3


@tensorflow_only
def test_tf_data_reproduces_the_eager_damage(speech, default_chain):
    import tensorflow as tf

    wave = tf.constant(speech[:, :8000])
    seeds = tf.constant([[1, 2], [5, 9], [5, 10]], tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda seed: chain_outputs(default_chain, wave, seed), num_parallel_calls=2
    )
    for seed, first, again in zip(seeds, dataset, dataset):
        assert_same_damage(first, again)
        assert_same_damage(first, chain_outputs(default_chain, wave, seed), atol=ROUNDING)


@tensorflow_only
def test_chain_in_tf_function_with_dynamic_length(speech, default_chain, compiled_chain):
    seed = np.array([1, 2], np.int32)
    for length in (8000, 12321):
        out = compiled_chain(speech[:, :length], seed)
        assert as_numpy(out[0]).shape == (3, length) and np.all(np.isfinite(as_numpy(out[0])))
        assert_same_damage(
            out, chain_outputs(default_chain, speech[:, :length], seed), atol=ROUNDING
        )


# --- the chain -----------------------------------------------------------------------


def test_chain_records_and_reproduces(speech):
    chain = A.ArtifactChain()
    damaged, record = chain(speech, SEED)
    again, _ = chain(speech, SEED)
    np.testing.assert_array_equal(as_numpy(damaged), as_numpy(again))
    other, _ = chain(speech, [9, 9])
    assert np.max(np.abs(as_numpy(other) - as_numpy(damaged))) > 1e-3
    assert set(record) == set(chain.names)
    applied = np.stack([as_numpy(record[n]["applied"]) for n in chain.names], axis=1)
    assert np.all(applied.any(axis=1))
    for spec in chain.specs:
        strengths = as_numpy(record[spec.name]["strength"])
        assert np.all((strengths >= spec.strength[0]) & (strengths <= spec.strength[1]))
    unchanged = as_numpy(
        A.ArtifactChain([("noise", 0.0, (10, 10))], ensure_one=False)(speech, SEED)[0]
    )
    np.testing.assert_array_equal(unchanged, speech)
    forced = as_numpy(A.ArtifactChain([("noise", 0.0, (10, 10))], ensure_one=True)(speech, SEED)[0])
    np.testing.assert_allclose(snr_db(speech, forced), 10.0, atol=0.5)


def test_chain_applies_each_link_only_where_drawn(speech):
    chain = A.ArtifactChain(
        [("hard_clip", 0.5, (0.2, 0.2)), ("bit_depth", 0.5, (3.0, 3.0))], ensure_one=False
    )
    wave = np.tile(speech, (6, 1))
    damaged, record = chain(wave, SEED)
    clipped, quantised = (as_numpy(record[name]["applied"]) for name in ("hard_clip", "bit_depth"))
    expected = np.where(clipped[:, None], as_numpy(A.hard_clip(wave, 0.2)), wave)
    expected = np.where(quantised[:, None], as_numpy(A.bit_depth(expected, 3.0)), expected)
    np.testing.assert_array_equal(as_numpy(damaged), expected)
    assert 0 < clipped.sum() < len(wave) and 0 < quantised.sum() < len(wave)


def test_chain_with_noise_from_a_folder(tmp_path, speech):
    import soundfile as sf

    pytest.importorskip("tensorflow", reason="the folder reader uses tf.io.gfile")
    from spectral_restore.data.files import ReadStats, noise_pool_from_folder

    rng = np.random.default_rng(3)
    sf.write(tmp_path / "fan.wav", rng.uniform(-0.5, 0.5, 8000), 16000)
    sf.write(tmp_path / "hum.flac", 0.3 * np.sin(np.arange(30000) / 3.0), 48000)
    (tmp_path / "broken.wav").write_bytes(b"RIFFbroken")
    stats = ReadStats()
    pool = noise_pool_from_folder(tmp_path, seconds=2.0, stats=stats)
    assert pool.shape == (2, 32000) and stats.files_skipped == 1
    chain = A.ArtifactChain([("noise_file", 1.0, (5.0, 5.0))], noise_pool=pool)
    damaged, record = chain(speech, SEED)
    np.testing.assert_allclose(snr_db(speech, as_numpy(damaged)), 5.0, atol=0.5)
    with pytest.raises(ValueError, match="noise_pool"):
        A.ArtifactChain([("noise_file", 1.0, (5.0, 5.0))])


def test_chain_probabilities_are_respected():
    chain = A.ArtifactChain(
        [("bit_depth", 0.3, (8, 8)), ("hard_clip", 0.7, (0.5, 0.5))], ensure_one=False
    )
    wave = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    _, record = chain(wave, SEED)
    assert abs(as_numpy(record["bit_depth"]["applied"]).mean() - 0.3) < 0.04
    assert abs(as_numpy(record["hard_clip"]["applied"]).mean() - 0.7) < 0.04


def test_bad_chain_arguments():
    with pytest.raises(ValueError, match="Unknown artifact"):
        A.ArtifactChain([("vinyl", 0.5, (0, 1))])
    with pytest.raises(ValueError, match="probability"):
        A.ArtifactChain([("noise", 1.5, (0, 1))])
    with pytest.raises(ValueError, match="strength"):
        A.ArtifactChain([("noise", 0.5, (10, 0))])
    with pytest.raises(ValueError, match="batch"):
        A.add_noise(np.zeros(100, np.float32), SEED, 10.0)
    with pytest.raises(ValueError, match="clean_fraction=1.5"):
        A.ArtifactChain("denoise", clean_fraction=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        A.ArtifactChain("denoise", clean_fraction=0.6, mild_fraction=0.6)
    with pytest.raises(ValueError, match="mild_reduction_db"):
        A.ArtifactChain("denoise", mild_fraction=0.2, mild_reduction_db=(20.0, 6.0))


def test_named_chains():
    assert A.ArtifactChain("denoise").specs == A.DENOISE_CHAIN
    assert A.ArtifactChain("default").specs == A.CHAINS["default"]
    with pytest.raises(ValueError, match="Unknown chain 'reverb_only'"):
        A.ArtifactChain("reverb_only")


# --- clean and mildly damaged examples ------------------------------------------------


FRACTIONS = dict(clean_fraction=0.2, mild_fraction=0.3, mild_reduction_db=(6.0, 20.0))


def test_clean_and_mild_examples_of_a_chain():
    """Undamaged examples equal their input bit for bit and mild ones carry the damage
    of the same chain without fractions ``r`` dB weaker (the docstring's formula in
    float64 numpy; so noise at 0 dB SNR comes out at ``r`` dB), each in its asked share
    (binomial tolerance), ``r`` uniform over its range (Kolmogorov-Smirnov); the other
    examples are damaged exactly as without the fractions. Same seed, same choice."""
    import scipy.stats

    count = 4000
    wave = np.random.default_rng(0).standard_normal((count, 64)).astype(np.float32)
    links = [("noise", 1.0, (0.0, 0.0))]
    chain = A.ArtifactChain(links, **FRACTIONS)
    damaged, record = chain_outputs(chain, wave, SEED)
    damaged = as_numpy(damaged)
    plain = as_numpy(A.ArtifactChain(links)(wave, SEED)[0]).astype(np.float64)
    undamaged = np.all(damaged == wave, axis=1)
    mild, reduction = (as_numpy(value) for value in record["mild"])
    assert abs(undamaged.sum() - 0.2 * count) <= binomial_tolerance(count, 0.2)
    assert abs(mild.sum() - 0.3 * count) <= binomial_tolerance(count, 0.3)
    assert not np.any(mild & undamaged)
    np.testing.assert_array_equal(as_numpy(record["undamaged"][0]), undamaged)
    np.testing.assert_array_equal(as_numpy(record["noise"][0]), ~undamaged)
    full = ~undamaged & ~mild
    np.testing.assert_array_equal(damaged[full], plain[full].astype(np.float32))
    keep = 10.0 ** (-reduction[mild].astype(np.float64) / 20.0)
    expected = wave[mild] + keep[:, None] * (plain[mild] - wave[mild])
    np.testing.assert_allclose(damaged[mild], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(snr_db(wave[mild], damaged[mild]), reduction[mild], atol=1e-3)
    assert scipy.stats.kstest(reduction[mild], "uniform", args=(6.0, 14.0)).pvalue > 1e-4
    again = as_numpy(chain(wave, SEED)[0])
    np.testing.assert_array_equal(again, damaged)
    other = np.all(as_numpy(chain(wave, [9, 9])[0]) == wave, axis=1)
    assert not np.array_equal(other, undamaged)


# --- a recording's background under clean training speech ----------------------------

# A level this far down adds nothing measurable: it silences one part of the floor.
OFF = (300.0, 300.0)


def test_recording_floor_share_and_levels():
    """The asked share of examples gets a floor (binomial tolerance), the rest stays bit
    for bit; rumble alone (hiss off) lies ``b`` dB below its example, ``b`` uniform over
    ``rumble_below_db`` (Kolmogorov-Smirnov), and so does hiss alone over
    ``hiss_below_db``. Same seed, same floors; another seed, others."""
    import scipy.stats

    count = 2000
    wave = np.random.default_rng(4).standard_normal((count, 512)).astype(np.float32)
    rumble = A.RecordingFloor(fraction=0.4, rumble_below_db=(10.0, 40.0), hiss_below_db=OFF)
    floored = as_numpy(rumble(wave, SEED))
    changed = np.any(floored != wave, axis=1)
    assert abs(changed.sum() - 0.4 * count) <= binomial_tolerance(count, 0.4)
    below = snr_db(wave[changed].astype(np.float64), floored[changed].astype(np.float64))
    assert below.min() >= 10.0 - 0.01 and below.max() <= 40.0 + 0.01
    assert scipy.stats.kstest(below, "uniform", args=(10.0, 30.0)).pvalue > 1e-4
    np.testing.assert_array_equal(as_numpy(rumble(wave, SEED)), floored)
    assert not np.array_equal(as_numpy(rumble(wave, [9, 9])), floored)
    hiss = A.RecordingFloor(fraction=1.0, rumble_below_db=OFF, hiss_below_db=(35.0, 65.0))
    below = snr_db(wave.astype(np.float64), as_numpy(hiss(wave, SEED)).astype(np.float64))
    assert scipy.stats.kstest(below, "uniform", args=(35.0, 30.0)).pvalue > 1e-4


def test_recording_floor_spectra():
    """Rumble of cutoff 100 Hz follows the power response ``1 / (1 + (f/100)^4)``
    within 1.5 dB per octave band (numpy FFT, averaged over examples); hiss of
    exponent 2 falls as ``1/f^2`` (log-log slope)."""
    count, length = 8, 2**15
    wave = np.ones((count, length), np.float32)
    rumble = A.RecordingFloor(1.0, (20.0, 20.0), (100.0, 100.0), OFF, sample_rate=SR)
    added = as_numpy(rumble(wave, SEED)).astype(np.float64) - 1.0
    power = np.mean(np.abs(np.fft.rfft(added, axis=1)) ** 2, axis=0)
    hz = np.fft.rfftfreq(length, 1 / SR)
    response = 1.0 / (1.0 + (hz / 100.0) ** 4)
    reference = None
    for low in (6.25, 12.5, 25, 50, 100, 200, 400, 800):
        band = (hz >= low) & (hz < 2 * low)
        ratio = 10 * np.log10(power[band].mean() / response[band].mean())
        reference = ratio if reference is None else reference
        assert abs(ratio - reference) < 1.5, (low, ratio, reference)
    hiss = A.RecordingFloor(1.0, OFF, hiss_below_db=(30.0, 30.0), hiss_exponent=(2.0, 2.0))
    added = as_numpy(hiss(wave, SEED)).astype(np.float64) - 1.0
    spectrum = np.mean(np.abs(np.fft.rfft(added, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(length)
    band = (freqs > 0.01) & (freqs < 0.4)
    slope = np.polyfit(np.log(freqs[band]), np.log(spectrum[band]), 1)[0]
    assert abs(slope + 2.0) < 0.1


def test_bad_recording_floor_arguments():
    with pytest.raises(ValueError, match="fraction=1.5"):
        A.RecordingFloor(fraction=1.5)
    with pytest.raises(ValueError, match="rumble_below_db"):
        A.RecordingFloor(rumble_below_db=(40.0, 10.0))
    with pytest.raises(ValueError, match="rumble_cutoff_hz"):
        A.RecordingFloor(rumble_cutoff_hz=(0.0, 100.0))
    with pytest.raises(ValueError, match="hiss_exponent"):
        A.RecordingFloor(hiss_exponent=2.0)
    with pytest.raises(TypeError, match="RecordingFloor or None. Received: float"):
        A.check_floor(0.5)
    assert A.RecordingFloor(0.3, hiss_below_db=(40, 50)).get_config() == {
        "fraction": 0.3,
        "rumble_below_db": [10.0, 40.0],
        "rumble_cutoff_hz": [20.0, 120.0],
        "hiss_below_db": [40.0, 50.0],
        "hiss_exponent": [0.0, 2.0],
        "sample_rate": 16000,
    }


def test_compiled_chain_with_fractions_reproduces_the_eager_choice():
    wave = np.random.default_rng(1).standard_normal((64, 256)).astype(np.float32)
    chain = A.ArtifactChain("denoise", **FRACTIONS)
    seed = ops.convert_to_tensor(np.array(SEED, np.int32))
    eager = chain_outputs(chain, wave, seed)
    assert_same_damage(compiled(chain)(wave, seed), eager, atol=ROUNDING)
    undamaged = as_numpy(eager[1]["undamaged"][0])
    assert undamaged.any() and as_numpy(eager[1]["mild"][0]).any()
    np.testing.assert_array_equal(as_numpy(eager[0])[undamaged], wave[undamaged])


def test_artifact_layer_keeps_the_chain_fractions():
    """The layer's chain, rebuilt from its config, leaves the asked share of a training
    batch untouched; two layers of the same seed damage alike."""
    count = 1000
    wave = np.random.default_rng(2).standard_normal((count, 64)).astype(np.float32)
    config = A.ArtifactChain([("noise", 1.0, (10.0, 10.0))], **FRACTIONS).get_config()
    layer = A.ArtifactLayer(chain_config=config, seed=4)
    rebuilt = A.ArtifactLayer.from_config(layer.get_config())
    assert rebuilt.chain.get_config() == config
    first = as_numpy(layer(wave, training=True))
    np.testing.assert_array_equal(as_numpy(rebuilt(wave, training=True)), first)
    undamaged = np.all(first == wave, axis=1)
    assert abs(undamaged.sum() - 0.2 * count) <= binomial_tolerance(count, 0.2)


# --- ArtifactLayer -------------------------------------------------------------------


def noise_layer(seed=3, snr=(0.0, 20.0)):
    return A.ArtifactLayer(
        chain_config=A.ArtifactChain([("noise", 1.0, snr)]).get_config(), seed=seed
    )


def test_artifact_layer_damages_only_in_training(speech):
    layer = noise_layer(snr=(10.0, 10.0))
    np.testing.assert_array_equal(as_numpy(layer(speech, training=False)), speech)
    first = as_numpy(layer(speech, training=True))
    second = as_numpy(layer(speech, training=True))
    np.testing.assert_allclose(snr_db(speech, first), 10.0, atol=0.5)
    assert not np.array_equal(first, second)
    assert int(as_numpy(layer.calls)) == 2
    rebuilt = A.ArtifactLayer.from_config(layer.get_config())
    assert rebuilt.chain.get_config() == layer.chain.get_config()
    assert keras.saving.get_registered_name(A.ArtifactLayer) == "spectral_restore>ArtifactLayer"


def fit_losses(clean, seed, epochs=3):
    """Per-step losses of ``model.fit`` on one fixed clean batch through an
    ArtifactLayer and a frozen identity Dense: each loss is the damage's power."""
    inputs = keras.Input(clean.shape[1:])
    damaged = noise_layer(seed=seed)(inputs)
    identity = keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)
    model = keras.Model(inputs, identity(damaged[..., None])[..., 0])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "mse")
    history = model.fit(
        clean, clean, batch_size=len(clean), epochs=epochs, shuffle=False, verbose=0
    )
    return np.array(history.history["loss"]), model


def test_artifact_layer_in_fit_changes_damage_each_step_and_reproduces(speech):
    losses, model = fit_losses(speech[:, :8000], seed=5)
    again, _ = fit_losses(speech[:, :8000], seed=5)
    other, _ = fit_losses(speech[:, :8000], seed=6)
    # Identical runs, a new damage every step (noise at a new SNR), another seed another damage.
    np.testing.assert_array_equal(losses, again)
    assert len(np.unique(losses)) == len(losses)
    assert not np.allclose(losses, other)
    assert int(as_numpy(model.layers[1].calls)) == 3


def test_artifact_layer_round_trips_through_a_saved_model(tmp_path, speech):
    inputs = keras.Input((8000,))
    model = keras.Model(inputs, noise_layer(seed=9)(inputs))
    model(speech[:, :8000], training=True)
    model.save(tmp_path / "damage.keras")
    loaded = keras.saving.load_model(tmp_path / "damage.keras")
    assert (
        isinstance(loaded.layers[1], A.ArtifactLayer) and int(as_numpy(loaded.layers[1].calls)) == 1
    )
    np.testing.assert_array_equal(
        as_numpy(loaded(speech[:, :8000], training=True)),
        as_numpy(model(speech[:, :8000], training=True)),
    )


# --- the other backend -------------------------------------------------------------


@pytest.mark.large
@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="started from the TensorFlow run, which reruns this file under the others",
)
@pytest.mark.parametrize("other", ["jax", "torch"])
def test_every_backend_case_under(other, rerun_under_jax):
    rerun_under_jax(backend=other)
