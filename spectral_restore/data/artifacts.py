"""Seeded audio degradations, written once in ``keras.ops``.

Every artifact takes a waveform batch ``[batch, samples]`` (float32), a seed
(shape ``[2]`` integers, an array or a tensor of the active backend) and a
strength, a scalar or one value per example, and returns the damaged batch of
the same shape. Randomness is stateless: it comes only from ``keras.random``
draws keyed by the given seed (Philox under TensorFlow, Threefry under JAX), and
seeds for the parts of an artifact or the links of a chain are derived from it
with an integer hash (:func:`fold_in`). The same seed therefore gives the same
damage within a backend, whether the code runs eagerly or compiled.

Backends: TensorFlow (eagerly, in ``tf.function`` and inside ``tf.data``, where
``spectral_restore.data.pipeline`` runs it), JAX (eagerly and under ``jax.jit``,
seeds may be traced) and PyTorch (eagerly); every op used here exists on all
three. The backends' random generators differ, so one seed gives different (but
equally distributed) damage on different backends.

:class:`ArtifactChain` applies a random subset, each with its own probability
and strength range drawn per example, and returns a record of what it applied;
:class:`ArtifactLayer` runs a chain inside a model, on the accelerator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from spectral_restore import backend, spectral
from spectral_restore._typing import Seed, Tensor

SILENCE_POWER = 1e-10
ALIASING_FACTORS = (2, 3, 4)
_ANALYSIS = spectral.STFTConfig(frame_length=512, hop_length=128)


def _int32(value):
    """A Python integer's low 32 bits as a signed int32 value (two's complement)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


_GOLDEN = _int32(0x9E3779B9)


def _shift_right(x, bits):
    """Logical right shift of int32 values (``right_shift`` is arithmetic on signed types)."""
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def _mix(x):
    """A bijective 32-bit integer hash (the "lowbias32" finaliser) on int32 tensors.

    Multiplications wrap modulo 2^32 on every backend, which is what the hash needs.

    Reference: C. Wellons, "Prospecting for hash functions" (2018),
    https://nullprogram.com/blog/2018/07/31/
    """
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, _int32(0x7FEB352D))
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, _int32(0x846CA68B))
    return ops.bitwise_xor(x, _shift_right(x, 16))


def _is_integer(dtype):
    return "int" in keras.backend.standardize_dtype(dtype)


def _as_seed(seed):
    """``seed`` as an int32 tensor of shape ``[2]``; wider integers keep their low 32 bits."""
    if isinstance(seed, (list, tuple, int, np.ndarray, np.generic)):
        array = np.asarray(seed)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"`seed` must hold integers. Received: seed={seed!r}")
        low_bits = (array.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
        seed = ops.convert_to_tensor(low_bits, "int32")
    else:
        seed = ops.convert_to_tensor(seed)
        if not _is_integer(seed.dtype):
            raise TypeError(f"`seed` must hold integers. Received dtype {seed.dtype}")
        seed = ops.cast(seed, "int32")
    if tuple(seed.shape) != (2,):
        raise ValueError(f"`seed` must have shape [2]. Received shape {tuple(seed.shape)}")
    return seed


def fold_in(seed: Seed, salt: int | Tensor) -> Tensor:
    """A new seed ``[2]`` derived from ``seed`` and an integer ``salt`` (the counterpart
    of ``jax.random.fold_in`` and ``tf.random.experimental.stateless_fold_in``).

    Formula: ``k = h(salt ^ 0x9E3779B9)``, ``a = h(seed[0] ^ k)``,
    ``b = h(seed[1] + a)``, result ``[h(a ^ b), b]`` with ``h`` the lowbias32 hash;
    for a fixed salt the map is a bijection of seeds.

    Args:
        seed: shape-[2] integers (array or tensor).
        salt: int or integer scalar tensor.

    Returns:
        An int32 tensor ``[2]``.

    Example:
    >>> a = ops.convert_to_numpy(fold_in([1, 2], 5))
    >>> b = ops.convert_to_numpy(fold_in([1, 2], 6))
    >>> bool((a != b).any()), a.dtype.name
    (True, 'int32')
    """
    seed = _as_seed(seed)
    key = _mix(ops.bitwise_xor(ops.cast(salt, "int32"), _GOLDEN))
    first = _mix(ops.bitwise_xor(seed[0], key))
    second = _mix(ops.add(seed[1], first))
    return ops.stack([_mix(ops.bitwise_xor(first, second)), second])


class _SeedTensor(keras.random.SeedGenerator):
    """A fixed seed tensor offered to ``keras.random`` as a seed generator.

    Keras 3's ``draw_seed`` takes an int, None or a ``SeedGenerator``; a tensor
    only under JAX. A generator whose ``next()`` returns the tensor is accepted on
    every backend, and, holding no state variable, stays stateless (nothing to
    track in a layer, nothing to assign inside ``tf.data`` or ``jit``).
    """

    def __init__(self, seed):
        # No SeedGenerator.__init__: it would create the state variable this avoids.
        self.seed = seed

    def next(self, ordered=True):
        return self.seed


def _key(seed):
    # 31 bits, unsigned: JAX keys must be uint32 and TensorFlow folds larger values into int32.
    return _SeedTensor(ops.cast(ops.bitwise_and(_as_seed(seed), 0x7FFFFFFF), "uint32"))


def _uniform(shape, seed, low=0.0, high=1.0):
    return keras.random.uniform(shape, minval=low, maxval=high, dtype="float32", seed=_key(seed))


def _normal(shape, seed):
    return keras.random.normal(shape, dtype="float32", seed=_key(seed))


def _batch(wave):
    return ops.shape(wave)[0]


def _per_example(value, wave):
    return ops.broadcast_to(ops.cast(value, "float32"), (_batch(wave),))


def _power(wave):
    return ops.mean(ops.square(wave), axis=-1)


def _check(wave):
    wave = ops.cast(ops.convert_to_tensor(wave), "float32")
    if len(wave.shape) != 2:
        raise ValueError(
            f"Artifacts take a waveform batch [batch, samples]; received rank {len(wave.shape)}"
        )
    return wave


def _stft(wave):
    return spectral.stft(wave, _ANALYSIS)


def _istft(real, imag, like):
    return spectral.istft(real, imag, _ANALYSIS, length=ops.shape(like)[-1])


def _scale_spectrum(spectrum, gain):
    """A ``(real, imag)`` spectrum times a real gain."""
    return spectrum[0] * gain, spectrum[1] * gain


def mix_at_snr(clean: Tensor, noise: Tensor, snr_db: float | Tensor) -> Tensor:
    """``clean + a * noise`` with ``a`` chosen so that ``10 log10(P_clean / P_noise) = snr_db``
    exactly (powers are means of squares over each example; silent clean audio
    counts as power 1e-10, silent noise adds nothing)."""
    clean = _check(clean)
    return clean + _scaled_to_snr(clean, noise, snr_db)


def _scaled_to_snr(clean, noise, snr_db):
    """``a * noise`` of :func:`mix_at_snr`."""
    noise = ops.cast(ops.convert_to_tensor(noise), "float32")
    snr_db = _per_example(snr_db, clean)
    target = ops.maximum(_power(clean), SILENCE_POWER) / 10.0 ** (snr_db / 10.0)
    noise_power = _power(noise)
    scale = ops.sqrt(target / ops.maximum(noise_power, SILENCE_POWER))
    scale = ops.where(noise_power > SILENCE_POWER, scale, ops.zeros_like(scale))
    return scale[:, None] * noise


def colored_noise(shape: tuple[int, ...], seed: Seed, exponent: float | Tensor) -> Tensor:
    """Gaussian noise with power spectrum ``1 / f^exponent`` (0 white, 1 pink, 2 brown),
    ``exponent`` a scalar or one per example; shaped in the FFT domain."""
    exponent = ops.broadcast_to(ops.cast(exponent, "float32"), (shape[0],))

    def gain(bins, length):
        return ops.power(ops.maximum(bins, 1.0)[None, :], -exponent[:, None] / 2.0)

    return _shaped_noise(shape, seed, gain)


def _shaped_noise(shape, seed, gain):
    """Gaussian white noise times ``gain(bins, length)`` (``[batch, bins]``, float32 bin
    indices ``bins``) in the FFT domain."""
    white = _normal(shape, seed)
    length = ops.shape(white)[-1]
    spectrum = ops.rfft(white)
    bins = ops.cast(ops.arange(ops.shape(spectrum[0])[-1]), "float32")
    return ops.irfft(_scale_spectrum(spectrum, gain(bins, length)), fft_length=length)


def rumble_noise(
    shape: tuple[int, ...], seed: Seed, cutoff_hz: float | Tensor, sample_rate: int
) -> Tensor:
    """Gaussian noise below ``cutoff_hz`` (scalar or one per example): white noise
    through the power response ``1 / (1 + (f / cutoff_hz)^4)`` (a second-order
    Butterworth low-pass), shaped in the FFT domain."""
    cutoff = ops.broadcast_to(ops.cast(cutoff_hz, "float32"), (shape[0],))

    def gain(bins, length):
        hz = bins * (float(sample_rate) / ops.cast(length, "float32"))
        return 1.0 / ops.sqrt(1.0 + ops.power(hz[None, :] / cutoff[:, None], 4.0))

    return _shaped_noise(shape, seed, gain)


def add_noise(
    wave: Tensor, seed: Seed, snr_db: float | Tensor, color: float | Tensor | None = None
) -> Tensor:
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
        color = ops.floor(_uniform((_batch(wave),), fold_in(seed, 1), 0.0, 3.0))
    noise = colored_noise(ops.shape(wave), fold_in(seed, 2), color)
    return mix_at_snr(wave, noise, snr_db)


def add_babble(wave: Tensor, seed: Seed, snr_db: float | Tensor, talkers: int = 4) -> Tensor:
    """Babble: the sum of ``talkers`` other utterances of the batch (rolled along the
    batch and circularly shifted in time by random amounts) at ``snr_db``."""
    wave = _check(wave)
    length = ops.cast(ops.shape(wave)[1], "float32")
    babble = ops.zeros_like(wave)
    for talker in range(1, talkers + 1):
        shift = ops.cast(_uniform((), fold_in(seed, talker)) * length, "int32")
        other = ops.roll(ops.roll(wave, talker, axis=0), shift, axis=1)
        babble = babble + other / ops.sqrt(ops.maximum(_power(other), SILENCE_POWER))[:, None]
    return mix_at_snr(wave, babble, snr_db)


def _random_index(shape, seed, count):
    """Uniform integers in ``[0, count)``."""
    index = ops.cast(_uniform(shape, seed) * ops.cast(count, "float32"), "int32")
    return ops.minimum(index, count - 1)


def add_noise_from_pool(wave: Tensor, seed: Seed, snr_db: float | Tensor, pool: Tensor) -> Tensor:
    """Noise cut from ``pool`` (``[clips, pool_samples]``, e.g. files of a user's noise
    folder, each at least as long as ``wave``) at a random clip and offset, at ``snr_db``."""
    wave = _check(wave)
    pool = ops.cast(ops.convert_to_tensor(pool), "float32")
    batch, length = _batch(wave), ops.shape(wave)[1]
    clips, pool_length = ops.shape(pool)[0], ops.shape(pool)[1]
    clip = _random_index((batch,), fold_in(seed, 1), clips)
    start = _random_index((batch,), fold_in(seed, 2), ops.maximum(pool_length - length + 1, 1))
    index = ops.minimum(
        start[:, None] + ops.arange(length, dtype="int32")[None, :], pool_length - 1
    )
    noise = ops.take_along_axis(ops.take(pool, clip, axis=0), index, axis=1)
    return mix_at_snr(wave, noise, snr_db)


def hard_clip(wave: Tensor, threshold: float | Tensor) -> Tensor:
    """Hard clipping at ``threshold`` times each example's peak (``0 < threshold <= 1``)."""
    wave = _check(wave)
    peak = ops.max(ops.abs(wave), axis=-1)
    limit = (_per_example(threshold, wave) * peak)[:, None]
    return ops.minimum(ops.maximum(wave, -limit), limit)


def soft_clip(wave: Tensor, drive_db: float | Tensor) -> Tensor:
    """Soft clipping: ``peak * tanh(g x / peak) / tanh(g)`` with ``g = 10^(drive_db/20)``;
    the peak is kept, the waveform is compressed towards it."""
    wave = _check(wave)
    peak = ops.maximum(ops.max(ops.abs(wave), axis=-1), 1e-9)[:, None]
    gain = (10.0 ** (_per_example(drive_db, wave) / 20.0))[:, None]
    return peak * ops.tanh(gain * wave / peak) / ops.tanh(gain)


def band_limit(
    wave: Tensor,
    low_hz: float | Tensor,
    high_hz: float | Tensor,
    sample_rate: int,
    transition_hz: float = 100.0,
) -> Tensor:
    """Band-pass in the FFT domain: unity in ``[low_hz, high_hz]``, raised-cosine
    transitions of ``transition_hz`` inside the band, exactly zero outside it.
    ``low_hz=0`` gives a low-pass.

    Formula: ``G(f) = r((f - low) / t) * r((high - f) / t)`` with
    ``r(u) = (1 - cos(pi clip(u, 0, 1))) / 2`` (and ``r = 1`` for the rise when
    ``low <= 0``), applied to the whole-signal real FFT.
    """
    wave = _check(wave)
    length = ops.shape(wave)[-1]
    spectrum = ops.rfft(wave)
    bins = ops.shape(spectrum[0])[-1]
    freqs = ops.cast(ops.arange(bins), "float32") * (sample_rate / ops.cast(length, "float32"))
    low = _per_example(low_hz, wave)[:, None]
    high = _per_example(high_hz, wave)[:, None]
    rise = ops.clip((freqs[None, :] - low) / transition_hz, 0.0, 1.0)
    rise = ops.where(low <= 0.0, ops.ones_like(rise), rise)
    fall = ops.clip((high - freqs[None, :]) / transition_hz, 0.0, 1.0)
    gain = (0.5 - 0.5 * ops.cos(math.pi * rise)) * (0.5 - 0.5 * ops.cos(math.pi * fall))
    return ops.irfft(_scale_spectrum(spectrum, gain), fft_length=length)


def lowpass(wave: Tensor, cutoff_hz: float | Tensor, sample_rate: int) -> Tensor:
    """Low-pass at ``cutoff_hz`` (see :func:`band_limit`)."""
    return band_limit(wave, 0.0, cutoff_hz, sample_rate)


def telephone(
    wave: Tensor, sample_rate: int, low_hz: float = 300.0, high_hz: float = 3400.0
) -> Tensor:
    """Telephone band 300-3400 Hz (ITU-T G.712)."""
    return band_limit(wave, low_hz, high_hz, sample_rate)


def codec(wave: Tensor, strength: float | Tensor, sample_rate: int, bands: int = 20) -> Tensor:
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
    membership = spectral.bark_filterbank(
        bands, sample_rate, _ANALYSIS.fft_length, shape="rectangular"
    )
    # Rectangular bands: each bin belongs to one band, so a segment maximum finds the band peaks.
    band_of_bin = ops.convert_to_tensor(np.argmax(membership, axis=1).astype(np.int32))
    band_peak = ops.segment_max(ops.transpose(mag, (2, 0, 1)), band_of_bin, num_segments=bands)
    peak_at_bin = ops.transpose(ops.take(band_peak, band_of_bin, axis=0), (1, 2, 0))
    drop_db = 40.0 - 30.0 * s
    keep = mag >= peak_at_bin * 10.0 ** (-drop_db / 20.0)
    step_db = 1.0 + 5.0 * s
    mag_db = 20.0 * ops.log(mag) / math.log(10.0)
    quantised = 10.0 ** (step_db * ops.round(mag_db / step_db) / 20.0)
    freqs = ops.convert_to_tensor(
        np.arange(_ANALYSIS.num_bins, dtype=np.float32) * sample_rate / _ANALYSIS.fft_length
    )
    keep = ops.logical_and(keep, freqs[None, None, :] <= (1.0 - 0.5 * s) * sample_rate / 2.0)
    scale = ops.where(keep, quantised / mag, ops.zeros_like(mag))
    return _istft(real * scale, imag * scale, wave)


def dropouts(
    wave: Tensor,
    seed: Seed,
    rate_per_second: float | Tensor,
    sample_rate: int,
    duration_ms: float = 20.0,
    crossfade_ms: float = 0.0,
    max_drops: int = 16,
) -> Tensor:
    """Packet loss: ``rate_per_second`` gaps of ``duration_ms`` (a packet) per
    second, at random positions, zeroed; with ``crossfade_ms > 0`` the signal
    fades out before each gap and back in after it along a raised-cosine ramp of
    ``2 * crossfade_ms`` (no clicks), the gap itself staying exactly zero. At most
    ``max_drops`` gaps per example.

    Formula: with ``d`` a sample's distance to the nearest gap (0 inside one) and
    ``F`` the crossfade in samples, the gain is ``(1 - cos(pi min(d / 2F, 1))) / 2``
    (``F = 0``: 0 inside a gap, 1 elsewhere).
    """
    wave = _check(wave)
    length = ops.shape(wave)[1]
    seconds = ops.cast(length, "float32") / sample_rate
    count = ops.minimum(ops.round(_per_example(rate_per_second, wave) * seconds), float(max_drops))
    width = int(round(duration_ms * sample_rate / 1000.0))
    starts = _random_index((_batch(wave), max_drops), fold_in(seed, 1), length)
    active = ops.cast(ops.arange(max_drops), "float32")[None, :] < count[:, None]
    positions = ops.arange(length, dtype="int32")[None, None, :]
    before = starts[..., None] - positions
    after = positions - (starts[..., None] + width - 1)
    distance = ops.maximum(ops.maximum(before, after), 0)
    distance = ops.where(active[..., None], distance, ops.cast(length, "int32"))
    nearest = ops.cast(ops.min(distance, axis=1), "float32")
    fade = int(round(crossfade_ms * sample_rate / 1000.0))
    if fade == 0:
        return wave * ops.cast(nearest > 0.0, "float32")
    ramp = ops.minimum(nearest / (2.0 * fade), 1.0)
    return wave * (0.5 - 0.5 * ops.cos(math.pi * ramp))


def spectral_holes(
    wave: Tensor,
    seed: Seed,
    holes_per_second: float | Tensor,
    sample_rate: int,
    max_frames: int = 12,
    max_bins: int = 40,
    max_holes: int = 16,
) -> Tensor:
    """Time-frequency holes (inpainting masks): rectangles of up to ``max_frames``
    frames by ``max_bins`` bins zeroed in the STFT, ``holes_per_second`` of them."""
    wave = _check(wave)
    real, imag = _stft(wave)
    frames, bins = ops.shape(real)[1], ops.shape(real)[2]
    seconds = ops.cast(ops.shape(wave)[1], "float32") / sample_rate
    count = ops.minimum(ops.round(_per_example(holes_per_second, wave) * seconds), float(max_holes))
    draws = _uniform((_batch(wave), max_holes, 4), fold_in(seed, 1))
    t0 = ops.cast(draws[..., 0] * ops.cast(frames, "float32"), "int32")
    f0 = ops.cast(draws[..., 1] * ops.cast(bins, "float32"), "int32")
    t_width = 1 + ops.cast(draws[..., 2] * (max_frames - 1), "int32")
    f_width = 1 + ops.cast(draws[..., 3] * (max_bins - 1), "int32")
    active = ops.cast(
        ops.cast(ops.arange(max_holes), "float32")[None, :] < count[:, None], "float32"
    )
    t_idx = ops.arange(frames, dtype="int32")[None, None, :]
    f_idx = ops.arange(bins, dtype="int32")[None, None, :]
    in_time = ops.cast((t_idx >= t0[..., None]) & (t_idx < (t0 + t_width)[..., None]), "float32")
    in_freq = ops.cast((f_idx >= f0[..., None]) & (f_idx < (f0 + f_width)[..., None]), "float32")
    # Rectangles are outer products of a time and a frequency interval: count the
    # active ones covering each bin with one batched matrix product.
    covering = ops.matmul(ops.transpose(in_time * active[..., None], (0, 2, 1)), in_freq)
    keep = ops.cast(covering < 0.5, "float32")
    return _istft(real * keep, imag * keep, wave)


def synthetic_rir(
    seed: Seed, rt60: float | Tensor, sample_rate: int, length: int, batch: int | None = None
) -> Tensor:
    """Synthetic room impulse responses ``[batch, length]``: a unit direct path, then
    Gaussian noise under an exponential envelope ``exp(-3 ln(10) t / rt60)``
    (energy down 60 dB after ``rt60`` seconds), starting 2.5 ms after the direct path.

    Reference: Schroeder, "New method of measuring reverberation time", JASA 37 (1965),
    for the exponential-decay model the RT60 is defined by.
    """
    rt60 = ops.reshape(ops.cast(rt60, "float32"), (-1,))
    if batch is not None:
        rt60 = ops.broadcast_to(rt60, (batch,))
    count = ops.shape(rt60)[0]
    samples = ops.arange(length, dtype="int32")
    t = ops.cast(samples, "float32") / sample_rate
    envelope = ops.exp(-3.0 * math.log(10.0) * t[None, :] / rt60[:, None])
    onset = int(0.0025 * sample_rate)
    tail = (
        _normal((count, length), seed)
        * envelope
        * ops.cast(samples >= onset, "float32")[None, :]
        * 0.1
    )
    direct = ops.cast(samples == 0, "float32")[None, :]
    return direct + tail


def reverb(
    wave: Tensor, seed: Seed, rt60: float | Tensor, sample_rate: int, max_rt60: float = 1.5
) -> Tensor:
    """Reverberation: convolution with :func:`synthetic_rir` of ``rt60`` seconds
    (the RIR is ``max_rt60 * sample_rate`` samples long), cut to the input length and
    scaled back to the input's power."""
    wave = _check(wave)
    length = ops.shape(wave)[1]
    rir_length = int(max_rt60 * sample_rate)
    rir = synthetic_rir(fold_in(seed, 1), _per_example(rt60, wave), sample_rate, rir_length)
    fft_length = length + rir_length
    wave_real, wave_imag = ops.rfft(wave, fft_length=fft_length)
    rir_real, rir_imag = ops.rfft(rir, fft_length=fft_length)
    product = (
        wave_real * rir_real - wave_imag * rir_imag,
        wave_real * rir_imag + wave_imag * rir_real,
    )
    wet = ops.irfft(product, fft_length=fft_length)[:, :length]
    scale = ops.sqrt(
        ops.maximum(_power(wave), SILENCE_POWER) / ops.maximum(_power(wet), SILENCE_POWER)
    )
    return wet * scale[:, None]


def bit_depth(wave: Tensor, bits: float | Tensor) -> Tensor:
    """Requantisation to ``bits`` bits (rounded to an integer, at least 2):
    ``round(x * 2^(b-1)) / 2^(b-1)`` (round half to even)."""
    wave = _check(wave)
    levels = (2.0 ** (ops.maximum(ops.round(_per_example(bits, wave)), 2.0) - 1.0))[:, None]
    return ops.round(wave * levels) / levels


def _fft_upsample(low, factor):
    """Ideal (FFT, band-limited periodic) interpolation of ``low`` ``[batch, m]`` to
    ``m * factor`` samples; an even ``m``'s Nyquist bin is split between its two
    mirror bins, so the result passes through the given samples (as
    ``scipy.signal.resample`` does)."""
    count = ops.shape(low)[-1]
    real, imag = ops.rfft(low)
    bins = ops.arange(ops.shape(real)[-1], dtype="int32")
    nyquist = ops.logical_and(bins == count // 2, count % 2 == 0)
    half = ops.where(nyquist, 0.5, 1.0)
    # irfft pads the missing high bins with zeros.
    return ops.irfft((real * half, imag * half), fft_length=count * factor) * float(factor)


def aliasing(wave: Tensor, factor: float | Tensor) -> Tensor:
    """Resampling aliasing: decimation by an integer ``factor`` in
    ``ALIASING_FACTORS`` without an anti-aliasing filter (so content above the new
    Nyquist folds down), then ideal (FFT) interpolation back to the input rate.
    ``factor`` per example is rounded to the nearest allowed value.

    Formula: ``y = resample(x[::f], f * ceil(L / f))[:L]`` with ``resample`` the
    FFT interpolation of :func:`scipy.signal.resample`."""
    wave = _check(wave)
    length = ops.shape(wave)[1]
    wanted = _per_example(factor, wave)
    result = wave
    for allowed in ALIASING_FACTORS:
        restored = _fft_upsample(wave[:, ::allowed], allowed)[:, :length]
        chosen = ops.abs(wanted - allowed) < 0.5
        if allowed == ALIASING_FACTORS[0]:
            chosen = wanted < allowed + 0.5
        if allowed == ALIASING_FACTORS[-1]:
            chosen = wanted >= allowed - 0.5
        result = ops.where(chosen[:, None], restored, result)
    return result


def phase_noise(wave: Tensor, seed: Seed, strength: float | Tensor, iterations: int = 8) -> Tensor:
    """Phase damage that keeps the STFT magnitude close: each bin's phase is offset
    by uniform noise in ``[-pi s, pi s]`` (``s = strength`` in [0, 1]), then
    ``iterations`` Griffin-Lim projections make the spectrogram consistent again
    with the original magnitude. Measured on speech (tests): s = 0.5 leaves the
    STFT magnitude within about 5 % (relative L2 over audible bins) while moving
    the phase by 0.2 rad on average; s = 1 moves it by 1.6 rad at about 24 %."""
    wave = _check(wave)
    real, imag = _stft(wave)
    mag = spectral.magnitude(real, imag)
    offset = (
        _uniform(ops.shape(real), fold_in(seed, 1), -math.pi, math.pi)
        * _per_example(strength, wave)[:, None, None]
    )
    angle = spectral.phase(real, imag) + offset
    return _project_magnitude(mag, angle, wave, iterations=int(iterations))


def allpass(wave: Tensor, seed: Seed, strength: float | Tensor, terms: int = 12) -> Tensor:
    """All-pass phase dispersion: the whole-signal spectrum is multiplied by
    ``exp(j phi(w))`` with a smooth random phase response
    ``phi(w) = sum_{q=1..Q} a_q cos(q w) + b_q sin(q w)`` (``w`` in rad/sample,
    ``a, b ~ N(0, (pi s)^2 / (2Q))``, so ``phi`` has a standard deviation of
    ``pi * s`` radians and a group delay of at most ``sum q (|a_q| + |b_q|)``
    samples, far inside an STFT frame). The magnitude spectrum is unchanged
    exactly, the STFT magnitude nearly, and every bin's phase moves."""
    wave = _check(wave)
    length = ops.shape(wave)[-1]
    real, imag = ops.rfft(wave)
    bins = ops.shape(real)[-1]
    sigma = math.pi * _per_example(strength, wave)[:, None] / math.sqrt(2.0 * terms)
    coefficients = _normal((_batch(wave), 2 * terms), fold_in(seed, 1)) * sigma
    bin_index = ops.arange(bins, dtype="int32")
    omega = math.pi * ops.cast(bin_index, "float32") / ops.cast(ops.maximum(bins - 1, 1), "float32")
    orders = ops.arange(1, terms + 1, dtype="float32")
    basis = ops.concatenate(
        [ops.cos(orders[:, None] * omega[None, :]), ops.sin(orders[:, None] * omega[None, :])],
        axis=0,
    )
    angle = ops.matmul(coefficients, basis)
    # DC and Nyquist of a real signal are real: leave them unrotated.
    interior = ops.logical_and(bin_index > 0, bin_index < bins - 1 + length % 2)
    angle = ops.where(interior[None, :], angle, ops.zeros_like(angle))
    cos, sin = ops.cos(angle), ops.sin(angle)
    return ops.irfft((real * cos - imag * sin, real * sin + imag * cos), fft_length=length)


def griffin_lim_phase(wave: Tensor, seed: Seed, iterations: int = 4) -> Tensor:
    """Phase replaced by ``iterations`` Griffin-Lim iterations from random phases,
    with the original magnitude."""
    wave = _check(wave)
    real, imag = _stft(wave)
    mag = spectral.magnitude(real, imag)
    angle = _uniform(ops.shape(real), fold_in(seed, 1), -math.pi, math.pi)
    return _project_magnitude(mag, angle, wave, iterations=int(iterations))


def _unit_phasor(real, imag):
    """``(cos, sin)`` of each bin's phase as the spectrum over its magnitude (no
    ``atan2``, ``cos`` and ``sin``); silent bins (power below ``spectral.POWER_FLOOR``)
    get phase 0, as :func:`spectral.phase` gives them."""
    power = ops.square(real) + ops.square(imag)
    silent = power < spectral.POWER_FLOOR
    inverse = ops.rsqrt(ops.maximum(power, spectral.POWER_FLOOR))
    return ops.where(silent, ops.ones_like(real), real * inverse), ops.where(
        silent, ops.zeros_like(imag), imag * inverse
    )


def _project_magnitude(mag, angle, like, iterations):
    """Griffin-Lim: ``iterations`` rounds of keeping the phase of the STFT of the
    waveform and putting ``mag`` back, starting from phases ``angle``."""
    cos, sin = ops.cos(angle), ops.sin(angle)
    estimate = _istft(mag * cos, mag * sin, like)
    for _ in range(iterations):
        cos, sin = _unit_phasor(*_stft(estimate))
        estimate = _istft(mag * cos, mag * sin, like)
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
    "dropouts_crossfade": (
        "gaps per second",
        lambda w, seed, s, sr: dropouts(w, seed, s, sr, crossfade_ms=5.0),
    ),
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


def _interval(name, value):
    """``value`` as a float pair ``(low, high)`` with ``0 <= low <= high``;
    ValueError naming ``name`` otherwise."""
    try:
        pair = tuple(float(bound) for bound in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not 0.0 <= pair[0] <= pair[1]:
        raise ValueError(
            f"`{name}` must be (low, high) with 0 <= low <= high. Received: {name}={value!r}"
        )
    return pair


def _fraction(name, value):
    """``value`` as a float in [0, 1]; ValueError naming ``name`` otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"`{name}` must be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


def _when_drawn(drawn, damage, wave):
    """``damage()`` when ``drawn`` (a boolean scalar) holds, else ``wave``: a Python
    branch on a value at hand, ``keras.ops.cond`` on a traced one."""
    if backend.is_traced(drawn):
        return ops.cond(drawn, damage, lambda: wave)
    return damage() if bool(ops.convert_to_numpy(drawn)) else wave


class ArtifactChain:
    """A random chain of artifacts, drawn per example.

    For each link in order, each example is damaged with the link's probability,
    at a strength drawn uniformly from its range. A link is computed for the whole
    batch only when some example drew it, and selected per
    example, so the graph is static and a link no example drew costs nothing at
    run time: ``keras.ops.cond`` when traced (``tf.cond`` in ``tf.function`` and
    ``tf.data``, ``lax.cond`` under ``jax.jit``, which runs one branch), a Python
    branch when eager.

    Args:
        specs: sequence of :class:`ArtifactSpec` or ``(name, probability, (low, high))``,
            or the name of a chain of ``CHAINS`` ("default", "denoise").
            Defaults to ``DEFAULT_CHAIN``.
        sample_rate: int. Defaults to 16000.
        ensure_one: bool. An example that drew no artifact gets the most probable
            link, so no training pair is clean/clean. Defaults to True.
        noise_pool: array ``[clips, samples]`` or None. Noise recordings for the
            "noise_file" link (see ``files.noise_pool_from_folder``). Defaults to None.
        clean_fraction: float in [0, 1]. Share of examples passed through undamaged,
            bit for bit (``ensure_one`` does not apply to them), so a restorer also
            learns to leave clean input alone. Defaults to 0.
        mild_fraction: float in [0, 1], at most ``1 - clean_fraction``. Share of
            examples whose damage is made milder by mixing it with the clean input
            (see the formula). Defaults to 0.
        mild_reduction_db: ``(low, high)`` dB, ``0 <= low <= high``. How much weaker
            the damage of a mild example is, drawn uniformly per example. Defaults
            to (6, 20).

    Formula: each example draws ``u ~ U(0, 1)``; ``u < clean_fraction``: output = input;
    ``clean_fraction <= u < clean_fraction + mild_fraction``: with ``y`` the chain's
    damaged output, ``x`` the input and ``r ~ U(mild_reduction_db)``, the output is
    ``x + 10^(-r/20) (y - x)``: the damage (the difference from the input) is ``r`` dB
    weaker, e.g. noise at ``SNR + r`` dB, clipping ``r`` dB shallower, a band limit
    that leaves the stopband ``r`` dB down instead of silent. For damage that only
    moves the phase (``allpass``, ``phase_noise``, ``griffin_lim``) the mix is partial
    comb filtering instead: where a bin's phase moved by ``d``, its magnitude is
    scaled by ``|1 - m + m e^{jd}|`` (``m = 10^(-r/20)``), down to ``|1 - 2m|``
    (-1.9 dB at ``r = 20``, a notch at ``r = 6``).

    Call: ``damaged, record = chain(wave, seed)`` with ``seed`` shape-[2]
    integers; ``record[name]`` is ``{"applied": bool [batch], "strength": float [batch]}``,
    and, where the fractions are non-zero, ``record["undamaged"]`` (strength 0) and
    ``record["mild"]`` (strength ``r`` in dB) say which examples were left clean or
    made milder.

    Example:
    >>> chain = ArtifactChain([("hard_clip", 1.0, (0.5, 0.5))])
    >>> damaged, record = chain(np.array([[0.0, 1.0, -1.0, 0.25]], "float32"), [1, 2])
    >>> ops.convert_to_numpy(damaged).tolist()
    [[0.0, 0.5, -0.5, 0.25]]
    """

    def __init__(
        self,
        specs: Sequence[ArtifactSpec | tuple[str, float, Sequence[float]]] | str = DEFAULT_CHAIN,
        sample_rate: int = 16000,
        ensure_one: bool = True,
        noise_pool: np.ndarray | None = None,
        clean_fraction: float = 0.0,
        mild_fraction: float = 0.0,
        mild_reduction_db: tuple[float, float] = (6.0, 20.0),
    ) -> None:
        self.clean_fraction = _fraction("clean_fraction", clean_fraction)
        self.mild_fraction = _fraction("mild_fraction", mild_fraction)
        if self.clean_fraction + self.mild_fraction > 1.0:
            raise ValueError(
                "`clean_fraction + mild_fraction` must be at most 1. "
                f"Received: clean_fraction={clean_fraction!r}, mild_fraction={mild_fraction!r}"
            )
        self.mild_reduction_db = _interval("mild_reduction_db", mild_reduction_db)
        if isinstance(specs, str):
            if specs not in CHAINS:
                raise ValueError(f"Unknown chain {specs!r}; named chains: {sorted(CHAINS)}")
            specs = CHAINS[specs]
        self.noise_pool = (
            None
            if noise_pool is None
            else ops.convert_to_tensor(np.asarray(noise_pool, np.float32))
        )
        parsed = []
        for spec in specs:
            if not isinstance(spec, ArtifactSpec):
                spec = ArtifactSpec(spec[0], float(spec[1]), tuple(spec[2]))
            if spec.name not in ARTIFACTS:
                raise ValueError(f"Unknown artifact {spec.name!r}; known: {sorted(ARTIFACTS)}")
            if not 0.0 <= spec.probability <= 1.0:
                raise ValueError(
                    f"Artifact {spec.name!r}: probability must be in [0, 1], got {spec.probability}"
                )
            if len(spec.strength) != 2 or spec.strength[0] > spec.strength[1]:
                raise ValueError(
                    f"Artifact {spec.name!r}: strength must be (low, high), got {spec.strength}"
                )
            if spec.name == "noise_file" and self.noise_pool is None:
                raise ValueError(
                    "The 'noise_file' artifact needs noise_pool=[clips, samples] noise recordings"
                )
            parsed.append(spec)
        if not parsed:
            raise ValueError("An ArtifactChain needs at least one artifact")
        self.specs = tuple(parsed)
        self.sample_rate = int(sample_rate)
        self.ensure_one = bool(ensure_one)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def _link(self, spec):
        if spec.name == "noise_file":
            return lambda wave, seed, snr, sample_rate: add_noise_from_pool(
                wave, seed, snr, self.noise_pool
            )
        return ARTIFACTS[spec.name][1]

    def __call__(self, wave: Tensor, seed: Seed) -> tuple[Tensor, dict[str, dict[str, Tensor]]]:
        wave = _check(wave)
        seed = _as_seed(seed)
        batch = (_batch(wave),)
        applied = ops.stack(
            [
                _uniform(batch, fold_in(seed, 1000 + index)) < spec.probability
                for index, spec in enumerate(self.specs)
            ],
            axis=1,
        )
        if self.ensure_one:
            most_likely = np.arange(len(self.specs)) == np.argmax(
                [spec.probability for spec in self.specs]
            )
            none = ops.logical_not(ops.any(applied, axis=1))
            applied = ops.logical_or(
                applied, ops.logical_and(ops.convert_to_tensor(most_likely)[None, :], none[:, None])
            )
        # Salts of their own: the links' draws stay those of a chain without the fractions.
        if self.clean_fraction or self.mild_fraction:
            share = _uniform(batch, fold_in(seed, 4000))
        record = {}
        if self.clean_fraction:
            undamaged = share < self.clean_fraction
            # No link acts on these examples, so they come out as they went in, bit for bit.
            applied = ops.logical_and(applied, ops.logical_not(undamaged)[:, None])
            record["undamaged"] = {"applied": undamaged, "strength": ops.zeros(batch, "float32")}
        clean = wave
        for index, spec in enumerate(self.specs):
            low, high = spec.strength
            strength = _uniform(batch, fold_in(seed, 2000 + index), low, high)
            use = applied[:, index]
            link_seed = fold_in(seed, 3000 + index)
            damaged = _when_drawn(
                ops.any(use),
                lambda apply=self._link(spec), wave=wave, link_seed=link_seed, strength=strength: (
                    apply(wave, link_seed, strength, self.sample_rate)
                ),
                wave,
            )
            wave = ops.where(use[:, None], damaged, wave)
            record[spec.name] = {"applied": use, "strength": strength}
        if self.mild_fraction:
            mild = ops.logical_and(
                share >= self.clean_fraction, share < self.clean_fraction + self.mild_fraction
            )
            reduction_db = _uniform(batch, fold_in(seed, 4001), *self.mild_reduction_db)
            milder = clean + (10.0 ** (-reduction_db / 20.0))[:, None] * (wave - clean)
            wave = ops.where(mild[:, None], milder, wave)
            record["mild"] = {"applied": mild, "strength": reduction_db}
        return wave, record

    def get_config(self) -> dict[str, Any]:
        return {
            "specs": [[s.name, s.probability, list(s.strength)] for s in self.specs],
            "sample_rate": self.sample_rate,
            "ensure_one": self.ensure_one,
            "clean_fraction": self.clean_fraction,
            "mild_fraction": self.mild_fraction,
            "mild_reduction_db": list(self.mild_reduction_db),
        }


class RecordingFloor:
    """Adds a recording's background to a share of clean training examples, before any
    damage and on both sides of the pair: it becomes part of the clean target, so a
    restorer learns to leave it alone.

    Speech synthesized for training sits on digital silence and has nothing below the
    voice, while a microphone in a room records rumble (building, handling, wind) and
    hiss. A restorer that never saw them reads any energy below the voice as the low
    end of added noise: trained without floors, the gated conformer took the real CMU
    ARCTIC utterance (1-60 Hz about 15 dB below its total power) for noisy and
    restored its voice band accordingly, PESQ-WB 4.64 -> 3.3 (benchmarks/README.md).

    Args:
        fraction: float in [0, 1]. Share of examples that get a floor, drawn per
            example. Defaults to 0.5.
        rumble_below_db: ``(low, high)`` dB. How far below the example's power the
            rumble lies, drawn uniformly per example. Defaults to (10, 40).
        rumble_cutoff_hz: ``(low, high)`` Hz. The rumble's cutoff
            (:func:`rumble_noise`), drawn uniformly per example. Defaults to (20, 120).
        hiss_below_db: ``(low, high)`` dB. How far below the example's power the
            hiss lies. Defaults to (35, 65).
        hiss_exponent: ``(low, high)``. The hiss's spectral exponent (power
            ``1 / f^e``: 0 white, 1 pink, 2 brown). Defaults to (0, 2).
        sample_rate: int. Defaults to 16000.

    Formula: with ``u ~ U(0, 1)`` per example, ``u < fraction``: ``x + a r + b h``,
    ``r`` :func:`rumble_noise` of cutoff ``~ U(rumble_cutoff_hz)``, ``h``
    :func:`colored_noise` of exponent ``~ U(hiss_exponent)``, ``a`` and ``b`` such that
    ``10 log10(P_x / P_(a r))`` and ``10 log10(P_x / P_(b h))`` are drawn from
    ``rumble_below_db`` and ``hiss_below_db`` (as :func:`mix_at_snr`); otherwise ``x``.

    Call: ``floor(wave, seed)`` with ``wave`` ``[batch, samples]`` and ``seed``
    shape-[2] integers; returns the batch with its floors.
    """

    def __init__(
        self,
        fraction: float = 0.5,
        rumble_below_db: tuple[float, float] = (10.0, 40.0),
        rumble_cutoff_hz: tuple[float, float] = (20.0, 120.0),
        hiss_below_db: tuple[float, float] = (35.0, 65.0),
        hiss_exponent: tuple[float, float] = (0.0, 2.0),
        sample_rate: int = 16000,
    ) -> None:
        self.fraction = _fraction("fraction", fraction)
        self.rumble_below_db = _interval("rumble_below_db", rumble_below_db)
        self.rumble_cutoff_hz = _interval("rumble_cutoff_hz", rumble_cutoff_hz)
        if self.rumble_cutoff_hz[0] <= 0.0:
            raise ValueError(
                f"`rumble_cutoff_hz` must be above 0 Hz. Received: rumble_cutoff_hz={rumble_cutoff_hz!r}"
            )
        self.hiss_below_db = _interval("hiss_below_db", hiss_below_db)
        self.hiss_exponent = _interval("hiss_exponent", hiss_exponent)
        self.sample_rate = int(sample_rate)

    def __call__(self, wave: Tensor, seed: Seed) -> Tensor:
        wave = _check(wave)
        seed = _as_seed(seed)
        batch = (_batch(wave),)
        shape = ops.shape(wave)
        has_floor = _uniform(batch, fold_in(seed, 1)) < self.fraction
        cutoff = _uniform(batch, fold_in(seed, 2), *self.rumble_cutoff_hz)
        rumble = rumble_noise(shape, fold_in(seed, 3), cutoff, self.sample_rate)
        exponent = _uniform(batch, fold_in(seed, 4), *self.hiss_exponent)
        hiss = colored_noise(shape, fold_in(seed, 5), exponent)
        floor = _scaled_to_snr(
            wave, rumble, _uniform(batch, fold_in(seed, 6), *self.rumble_below_db)
        ) + _scaled_to_snr(wave, hiss, _uniform(batch, fold_in(seed, 7), *self.hiss_below_db))
        return ops.where(has_floor[:, None], wave + floor, wave)

    def get_config(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "rumble_below_db": list(self.rumble_below_db),
            "rumble_cutoff_hz": list(self.rumble_cutoff_hz),
            "hiss_below_db": list(self.hiss_below_db),
            "hiss_exponent": list(self.hiss_exponent),
            "sample_rate": self.sample_rate,
        }


def check_floor(floor: RecordingFloor | None) -> RecordingFloor | None:
    """``floor`` itself when it is a :class:`RecordingFloor` or None; TypeError otherwise."""
    if floor is not None and not isinstance(floor, RecordingFloor):
        raise TypeError(
            f"`floor` must be a RecordingFloor or None. Received: {type(floor).__name__}"
        )
    return floor


@keras.saving.register_keras_serializable(package="spectral_restore")
class ArtifactLayer(keras.layers.Layer):
    """Damages its input batch with an :class:`ArtifactChain` during training only
    (identity at inference), so the damage runs on the accelerator inside the
    model's ``train_step``, on any backend.

    Each call uses a new seed, :func:`fold_in` of ``[seed, 0xA7]`` and a call
    counter kept in a non-trainable variable (``calls``): runs with the same seed
    see the same damage, and every training step a different one. The counter is
    assigned inside ``call``, which Keras's stateless training step under JAX
    records like any other non-trainable state (a batch-norm statistic, a seed
    generator).

    Args:
        chain_config: dict or None. ``ArtifactChain.get_config()``; None gives the
            default chain at ``sample_rate``.
        sample_rate: int. Defaults to 16000.
        seed: int. Defaults to 0.
    """

    def __init__(
        self,
        chain_config: dict[str, Any] | None = None,
        sample_rate: int = 16000,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.chain_config = chain_config
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        if chain_config is None:
            self.chain = ArtifactChain(sample_rate=self.sample_rate)
        else:
            # Configs saved before a chain had fractions lack them: the chain's defaults apply.
            options = {key: value for key, value in chain_config.items() if key != "specs"}
            options.setdefault("sample_rate", self.sample_rate)
            self.chain = ArtifactChain([tuple(spec) for spec in chain_config["specs"]], **options)
        # int32: JAX has no int64 unless x64 is enabled.
        self.calls = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="calls"
        )

    def call(self, inputs: Tensor, training: bool = False) -> Tensor:
        if not training:
            return inputs
        seed = fold_in([self.seed, 0xA7], self.calls)
        self.calls.assign_add(1)
        return self.chain(inputs, seed)[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "chain_config": self.chain_config,
            "sample_rate": self.sample_rate,
            "seed": self.seed,
        }
