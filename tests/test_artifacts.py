import math

import numpy as np
import pytest
import tensorflow as tf

from spectral_restore import spectral
from spectral_restore.data import artifacts as A

SR = 16000
SEED = tf.constant([3, 7])


@pytest.fixture(scope="module")
def speech(speech_16k):
    return np.stack([speech_16k[:32000], speech_16k[20000:52000], 0.1 * speech_16k[8000:40000]]).astype(np.float32)


def snr_db(clean, damaged):
    return 10 * np.log10(np.mean(clean**2, axis=1) / np.mean((damaged - clean) ** 2, axis=1))


@pytest.mark.parametrize("target", [-5.0, 0.0, 12.5, 30.0])
def test_noise_and_babble_hit_the_target_snr(speech, target):
    for color in (0.0, 1.0, 2.0):
        noisy = A.add_noise(speech, SEED, target, color=color).numpy()
        np.testing.assert_allclose(snr_db(speech, noisy), target, atol=0.5)
    babble = A.add_babble(speech, SEED, target).numpy()
    np.testing.assert_allclose(snr_db(speech, babble), target, atol=0.5)
    pool = np.random.default_rng(0).uniform(-1, 1, (2, 40000)).astype(np.float32)
    from_pool = A.add_noise_from_pool(speech, SEED, target, pool).numpy()
    np.testing.assert_allclose(snr_db(speech, from_pool), target, atol=0.5)
    per_example = A.add_noise(speech, SEED, [0.0, 10.0, 20.0]).numpy()
    np.testing.assert_allclose(snr_db(speech, per_example), [0.0, 10.0, 20.0], atol=0.5)


def test_noise_colors_have_the_right_spectral_slope():
    for exponent in (0.0, 1.0, 2.0):
        noise = A.colored_noise([4, 2**15], SEED, exponent).numpy()
        spectrum = np.mean(np.abs(np.fft.rfft(noise, axis=1)) ** 2, axis=0)
        freqs = np.fft.rfftfreq(2**15)
        band = (freqs > 0.01) & (freqs < 0.4)
        slope = np.polyfit(np.log(freqs[band]), np.log(spectrum[band]), 1)[0]
        assert abs(slope + exponent) < 0.1


def test_pool_noise_comes_from_the_pool(speech):
    pool = np.zeros((1, 40000), np.float32)
    pool[0, ::2] = 1.0
    noisy = A.add_noise_from_pool(speech, SEED, 0.0, pool).numpy()
    residual = noisy - speech
    assert len(np.unique(np.round(residual[0] / np.max(np.abs(residual[0])), 5))) == 2


def test_hard_clip_peak_at_threshold(speech):
    for threshold in (0.1, 0.5):
        clipped = A.hard_clip(speech, threshold).numpy()
        np.testing.assert_allclose(np.max(np.abs(clipped), axis=1), threshold * np.max(np.abs(speech), axis=1), rtol=1e-6)
        below = np.abs(speech) < threshold * np.max(np.abs(speech), axis=1, keepdims=True)
        np.testing.assert_array_equal(clipped[below], speech[below])


def test_soft_clip_keeps_peak_and_compresses(speech):
    soft = A.soft_clip(speech, 12.0).numpy()
    np.testing.assert_allclose(np.max(np.abs(soft), axis=1), np.max(np.abs(speech), axis=1), rtol=1e-5)
    crest = lambda x: np.max(np.abs(x), axis=1) / np.sqrt(np.mean(x**2, axis=1))
    assert np.all(crest(soft) < 0.7 * crest(speech))


def band_energy_db(x, low, high):
    spectrum = np.abs(np.fft.rfft(x, axis=1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1 / SR)
    return 10 * np.log10(spectrum[:, (freqs >= low) & (freqs < high)].sum(axis=1) + 1e-30)


def test_band_limiting_removes_energy_outside_the_band():
    white = np.random.default_rng(1).standard_normal((2, 32000)).astype(np.float32)
    low = A.lowpass(white, 3000.0, SR).numpy()
    assert np.all(band_energy_db(white, 3000, 8000) - band_energy_db(low, 3000, 8000) >= 40)
    assert np.all(np.abs(band_energy_db(white, 100, 2800) - band_energy_db(low, 100, 2800)) < 0.2)
    phone = A.telephone(white, SR).numpy()
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
    rir = A.synthetic_rir(SEED, rt60, SR, int(3 * rt60 * SR), batch=1).numpy()[0]
    assert abs(schroeder_rt60(rir) - rt60) <= 0.2 * rt60


def test_reverb_keeps_level_and_smears(speech):
    wet = A.reverb(speech, SEED, 0.6, SR).numpy()
    np.testing.assert_allclose(np.mean(wet**2, axis=1), np.mean(speech**2, axis=1), rtol=1e-3)
    # A burst followed by silence: the reverberant tail fills the silence and decays.
    burst = np.zeros((1, 16000), np.float32)
    burst[0, :1600] = np.random.default_rng(0).standard_normal(1600)
    tail = A.reverb(burst, SEED, 0.6, SR).numpy()[0, 1600:]
    levels = [10 * np.log10(np.mean(tail[i : i + 800] ** 2)) for i in (0, 4000)]
    # 4000 samples = 0.25 s at 60 dB per 0.6 s: about 25 dB down.
    assert 15 < levels[0] - levels[1] < 35


def test_phase_damage_keeps_the_magnitude(speech):
    cfg = spectral.STFTConfig(512, 128)
    mag = lambda x: np.asarray(spectral.magnitude(*spectral.stft(x, cfg)))
    phase = lambda x: np.asarray(spectral.phase(*spectral.stft(x, cfg)))
    m_clean = mag(speech)
    loud = m_clean > 0.05 * m_clean.max()

    def magnitude_error(damaged):
        return np.linalg.norm(mag(damaged)[loud] - m_clean[loud]) / np.linalg.norm(m_clean[loud])

    def phase_error(damaged):
        return np.abs(np.angle(np.exp(1j * (phase(damaged) - phase(speech)))))[loud].mean()

    # All-pass dispersion: the spectrum's magnitude is exactly kept.
    dispersed = A.allpass(speech, SEED, 1.0).numpy()
    np.testing.assert_allclose(np.abs(np.fft.rfft(dispersed, axis=1)), np.abs(np.fft.rfft(speech, axis=1)), rtol=1e-3, atol=1e-3)
    assert magnitude_error(dispersed) < 0.15 and phase_error(dispersed) > 1.0
    # STFT phase noise, re-projected: magnitude within 10 %, phase clearly moved.
    noisy = A.phase_noise(speech, SEED, 0.5).numpy()
    assert magnitude_error(noisy) < 0.1 and phase_error(noisy) > 0.15
    # Griffin-Lim phase from scratch: phase unrelated, magnitude within 30 %.
    rebuilt = A.griffin_lim_phase(speech, SEED).numpy()
    assert magnitude_error(rebuilt) < 0.3 and phase_error(rebuilt) > 1.2
    for damaged in (dispersed, noisy, rebuilt):
        assert snr_db(speech, damaged).max() < 15


def test_codec_drops_weak_bins_and_quantises(speech):
    cfg = spectral.STFTConfig(512, 128)
    coded = A.codec(speech, 1.0, SR).numpy()
    m_clean = np.asarray(spectral.magnitude(*spectral.stft(speech, cfg)))
    m_coded = np.asarray(spectral.magnitude(*spectral.stft(coded, cfg)))
    assert (m_coded < 1e-4).mean() > (m_clean < 1e-4).mean() + 0.3
    assert np.all(band_energy_db(speech, 4100, 8000) - band_energy_db(coded, 4100, 8000) > 20)
    mild = A.codec(speech, 0.0, SR).numpy()
    assert np.all(snr_db(speech, mild) > snr_db(speech, coded))


def test_dropouts_zero_packets_and_crossfade_has_no_steps(speech):
    plain = A.dropouts(speech, SEED, 5.0, SR, duration_ms=20.0).numpy()
    zeroed = (plain == 0) & (speech != 0)
    per_second_samples = zeroed.sum(axis=1) / 2.0
    assert np.all(per_second_samples > 0) and np.all(per_second_samples <= 5 * 320 + 1)
    ones = np.ones((1, 32000), np.float32)
    hard = A.dropouts(ones, SEED, 5.0, SR).numpy()[0]
    faded = A.dropouts(ones, SEED, 5.0, SR, crossfade_ms=5.0).numpy()[0]
    assert np.max(np.abs(np.diff(hard))) == 1.0
    assert np.max(np.abs(np.diff(faded))) < 0.02
    # The gaps themselves are the same and still silent.
    np.testing.assert_array_equal(faded[hard == 0], 0.0)


def test_spectral_holes_remove_energy_in_rectangles():
    cfg = spectral.STFTConfig(512, 128)
    white = np.random.default_rng(4).standard_normal((3, 32000)).astype(np.float32)
    holed = A.spectral_holes(white, SEED, 5.0, SR).numpy()
    m_clean = np.asarray(spectral.magnitude(*spectral.stft(white, cfg)))
    m_holed = np.asarray(spectral.magnitude(*spectral.stft(holed, cfg)))
    ratio = (m_holed / m_clean).reshape(3, -1)
    # Ten holes of up to 12 x 40 bins in 2 s: a few percent of the bins lose most energy...
    assert np.all((ratio < 0.3).mean(axis=1) > 0.005)
    # ...and the rest is untouched.
    assert np.all(np.median(ratio, axis=1) > 0.98)


def test_bit_depth_levels(speech):
    quantised = A.bit_depth(speech, 4.0).numpy()
    assert np.all(np.abs(quantised * 8 - np.round(quantised * 8)) < 1e-6)
    assert np.max(np.abs(quantised - speech)) <= 1 / 16 + 1e-6


def test_aliasing_folds_high_tones_down():
    t = np.arange(32000) / SR
    tone = np.sin(2 * np.pi * 5000 * t).astype(np.float32)[None]
    aliased = A.aliasing(tone, 2.0).numpy()[0]
    spectrum = np.abs(np.fft.rfft(aliased))
    freqs = np.fft.rfftfreq(len(aliased), 1 / SR)
    # 5 kHz sampled at 8 kHz without a filter appears at 8 - 5 = 3 kHz.
    assert abs(freqs[np.argmax(spectrum)] - 3000) < 5
    assert spectrum[np.argmin(np.abs(freqs - 5000))] < 1e-3 * spectrum.max()


@pytest.mark.parametrize("name", sorted(set(A.ARTIFACTS) - {"noise_file"}))
def test_same_seed_same_damage_different_seed_different(speech, name):
    fn = A.ARTIFACTS[name][1]
    spec = {s.name: s for s in A.DEFAULT_CHAIN}
    strength = np.mean(spec[name].strength) if name in spec else {"dropouts": 3.0, "griffin_lim": 0.0}[name]
    first = fn(speech, tf.constant([1, 2]), strength, SR).numpy()
    again = fn(speech, tf.constant([1, 2]), strength, SR).numpy()
    np.testing.assert_array_equal(first, again)
    assert np.all(np.isfinite(first)) and first.shape == speech.shape
    random_ones = {"noise", "babble", "dropouts", "dropouts_crossfade", "spectral_holes", "reverb", "phase_noise", "allpass", "griffin_lim"}
    if name in random_ones:
        other = fn(speech, tf.constant([1, 3]), strength, SR).numpy()
        assert np.max(np.abs(first - other)) > 1e-3


def test_chain_records_and_reproduces(speech):
    chain = A.ArtifactChain()
    damaged, record = chain(speech, SEED)
    again, _ = chain(speech, SEED)
    np.testing.assert_array_equal(damaged.numpy(), again.numpy())
    other, _ = chain(speech, tf.constant([9, 9]))
    assert np.max(np.abs(other.numpy() - damaged.numpy())) > 1e-3
    assert set(record) == set(chain.names)
    applied = np.stack([record[n]["applied"].numpy() for n in chain.names], axis=1)
    assert np.all(applied.any(axis=1))
    for spec in chain.specs:
        strengths = record[spec.name]["strength"].numpy()
        assert np.all((strengths >= spec.strength[0]) & (strengths <= spec.strength[1]))
    unchanged = A.ArtifactChain([("noise", 0.0, (10, 10))], ensure_one=False)(speech, SEED)[0].numpy()
    np.testing.assert_array_equal(unchanged, speech)
    forced = A.ArtifactChain([("noise", 0.0, (10, 10))], ensure_one=True)(speech, SEED)[0].numpy()
    np.testing.assert_allclose(snr_db(speech, forced), 10.0, atol=0.5)


def test_chain_with_noise_from_a_folder(tmp_path, speech):
    import soundfile as sf

    from spectral_restore.data.pipeline import ReadStats, noise_pool_from_folder

    rng = np.random.default_rng(3)
    sf.write(tmp_path / "fan.wav", rng.uniform(-0.5, 0.5, 8000), 16000)
    sf.write(tmp_path / "hum.flac", 0.3 * np.sin(np.arange(30000) / 3.0), 48000)
    (tmp_path / "broken.wav").write_bytes(b"RIFFbroken")
    stats = ReadStats()
    pool = noise_pool_from_folder(tmp_path, seconds=2.0, stats=stats)
    assert pool.shape == (2, 32000) and stats.files_skipped == 1
    chain = A.ArtifactChain([("noise_file", 1.0, (5.0, 5.0))], noise_pool=pool)
    damaged, record = chain(speech, SEED)
    np.testing.assert_allclose(snr_db(speech, damaged.numpy()), 5.0, atol=0.5)
    with pytest.raises(ValueError, match="noise_pool"):
        A.ArtifactChain([("noise_file", 1.0, (5.0, 5.0))])


def test_chain_probabilities_are_respected():
    chain = A.ArtifactChain([("bit_depth", 0.3, (8, 8)), ("hard_clip", 0.7, (0.5, 0.5))], ensure_one=False)
    wave = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    _, record = chain(wave, SEED)
    assert abs(record["bit_depth"]["applied"].numpy().mean() - 0.3) < 0.04
    assert abs(record["hard_clip"]["applied"].numpy().mean() - 0.7) < 0.04


def test_chain_in_tf_function_with_dynamic_length(speech):
    chain = A.ArtifactChain()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([2], tf.int64)])
    def damage(wave, seed):
        return chain(wave, seed)[0]

    for length in (16000, 24321):
        out = damage(speech[:, :length], tf.constant([1, 2], tf.int64)).numpy()
        eager = chain(speech[:, :length], tf.constant([1, 2], tf.int64))[0].numpy()
        assert out.shape == (3, length) and np.all(np.isfinite(out))
        np.testing.assert_allclose(out, eager, atol=1e-5)


def test_bad_chain_arguments():
    with pytest.raises(ValueError, match="Unknown artifact"):
        A.ArtifactChain([("vinyl", 0.5, (0, 1))])
    with pytest.raises(ValueError, match="probability"):
        A.ArtifactChain([("noise", 1.5, (0, 1))])
    with pytest.raises(ValueError, match="strength"):
        A.ArtifactChain([("noise", 0.5, (10, 0))])
    with pytest.raises(ValueError, match="batch"):
        A.add_noise(np.zeros(100, np.float32), SEED, 10.0)


def test_named_chains():
    from spectral_restore.data.artifacts import CHAINS, DENOISE_CHAIN, ArtifactChain

    assert ArtifactChain("denoise").specs == DENOISE_CHAIN
    assert ArtifactChain("default").specs == CHAINS["default"]
    with pytest.raises(ValueError, match="Unknown chain 'reverb_only'"):
        ArtifactChain("reverb_only")
