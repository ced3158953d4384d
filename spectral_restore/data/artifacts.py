"""Seeded audio degradations in TensorFlow ops.

Every artifact takes a waveform batch ``[batch, samples]`` (float32), a seed
(shape ``[2]`` integers, as for ``tf.random.stateless_*``) and a strength, a
scalar or one value per example, and returns the damaged batch of the same
shape. Randomness comes only from stateless Philox ops seeded with the given
seed, so the same seed gives the same damage on the CPU and on a GPU, inside
``tf.data``, ``tf.function`` or eagerly.

:class:`ArtifactChain` applies a random subset, each with its own probability
and strength range drawn per example, and returns a record of what it applied.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from spectral_restore import spectral

ALG = "philox"
SILENCE_POWER = 1e-10
ALIASING_FACTORS = (2, 3, 4)
_ANALYSIS = spectral.STFTConfig(frame_length=512, hop_length=128)


def _seed(seed, salt):
    """A new seed derived from ``seed`` and an integer ``salt``."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, salt, alg=ALG)


def _uniform(shape, seed, low=0.0, high=1.0):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high, alg=ALG)


def _per_example(value, wave):
    return tf.broadcast_to(tf.cast(value, tf.float32), tf.shape(wave)[:1])


def _power(wave):
    return tf.reduce_mean(tf.square(wave), axis=-1)


def _check(wave):
    wave = tf.convert_to_tensor(wave, tf.float32)
    if wave.shape.rank != 2:
        raise ValueError(f"Artifacts take a waveform batch [batch, samples]; received rank {wave.shape.rank}")
    return wave


def _stft(wave):
    return spectral.stft(wave, _ANALYSIS)


def _istft(real, imag, like):
    return spectral.istft(real, imag, _ANALYSIS, length=tf.shape(like)[-1])


def mix_at_snr(clean, noise, snr_db):
    """``clean + a * noise`` with ``a`` chosen so that ``10 log10(P_clean / P_noise) = snr_db``
    exactly (powers are means of squares over each example; silent clean audio
    counts as power 1e-10, silent noise adds nothing)."""
    clean = _check(clean)
    noise = tf.convert_to_tensor(noise, tf.float32)
    snr_db = _per_example(snr_db, clean)
    target = tf.maximum(_power(clean), SILENCE_POWER) / 10.0 ** (snr_db / 10.0)
    scale = tf.sqrt(target / tf.maximum(_power(noise), SILENCE_POWER))
    scale = tf.where(_power(noise) > SILENCE_POWER, scale, tf.zeros_like(scale))
    return clean + scale[:, None] * noise


def colored_noise(shape, seed, exponent):
    """Gaussian noise with power spectrum ``1 / f^exponent`` (0 white, 1 pink, 2 brown),
    ``exponent`` a scalar or one per example; shaped in the FFT domain."""
    white = tf.random.stateless_normal(shape, seed, alg=ALG)
    length = shape[-1]
    spectrum = tf.signal.rfft(white)
    bins = tf.cast(tf.range(tf.shape(spectrum)[-1]), tf.float32)
    bins = tf.maximum(bins, 1.0)
    exponent = tf.broadcast_to(tf.cast(exponent, tf.float32), [shape[0]])
    gain = tf.pow(bins[None, :], -exponent[:, None] / 2.0)
    shaped = tf.signal.irfft(spectrum * tf.complex(gain, tf.zeros_like(gain)), fft_length=[length])
    return shaped


def add_noise(wave, seed, snr_db, color=None):
    """Additive white, pink or brown noise at ``snr_db`` dB SNR.

    Args:
        wave: ``[batch, samples]``.
        seed: shape-[2] integers.
        snr_db: scalar or ``[batch]``.
        color: None (drawn per example from white/pink/brown), or a spectral
            exponent 0 (white), 1 (pink), 2 (brown), scalar or ``[batch]``.
    """
    wave = _check(wave)
    if color is None:
        color = tf.floor(_uniform(tf.shape(wave)[:1], _seed(seed, 1), 0.0, 3.0))
    noise = colored_noise(tf.shape(wave), _seed(seed, 2), color)
    return mix_at_snr(wave, noise, snr_db)


def add_babble(wave, seed, snr_db, talkers=4):
    """Babble: the sum of ``talkers`` other utterances of the batch (rolled along the
    batch and circularly shifted in time by random amounts) at ``snr_db``."""
    wave = _check(wave)
    length = tf.shape(wave)[-1]
    babble = tf.zeros_like(wave)
    for talker in range(1, talkers + 1):
        shift = tf.cast(_uniform([], _seed(seed, talker), 0.0, 1.0) * tf.cast(length, tf.float32), tf.int32)
        other = tf.roll(tf.roll(wave, talker, axis=0), shift, axis=1)
        babble += other / tf.sqrt(tf.maximum(_power(other), SILENCE_POWER))[:, None]
    return mix_at_snr(wave, babble, snr_db)


def add_noise_from_pool(wave, seed, snr_db, pool):
    """Noise cut from ``pool`` (``[clips, pool_samples]``, e.g. files of a user's noise
    folder, each at least as long as ``wave``) at a random clip and offset, at ``snr_db``."""
    wave = _check(wave)
    pool = tf.convert_to_tensor(pool, tf.float32)
    batch, length = tf.shape(wave)[0], tf.shape(wave)[1]
    clip = tf.random.stateless_uniform([batch], _seed(seed, 1), 0, tf.shape(pool)[0], dtype=tf.int32, alg=ALG)
    room = tf.shape(pool)[1] - length + 1
    start = tf.random.stateless_uniform([batch], _seed(seed, 2), 0, tf.maximum(room, 1), dtype=tf.int32, alg=ALG)
    index = start[:, None] + tf.range(length)[None, :]
    noise = tf.gather(tf.gather(pool, clip), tf.minimum(index, tf.shape(pool)[1] - 1), batch_dims=1)
    return mix_at_snr(wave, noise, snr_db)


def hard_clip(wave, threshold):
    """Hard clipping at ``threshold`` times each example's peak (``0 < threshold <= 1``)."""
    wave = _check(wave)
    peak = tf.reduce_max(tf.abs(wave), axis=-1)
    limit = (_per_example(threshold, wave) * peak)[:, None]
    return tf.clip_by_value(wave, -limit, limit)


def soft_clip(wave, drive_db):
    """Soft clipping: ``peak * tanh(g x / peak) / tanh(g)`` with ``g = 10^(drive_db/20)``;
    the peak is kept, the waveform is compressed towards it."""
    wave = _check(wave)
    peak = tf.maximum(tf.reduce_max(tf.abs(wave), axis=-1), 1e-9)[:, None]
    gain = (10.0 ** (_per_example(drive_db, wave) / 20.0))[:, None]
    return peak * tf.tanh(gain * wave / peak) / tf.tanh(gain)


def band_limit(wave, low_hz, high_hz, sample_rate, transition_hz=100.0):
    """Band-pass in the FFT domain: unity in ``[low_hz, high_hz]``, raised-cosine
    transitions of ``transition_hz`` inside the band, exactly zero outside it.
    ``low_hz=0`` gives a low-pass."""
    wave = _check(wave)
    length = tf.shape(wave)[-1]
    spectrum = tf.signal.rfft(wave)
    freqs = tf.cast(tf.range(tf.shape(spectrum)[-1]), tf.float32) * (sample_rate / tf.cast(length, tf.float32))
    low = _per_example(low_hz, wave)[:, None]
    high = _per_example(high_hz, wave)[:, None]
    rise = tf.clip_by_value((freqs[None, :] - low) / transition_hz, 0.0, 1.0)
    rise = tf.where(low <= 0.0, tf.ones_like(rise), rise)
    fall = tf.clip_by_value((high - freqs[None, :]) / transition_hz, 0.0, 1.0)
    gain = (0.5 - 0.5 * tf.cos(math.pi * rise)) * (0.5 - 0.5 * tf.cos(math.pi * fall))
    return tf.signal.irfft(spectrum * tf.complex(gain, tf.zeros_like(gain)), fft_length=[length])


def lowpass(wave, cutoff_hz, sample_rate):
    """Low-pass at ``cutoff_hz`` (see :func:`band_limit`)."""
    return band_limit(wave, 0.0, cutoff_hz, sample_rate)


def telephone(wave, sample_rate, low_hz=300.0, high_hz=3400.0):
    """Telephone band 300-3400 Hz (ITU-T G.712)."""
    return band_limit(wave, low_hz, high_hz, sample_rate)


def codec(wave, strength, sample_rate, bands=20):
    """Lossy-coder-like damage in the STFT domain.

    Per frame and Bark band, bins weaker than ``drop_db = 40 - 30 s`` dB below the
    band's strongest bin are dropped, the remaining log-magnitudes are quantised
    with a step of ``1 + 5 s`` dB, and everything above ``(1 - 0.5 s)`` times
    Nyquist is removed (coders low-pass at low bit rates); phases are kept.
    ``s = strength`` in [0, 1].
    """
    wave = _check(wave)
    s = _per_example(strength, wave)[:, None, None]
    real, imag = _stft(wave)
    mag = spectral.magnitude(real, imag)
    membership = tf.constant(
        spectral.bark_filterbank(bands, sample_rate, _ANALYSIS.fft_length, shape="rectangular")
    )
    band_peak = tf.reduce_max(mag[..., None] * membership, axis=-2)
    peak_at_bin = tf.reduce_max(band_peak[..., None, :] * membership, axis=-1)
    drop_db = 40.0 - 30.0 * s
    keep = mag >= peak_at_bin * 10.0 ** (-drop_db / 20.0)
    step_db = 1.0 + 5.0 * s
    mag_db = 20.0 * tf.math.log(mag) / math.log(10.0)
    quantised = 10.0 ** (step_db * tf.round(mag_db / step_db) / 20.0)
    freqs = tf.constant(np.arange(_ANALYSIS.num_bins) * sample_rate / _ANALYSIS.fft_length, tf.float32)
    keep = tf.logical_and(keep, freqs[None, None, :] <= (1.0 - 0.5 * s) * sample_rate / 2.0)
    scale = tf.where(keep, quantised / mag, tf.zeros_like(mag))
    return _istft(real * scale, imag * scale, wave)


def _interval_mask(length, starts, widths):
    """``[batch, length]`` mask, 0 inside any interval ``[start, start + width)``."""
    positions = tf.range(length)[None, None, :]
    inside = tf.logical_and(positions >= starts[..., None], positions < (starts + widths)[..., None])
    return 1.0 - tf.cast(tf.reduce_any(inside, axis=1), tf.float32)


def dropouts(wave, seed, rate_per_second, sample_rate, duration_ms=20.0, crossfade_ms=0.0, max_drops=16):
    """Packet loss: ``rate_per_second`` gaps of ``duration_ms`` (a packet) per
    second, at random positions, zeroed; with ``crossfade_ms > 0`` each gap's
    edges are smoothed by a raised-cosine ramp (no clicks). At most
    ``max_drops`` gaps per example."""
    wave = _check(wave)
    batch, length = tf.shape(wave)[0], tf.shape(wave)[1]
    seconds = tf.cast(length, tf.float32) / sample_rate
    count = tf.minimum(tf.round(_per_example(rate_per_second, wave) * seconds), float(max_drops))
    width = int(round(duration_ms * sample_rate / 1000.0))
    starts = tf.cast(_uniform([batch, max_drops], _seed(seed, 1)) * tf.cast(length, tf.float32), tf.int32)
    active = tf.cast(tf.range(max_drops), tf.float32)[None, :] < count[:, None]
    widths = tf.where(active, width, 0)
    mask = _interval_mask(length, starts, widths)
    fade = int(round(crossfade_ms * sample_rate / 1000.0))
    if fade > 0:
        # Widen each gap by `fade` on both sides, then smooth with a Hann kernel of the
        # same half-width: the original gap stays exactly zero and fades in and out
        # over `2 * fade` samples outside it.
        window = 2 * fade + 1
        widened = -tf.nn.max_pool1d(-mask[:, :, None], ksize=window, strides=1, padding="SAME")
        kernel = np.hanning(window + 2)[1:-1].astype(np.float32)
        kernel /= kernel.sum()
        mask = tf.nn.conv1d(widened, kernel[:, None, None], stride=1, padding="SAME")[:, :, 0]
        mask = tf.clip_by_value(mask, 0.0, 1.0)
    return wave * mask


def spectral_holes(wave, seed, holes_per_second, sample_rate, max_frames=12, max_bins=40, max_holes=16):
    """Time-frequency holes (inpainting masks): rectangles of up to ``max_frames``
    frames by ``max_bins`` bins zeroed in the STFT, ``holes_per_second`` of them."""
    wave = _check(wave)
    real, imag = _stft(wave)
    batch, frames, bins = tf.shape(real)[0], tf.shape(real)[1], tf.shape(real)[2]
    seconds = tf.cast(tf.shape(wave)[1], tf.float32) / sample_rate
    count = tf.minimum(tf.round(_per_example(holes_per_second, wave) * seconds), float(max_holes))
    draws = _uniform([batch, max_holes, 4], _seed(seed, 1))
    t0 = tf.cast(draws[..., 0] * tf.cast(frames, tf.float32), tf.int32)
    f0 = tf.cast(draws[..., 1] * tf.cast(bins, tf.float32), tf.int32)
    t_width = 1 + tf.cast(draws[..., 2] * (max_frames - 1), tf.int32)
    f_width = 1 + tf.cast(draws[..., 3] * (max_bins - 1), tf.int32)
    active = tf.cast(tf.range(max_holes), tf.float32)[None, :] < count[:, None]
    t_idx = tf.range(frames)[None, None, :, None]
    f_idx = tf.range(bins)[None, None, None, :]
    inside = (
        (t_idx >= t0[..., None, None]) & (t_idx < (t0 + t_width)[..., None, None])
        & (f_idx >= f0[..., None, None]) & (f_idx < (f0 + f_width)[..., None, None])
        & active[..., None, None]
    )
    keep = 1.0 - tf.cast(tf.reduce_any(inside, axis=1), tf.float32)
    return _istft(real * keep, imag * keep, wave)


def synthetic_rir(seed, rt60, sample_rate, length, batch=None):
    """Synthetic room impulse responses ``[batch, length]``: a unit direct path, then
    Gaussian noise under an exponential envelope ``exp(-3 ln(10) t / rt60)``
    (energy down 60 dB after ``rt60`` seconds), starting 2.5 ms after the direct path.

    Reference: Schroeder, "New method of measuring reverberation time", JASA 37 (1965),
    for the exponential-decay model the RT60 is defined by.
    """
    rt60 = tf.reshape(tf.cast(rt60, tf.float32), [-1])
    if batch is not None:
        rt60 = tf.broadcast_to(rt60, [batch])
    count = tf.shape(rt60)[0]
    t = tf.range(length, dtype=tf.float32) / sample_rate
    envelope = tf.exp(-3.0 * math.log(10.0) * t[None, :] / rt60[:, None])
    tail = tf.random.stateless_normal([count, length], seed, alg=ALG) * envelope
    onset = int(0.0025 * sample_rate)
    tail = tail * tf.cast(tf.range(length) >= onset, tf.float32)[None, :] * 0.1
    direct = tf.one_hot(tf.zeros([count], tf.int32), length)
    return direct + tail


def reverb(wave, seed, rt60, sample_rate, max_rt60=1.5):
    """Reverberation: convolution with :func:`synthetic_rir` of ``rt60`` seconds
    (the RIR is ``max_rt60 * sample_rate`` samples long), cut to the input length and
    scaled back to the input's power."""
    wave = _check(wave)
    length = tf.shape(wave)[1]
    rir_length = int(max_rt60 * sample_rate)
    rir = synthetic_rir(_seed(seed, 1), _per_example(rt60, wave), sample_rate, rir_length)
    fft_length = length + rir_length
    wet = tf.signal.irfft(
        tf.signal.rfft(wave, fft_length=[fft_length]) * tf.signal.rfft(rir, fft_length=[fft_length]),
        fft_length=[fft_length],
    )[:, :length]
    scale = tf.sqrt(tf.maximum(_power(wave), SILENCE_POWER) / tf.maximum(_power(wet), SILENCE_POWER))
    return wet * scale[:, None]


def bit_depth(wave, bits):
    """Requantisation to ``bits`` bits (rounded to an integer, at least 2):
    ``round(x * 2^(b-1)) / 2^(b-1)``."""
    wave = _check(wave)
    levels = (2.0 ** (tf.maximum(tf.round(_per_example(bits, wave)), 2.0) - 1.0))[:, None]
    return tf.round(wave * levels) / levels


def _fft_upsample(low, factor, length):
    spectrum = tf.signal.rfft(low)
    bins = length // 2 + 1
    have = tf.shape(spectrum)[-1]
    spectrum = tf.pad(spectrum, [[0, 0], [0, tf.maximum(bins - have, 0)]])[:, :bins]
    return tf.signal.irfft(spectrum, fft_length=[length]) * float(factor)


def aliasing(wave, factor):
    """Resampling aliasing: decimation by an integer ``factor`` in
    ``ALIASING_FACTORS`` without an anti-aliasing filter (so content above the new
    Nyquist folds down), then ideal (FFT) interpolation back to the input rate.
    ``factor`` per example is rounded to the nearest allowed value."""
    wave = _check(wave)
    length = tf.shape(wave)[1]
    wanted = _per_example(factor, wave)
    result = wave
    for allowed in ALIASING_FACTORS:
        padded = tf.pad(wave, [[0, 0], [0, (-length) % allowed]])
        restored = _fft_upsample(padded[:, ::allowed], allowed, tf.shape(padded)[1])[:, :length]
        chosen = tf.abs(wanted - allowed) < 0.5
        if allowed == ALIASING_FACTORS[0]:
            chosen = wanted < allowed + 0.5
        if allowed == ALIASING_FACTORS[-1]:
            chosen = wanted >= allowed - 0.5
        result = tf.where(chosen[:, None], restored, result)
    return result


def phase_noise(wave, seed, strength, iterations=8):
    """Phase damage that keeps the STFT magnitude close: each bin's phase is offset
    by uniform noise in ``[-pi s, pi s]`` (``s = strength`` in [0, 1]), then
    ``iterations`` Griffin-Lim projections make the spectrogram consistent again
    with the original magnitude. Measured on speech (tests): s = 0.5 leaves the
    STFT magnitude within about 5 % (relative L2 over audible bins) while moving
    the phase by 0.2 rad on average; s = 1 moves it by 1.6 rad at about 24 %."""
    wave = _check(wave)
    real, imag = _stft(wave)
    mag = spectral.magnitude(real, imag)
    offset = _uniform(tf.shape(real), _seed(seed, 1), -math.pi, math.pi) * _per_example(strength, wave)[:, None, None]
    angle = spectral.phase(real, imag) + offset
    return _project_magnitude(mag, angle, wave, iterations=int(iterations))


def allpass(wave, seed, strength, terms=12):
    """All-pass phase dispersion: the whole-signal spectrum is multiplied by
    ``exp(j phi(w))`` with a smooth random phase response
    ``phi(w) = sum_{q=1..Q} a_q cos(q w) + b_q sin(q w)`` (``w`` in rad/sample,
    ``a, b ~ N(0, (pi s)^2 / (2Q))``, so ``phi`` has a standard deviation of
    ``pi * s`` radians and a group delay of at most ``sum q (|a_q| + |b_q|)``
    samples, far inside an STFT frame). The magnitude spectrum is unchanged
    exactly, the STFT magnitude nearly, and every bin's phase moves."""
    wave = _check(wave)
    length = tf.shape(wave)[-1]
    spectrum = tf.signal.rfft(wave)
    bins = tf.shape(spectrum)[-1]
    sigma = math.pi * _per_example(strength, wave)[:, None] / math.sqrt(2.0 * terms)
    coefficients = tf.random.stateless_normal([tf.shape(wave)[0], 2 * terms], _seed(seed, 1), alg=ALG) * sigma
    omega = math.pi * tf.cast(tf.range(bins), tf.float32) / tf.cast(tf.maximum(bins - 1, 1), tf.float32)
    orders = tf.range(1, terms + 1, dtype=tf.float32)
    basis = tf.concat([tf.cos(orders[:, None] * omega[None, :]), tf.sin(orders[:, None] * omega[None, :])], axis=0)
    angle = tf.matmul(coefficients, basis)
    # DC and Nyquist of a real signal are real: leave them unrotated.
    interior = tf.logical_and(tf.range(bins) > 0, tf.range(bins) < bins - 1 + length % 2)
    angle = tf.where(interior[None, :], angle, tf.zeros_like(angle))
    rotated = spectrum * tf.complex(tf.cos(angle), tf.sin(angle))
    return tf.signal.irfft(rotated, fft_length=[length])


def griffin_lim_phase(wave, seed, iterations=4):
    """Phase replaced by ``iterations`` Griffin-Lim iterations from random phases,
    with the original magnitude."""
    wave = _check(wave)
    real, imag = _stft(wave)
    mag = spectral.magnitude(real, imag)
    angle = _uniform(tf.shape(real), _seed(seed, 1), -math.pi, math.pi)
    return _project_magnitude(mag, angle, wave, iterations=int(iterations))


def _project_magnitude(mag, angle, like, iterations):
    estimate = _istft(mag * tf.cos(angle), mag * tf.sin(angle), like)
    for _ in range(iterations):
        real, imag = _stft(estimate)
        angle = spectral.phase(real, imag)
        estimate = _istft(mag * tf.cos(angle), mag * tf.sin(angle), like)
    return estimate


@dataclasses.dataclass(frozen=True)
class ArtifactSpec:
    """One link of a chain: apply ``name`` with ``probability``, strength uniform in ``strength``."""

    name: str
    probability: float
    strength: tuple


ARTIFACTS = {
    "reverb": ("RT60 in seconds", lambda w, seed, s, sr: reverb(w, seed, s, sr)),
    "lowpass": ("cutoff in Hz", lambda w, seed, s, sr: lowpass(w, s, sr)),
    "telephone": ("unused", lambda w, seed, s, sr: telephone(w, sr)),
    "codec": ("0-1", lambda w, seed, s, sr: codec(w, s, sr)),
    "noise": ("SNR in dB", lambda w, seed, s, sr: add_noise(w, seed, s)),
    "babble": ("SNR in dB", lambda w, seed, s, sr: add_babble(w, seed, s)),
    "hard_clip": ("threshold, fraction of the peak", lambda w, seed, s, sr: hard_clip(w, s)),
    "soft_clip": ("drive in dB", lambda w, seed, s, sr: soft_clip(w, s)),
    "dropouts": ("gaps per second", lambda w, seed, s, sr: dropouts(w, seed, s, sr)),
    "dropouts_crossfade": ("gaps per second", lambda w, seed, s, sr: dropouts(w, seed, s, sr, crossfade_ms=5.0)),
    "spectral_holes": ("holes per second", lambda w, seed, s, sr: spectral_holes(w, seed, s, sr)),
    "bit_depth": ("bits", lambda w, seed, s, sr: bit_depth(w, s)),
    "aliasing": ("decimation factor", lambda w, seed, s, sr: aliasing(w, s)),
    "phase_noise": ("0-1", lambda w, seed, s, sr: phase_noise(w, seed, s)),
    "allpass": ("0-1", lambda w, seed, s, sr: allpass(w, seed, s)),
    "griffin_lim": ("unused", lambda w, seed, s, sr: griffin_lim_phase(w, seed)),
    # Needs the chain's noise_pool (ArtifactChain(noise_pool=...)).
    "noise_file": ("SNR in dB", None),
}

DEFAULT_CHAIN = (
    ArtifactSpec("reverb", 0.2, (0.2, 0.8)),
    ArtifactSpec("lowpass", 0.2, (2500.0, 6000.0)),
    ArtifactSpec("telephone", 0.05, (0.0, 0.0)),
    ArtifactSpec("codec", 0.2, (0.2, 1.0)),
    ArtifactSpec("noise", 0.6, (-5.0, 30.0)),
    ArtifactSpec("babble", 0.1, (0.0, 20.0)),
    ArtifactSpec("hard_clip", 0.15, (0.1, 0.6)),
    ArtifactSpec("soft_clip", 0.05, (6.0, 20.0)),
    ArtifactSpec("dropouts_crossfade", 0.1, (1.0, 5.0)),
    ArtifactSpec("spectral_holes", 0.05, (2.0, 6.0)),
    ArtifactSpec("bit_depth", 0.05, (4.0, 8.0)),
    ArtifactSpec("aliasing", 0.05, (2.0, 4.0)),
    ArtifactSpec("phase_noise", 0.05, (0.3, 1.0)),
    ArtifactSpec("allpass", 0.05, (0.3, 1.0)),
)

# Additive noise, babble, clipping and requantisation only: the task the CPU preset
# (`training/configs/small.yaml`) learns in minutes.
DENOISE_CHAIN = (
    ArtifactSpec("noise", 0.7, (-5.0, 30.0)),
    ArtifactSpec("babble", 0.2, (0.0, 20.0)),
    ArtifactSpec("hard_clip", 0.15, (0.1, 0.6)),
    ArtifactSpec("soft_clip", 0.05, (6.0, 20.0)),
    ArtifactSpec("bit_depth", 0.05, (4.0, 8.0)),
)
CHAINS = {"default": DEFAULT_CHAIN, "denoise": DENOISE_CHAIN}


class ArtifactChain:
    """A random chain of artifacts, drawn per example.

    For each link in order, each example is damaged with the link's probability,
    at a strength drawn uniformly from its range; a link is computed for the whole
    batch (only when at least one example drew it) and selected per example, so
    the graph is static.

    Args:
        specs: sequence of :class:`ArtifactSpec` or ``(name, probability, (low, high))``,
            or the name of a chain of ``CHAINS`` ("default", "denoise").
            Defaults to ``DEFAULT_CHAIN``.
        sample_rate: int. Defaults to 16000.
        ensure_one: bool. An example that drew no artifact gets the most probable
            link, so no training pair is clean/clean. Defaults to True.
        noise_pool: array ``[clips, samples]`` or None. Noise recordings for the
            "noise_file" link (see ``pipeline.noise_pool_from_folder``). Defaults to None.

    Call: ``damaged, record = chain(wave, seed)``; ``record[name]`` is
    ``{"applied": bool [batch], "strength": float [batch]}``.
    """

    def __init__(self, specs=DEFAULT_CHAIN, sample_rate=16000, ensure_one=True, noise_pool=None):
        if isinstance(specs, str):
            if specs not in CHAINS:
                raise ValueError(f"Unknown chain {specs!r}; named chains: {sorted(CHAINS)}")
            specs = CHAINS[specs]
        self.noise_pool = None if noise_pool is None else tf.constant(np.asarray(noise_pool, np.float32))
        parsed = []
        for spec in specs:
            if not isinstance(spec, ArtifactSpec):
                spec = ArtifactSpec(spec[0], float(spec[1]), tuple(spec[2]))
            if spec.name not in ARTIFACTS:
                raise ValueError(f"Unknown artifact {spec.name!r}; known: {sorted(ARTIFACTS)}")
            if not 0.0 <= spec.probability <= 1.0:
                raise ValueError(f"Artifact {spec.name!r}: probability must be in [0, 1], got {spec.probability}")
            if len(spec.strength) != 2 or spec.strength[0] > spec.strength[1]:
                raise ValueError(f"Artifact {spec.name!r}: strength must be (low, high), got {spec.strength}")
            if spec.name == "noise_file" and self.noise_pool is None:
                raise ValueError("The 'noise_file' artifact needs noise_pool=[clips, samples] noise recordings")
            parsed.append(spec)
        if not parsed:
            raise ValueError("An ArtifactChain needs at least one artifact")
        self.specs = tuple(parsed)
        self.sample_rate = int(sample_rate)
        self.ensure_one = bool(ensure_one)

    @property
    def names(self):
        return [spec.name for spec in self.specs]

    def __call__(self, wave, seed):
        wave = _check(wave)
        batch = tf.shape(wave)[:1]
        draws = []
        for index, spec in enumerate(self.specs):
            draws.append(_uniform(batch, _seed(seed, 1000 + index)) < spec.probability)
        applied = tf.stack(draws, axis=1)
        if self.ensure_one:
            most_likely = int(np.argmax([spec.probability for spec in self.specs]))
            none = tf.logical_not(tf.reduce_any(applied, axis=1))
            forced = tf.one_hot(tf.fill(batch, most_likely), len(self.specs), on_value=True, off_value=False)
            applied = tf.logical_or(applied, tf.logical_and(forced, none[:, None]))
        record = {}
        for index, spec in enumerate(self.specs):
            low, high = spec.strength
            strength = _uniform(batch, _seed(seed, 2000 + index), low, high)
            use = applied[:, index]
            apply = ARTIFACTS[spec.name][1]
            if spec.name == "noise_file":
                apply = lambda w, seed, snr, sr: add_noise_from_pool(w, seed, snr, self.noise_pool)  # noqa: E731
            link_seed = _seed(seed, 3000 + index)
            # Computed only when some example of the batch drew it.
            damaged = tf.cond(
                tf.reduce_any(use),
                lambda apply=apply, wave=wave, link_seed=link_seed, strength=strength: apply(
                    wave, link_seed, strength, self.sample_rate
                ),
                lambda wave=wave: wave,
            )
            wave = tf.where(use[:, None], damaged, wave)
            record[spec.name] = {"applied": use, "strength": strength}
        return wave, record

    def get_config(self):
        return {
            "specs": [[s.name, s.probability, list(s.strength)] for s in self.specs],
            "sample_rate": self.sample_rate,
            "ensure_one": self.ensure_one,
        }
