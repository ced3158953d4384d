"""A differentiable model of ITU-T P.862 (PESQ) in keras.ops.

``mos(clean, degraded, sample_rate, mode)`` follows the stages of the P.862
perceptual model: level alignment, input filter, a delay search, Bark-band power
spectra, frequency-response and gain compensation, Zwicker loudness, symmetric
and asymmetric disturbance with the deadzone, the re-alignment of bad intervals,
and the L_p aggregation over split-second intervals and over time, mapped to
MOS-LQO (P.862.1 for narrow band, P.862.2 for wide band), the scale the ``pesq``
package reports.

Alignment: by default one delay per example instead of one per utterance (the
envelope cross-correlation and the histogram of frame cross-correlation peaks, over
the whole signal, in the graph); ``delay_search="utterance"`` uses P.862's own
utterance alignment (``align``, on the host), reads every frame at its
utterance's delay and, as P.862 does, leaves out the frames where the delay falls
back by more than half a frame between utterances. Bad intervals are re-aligned one by one, as P.862 does (up to 16
per example, each delay searched over at most the interval's first 0.77 s). Delays are found without gradient; the scores
are differentiable in both signals. ``delay_search=False`` skips both searches
(the signals are then taken as aligned sample for sample, about 1.6x faster).

Numerical guards (they change nothing measurable on speech): the level
alignment divides by ``max(power, 1e-12)``; every L_p norm is taken of values
divided by their (constant) maximum, plus 1e-12 under the root, so silence and
identical inputs give finite gradients and the floor adds at most 1e-8.
"""

import numpy as np
from keras import ops

from spectral_restore.backend import host_call
from spectral_restore.checks import check_choice
from spectral_restore.p862 import align, tables
from spectral_restore.p862.mapping import BEST_RAW_SCORE, MODES, mos_lqo

TARGET_AVG_POWER = 1e7
SILENCE_OF_5_SAMPLES = 500.0
PADDING_MS = 320
ZWICKER_POWER = 0.23
ROOT_FLOOR = 1e-12
SCALE_FLOOR = 1e-6
# Frequency response (dB) of the level-alignment filter and the IRS receive filter.
ALIGN_FILTER_DB = (
    (0, -500),
    (50, -500),
    (100, -500),
    (125, -500),
    (160, -500),
    (200, -500),
    (250, -500),
    (300, -500),
    (350, 0),
    (400, 0),
    (500, 0),
    (600, 0),
    (630, 0),
    (800, 0),
    (1000, 0),
    (1250, 0),
    (1600, 0),
    (2000, 0),
    (2500, 0),
    (3000, 0),
    (3250, 0),
    (3500, -500),
    (4000, -500),
    (5000, -500),
    (6300, -500),
    (8000, -500),
)
IRS_FILTER_DB = (
    (0, -200),
    (50, -40),
    (100, -20),
    (125, -12),
    (160, -6),
    (200, 0),
    (250, 4),
    (300, 6),
    (350, 8),
    (400, 10),
    (500, 11),
    (600, 12),
    (700, 12),
    (800, 12),
    (1000, 12),
    (1300, 12),
    (1600, 12),
    (2000, 12),
    (2500, 12),
    (3000, 12),
    (3250, 12),
    (3500, 4),
    (4000, -200),
    (5000, -200),
    (6300, -200),
    (8000, -200),
)
# P.862.2's wide-band input filter: one biquad (b0, b1, b2, a1, a2), a ~100 Hz high-pass.
WB_INPUT_BIQUAD = {
    8000: (2.6657628, -5.3315255, 2.6657628, -1.8890331, 0.89487434),
    16000: (2.740826, -5.4816519, 2.740826, -1.9444777, 0.94597794),
}
BIQUAD_IMPULSE_TAPS = 1024  # poles at radius < 0.973: the tail is below 1e-12
# Perceptual-model constants per sample rate: (bands table suffix, Sp, Sl).
SCALES = {8000: ("8K", 2.764344e-5, 1.866055e-1), 16000: ("16K", 6.910853e-6, 1.866055e-1)}
FRAMES_PER_SYLLABLE = 20
BAD_FRAME_DISTURBANCE = 30.0
MIN_BAD_INTERVAL = 5
MAX_BAD_INTERVALS = 16  # re-aligned per example; later ones keep their first score


def check_mode(sample_rate, mode):
    check_choice("mode", mode, MODES)
    if sample_rate not in SCALES:
        raise ValueError(
            f"P.862 is defined at 8000 and 16000 Hz. Received: sample_rate={sample_rate!r}"
        )
    if mode == "wb" and sample_rate != 16000:
        raise ValueError(
            f"Wide-band P.862.2 needs sample_rate=16000. Received: sample_rate={sample_rate}"
        )


def check_delay_search(delay_search):
    if delay_search not in (True, False, "utterance"):
        raise ValueError(
            f"`delay_search` must be True, False or 'utterance'. Received: {delay_search!r}"
        )
    return delay_search


def next_pow2(n):
    return 1 << int(np.ceil(np.log2(max(n, 1))))


def curve_gain(curve_db, sample_rate, fft_length):
    """Linear gains of a dB curve at the rfft bin frequencies, normalised at 1 kHz
    (linear interpolation between the curve's points, extrapolated at the ends)."""
    points = np.asarray(curve_db, dtype=np.float64)
    freqs = np.arange(fft_length // 2 + 1) * sample_rate / fft_length

    def interpolate(f):
        f = np.atleast_1d(f)
        upper = np.clip(np.searchsorted(points[:, 0], f, side="left"), 1, len(points) - 1)
        f0, f1 = points[upper - 1, 0], points[upper, 0]
        c0, c1 = points[upper - 1, 1], points[upper, 1]
        return ((f - f0) * c1 + (f1 - f) * c0) / (f1 - f0)

    db = interpolate(freqs) - interpolate(1000.0)
    return (10.0 ** (db / 20.0)).astype(np.float32)


def wideband_taper(samples):
    """P.862.2's fade-in and fade-out of the signal before its input filter: the first
    and last 15 samples scaled by 1/16 .. 15/16."""
    taper = np.ones(samples, np.float32)
    taper[:15] = np.arange(1, 16) / 16.0
    taper[-15:] = np.arange(15, 0, -1) / 16.0
    return taper


def biquad_impulse_response(coefficients, taps=BIQUAD_IMPULSE_TAPS):
    b0, b1, b2, a1, a2 = coefficients
    h = np.zeros(taps)
    z1 = z2 = 0.0
    for n in range(taps):
        z0 = (1.0 if n == 0 else 0.0) - a1 * z1 - a2 * z2
        h[n] = b0 * z0 + b1 * z1 + b2 * z2
        z1, z2 = z0, z1
    return h.astype(np.float32)


def fft_filter(x, gain, fft_length):
    """Zero-phase filtering by ``gain`` on the rfft of ``x`` zero-padded to ``fft_length``."""
    real, imag = ops.rfft(x, fft_length=fft_length)
    g = ops.convert_to_tensor(gain)
    return ops.irfft((real * g, imag * g), fft_length=fft_length)


def circular_convolution(a, b, size):
    """``y[k] = sum_n a[n] b[(k - n) mod size]`` over the last axis, both zero-padded to ``size``."""
    ar, ai = ops.rfft(ops.convert_to_tensor(a), fft_length=size)
    br, bi = ops.rfft(ops.convert_to_tensor(b), fft_length=size)
    return ops.irfft((ar * br - ai * bi, ar * bi + ai * br), fft_length=size)


def circular_correlation(a, b, size):
    """``y[k] = sum_n a[n] b[(n + k) mod size]`` over the last axis, both zero-padded to ``size``."""
    ar, ai = ops.rfft(a, fft_length=size)
    br, bi = ops.rfft(b, fft_length=size)
    return ops.irfft((ar * br + ai * bi, ar * bi - ai * br), fft_length=size)


def causal_fir(x, taps):
    """Linear convolution with a causal impulse response, keeping ``x``'s length."""
    n = x.shape[-1]
    return circular_convolution(x, taps[None], next_pow2(n + len(taps) - 1))[:, :n]


def weighted_lp(x, p, weights):
    """``(sum_i weights_i x_i^p)^(1/p)`` over the last axis for ``x >= 0``, computed as
    ``m (sum_i weights_i (x_i/m)^p + 1e-12)^(1/p)`` with ``m = max(max_i x_i, 1e-6)``
    held constant: the root never sees 0 (finite gradients on silence and identical
    inputs) and the floor adds at most 1e-8 to the norm."""
    scale = ops.maximum(ops.stop_gradient(ops.max(x, axis=-1, keepdims=True)), SCALE_FLOOR)
    total = ops.sum(weights * ops.power(x / scale, p), axis=-1)
    return scale[..., 0] * ops.power(total + ROOT_FLOOR, 1.0 / p)


class P862Model:
    """The constants and fixed matrices of one (sample rate, mode, length) case."""

    def __init__(self, sample_rate, mode, samples):
        check_mode(sample_rate, mode)
        if samples < sample_rate // 4:
            raise ValueError(
                f"P.862 needs at least 0.25 s of audio ({sample_rate // 4} samples at {sample_rate} Hz). "
                f"Received {samples} samples"
            )
        self.sample_rate, self.mode, self.samples = sample_rate, mode, samples
        suffix, self.sp, self.sl = SCALES[sample_rate]
        downsample = self.downsample = 32 if sample_rate == 8000 else 64
        self.align_fft = 512 if sample_rate == 8000 else 1024
        self.search_padding = 75 * downsample
        self.frame_length = 8 * downsample
        self.hop = self.frame_length // 2
        self.padding = PADDING_MS * sample_rate // 1000
        self.padded = samples + self.padding
        self.filter_fft = next_pow2(self.padded)
        self.align_gain = curve_gain(ALIGN_FILTER_DB, sample_rate, self.filter_fft)
        self.irs_gain = curve_gain(IRS_FILTER_DB, sample_rate, self.filter_fft)
        self.wb_impulse = biquad_impulse_response(WB_INPUT_BIQUAD[sample_rate])
        # Frames 0 .. (samples + padding) / hop - 2 can fall inside the analysed range.
        self.frames = self.padded // self.hop - 1
        self.total_frames = self.frames  # P.862's divisor of the time average
        self.skip_limit = (samples + 2 * 75 * downsample) // 2

        bins_per_band = np.asarray(getattr(tables, f"BINS_PER_BAND_{suffix}"))
        self.bands = len(bins_per_band)
        correction = np.asarray(getattr(tables, f"POWER_CORRECTION_{suffix}"))
        edges = np.concatenate([[0], np.cumsum(bins_per_band)])
        warp = np.zeros((self.frame_length // 2 + 1, self.bands))
        for band in range(self.bands):
            warp[edges[band] : edges[band + 1], band] = correction[band] * self.sp
        warp[0] = 0.0  # P.862 zeroes the DC bin; the Nyquist bin is not summed
        self.warp = warp.astype(np.float32)
        self.threshold = np.asarray(getattr(tables, f"ABS_THRESHOLD_POWER_{suffix}"), np.float32)
        self.width = np.asarray(getattr(tables, f"WIDTH_BARK_{suffix}"), np.float32)
        centre = np.asarray(getattr(tables, f"CENTRE_BARK_{suffix}"))
        h = np.where(centre < 4, np.minimum(6.0 / (centre + 2.0), 2.0), 1.0) ** 0.15
        self.zwicker = (ZWICKER_POWER * h).astype(np.float32)
        self.from_band_1 = np.r_[0.0, np.ones(self.bands - 1)].astype(np.float32)
        n = np.arange(self.frame_length)
        self.window = (0.5 * (1.0 - np.cos(2.0 * np.pi * n / self.frame_length))).astype(np.float32)
        self.time_weight = self._time_weight()

    def _time_weight(self):
        frames = np.arange(self.frames, dtype=np.float64)
        n = self.samples // self.hop - 1
        factor = min((n - 1000.0) / 5500.0, 0.5)
        return ((1.0 - factor) + factor * frames / n).astype(np.float32)

    # Stages -------------------------------------------------------------------------

    def level_align(self, x):
        """Scales each signal so the power of its 350-3250 Hz band is 1e7."""
        filtered = fft_filter(x, self.align_gain, self.filter_fft)[:, : self.padded]
        power = ops.sum(ops.square(filtered), axis=-1, keepdims=True) / self.padded
        return x * ops.sqrt(TARGET_AVG_POWER / ops.maximum(power, 1e-12))

    def input_filter(self, x):
        """IRS receive filter (narrow band) or the P.862.2 high-pass (wide band);
        returns ``samples + padding`` samples (the filters ring into the padding)."""
        if self.mode == "nb":
            return fft_filter(x, self.irs_gain, self.filter_fft)[:, : self.padded]
        filtered = causal_fir(
            x * ops.convert_to_tensor(wideband_taper(self.samples)), self.wb_impulse
        )
        return ops.pad(filtered, ((0, 0), (0, self.padding)))

    def bark_power(self, x, frame_delay=None):
        """Pitch power densities ``[batch, frames, bands]`` of Hann frames, hop half a
        frame; with ``frame_delay`` ``[batch, frames]`` (int), frame t starts at
        ``t * hop + frame_delay[t]`` (zeros outside the signal)."""
        needed = (self.frames - 1) * self.hop + self.frame_length
        x = ops.pad(x, ((0, 0), (0, max(0, needed - x.shape[-1]))))
        index = np.arange(self.frames)[:, None] * self.hop + np.arange(self.frame_length)[None]
        if frame_delay is None:
            frames = ops.take(x, ops.convert_to_tensor(index.astype("int32")), axis=1)
        else:
            length = x.shape[-1]
            shifted = index[None] + ops.cast(frame_delay, "int32")[..., None]
            inside = ops.cast((shifted >= 0) & (shifted < length), x.dtype)
            flat = ops.reshape(
                ops.clip(shifted, 0, length - 1), (-1, self.frames * self.frame_length)
            )
            frames = (
                ops.reshape(
                    ops.take_along_axis(x, flat, axis=1), (-1, self.frames, self.frame_length)
                )
                * inside
            )
        frames = frames * self.window
        real, imag = ops.rfft(frames)
        power = ops.square(real) + ops.square(imag)
        return ops.matmul(power, ops.convert_to_tensor(self.warp))

    def speech_range(self, ref):
        """First and last frame P.862 analyses: the reference's leading and trailing
        silence (runs of 5 samples with absolute sum < 500 after level alignment) is skipped."""
        magnitude = ops.abs(ops.stop_gradient(ref))
        window = np.ones(5, np.float32)
        sums = causal_fir(
            ops.flip(magnitude, axis=-1), window
        )  # sums[j] = sum of |x| over 5 samples ending at j, reversed
        forward = ops.flip(sums, axis=-1)  # forward[i] = sum over x[i .. i+4]
        loud_forward = ops.cast(forward[:, : self.samples] >= SILENCE_OF_5_SAMPLES, "int32")
        skip_start = self._first_true(loud_forward)
        # sums[j] sums x[L-1-j .. L+3-j] (L = samples + padding), so sums[e + 4] sums the
        # 5 samples ending at L-1-e, the window P.862 tests when skipping the end.
        loud_backward = ops.cast(sums[:, 4:] >= SILENCE_OF_5_SAMPLES, "int32")
        skip_end = self._first_true(loud_backward)
        start_frame = skip_start // self.hop
        stop_frame = (self.padded - skip_end) // self.hop - 1
        return start_frame, stop_frame

    def _first_true(self, flags):
        found = ops.max(flags, axis=-1)
        first = ops.cast(ops.argmax(flags, axis=-1), "int32")
        limit = self.skip_limit
        return ops.where(found > 0, ops.minimum(first, limit), limit)

    def audible(self, power, factor):
        """Sum over bands 1.. of the band powers above ``factor`` times the hearing threshold."""
        above = ops.cast(power > factor * self.threshold, power.dtype)
        return ops.sum(power * above * self.from_band_1, axis=-1)

    def smoothed_scale(self, ratio, restart=None):
        """P.862's short-term gain: s_0 = r_0, s_t = 0.8 r_t + 0.2 s_(t-1), then clamped.

        With ``restart`` (0/1 per frame), the recursion starts again from s = 1 at the
        first frame of each run of ones, as P.862 does when it scores a bad interval
        again (frames outside the runs are not meaningful then).
        """
        taps = 16  # 0.2^16 < 1e-11
        first = ratio[:, :1]
        padded = ops.concatenate([ops.repeat(first, taps, axis=1), ratio], axis=1)
        frames = ratio.shape[1]
        if restart is None:
            smoothed = 0.0
            for k in range(taps):
                smoothed = smoothed + 0.8 * 0.2**k * padded[:, taps - k : taps - k + frames]
            return ops.clip(smoothed, 3e-4, 5.0)
        inside = ops.pad(restart, ((0, 0), (taps, 0)))
        smoothed, included, count = 0.0, 1.0, 0.0
        for k in range(taps):
            # Tap k counts while frames t-k .. t all belong to the same run.
            included = included * inside[:, taps - k : taps - k + frames]
            smoothed = smoothed + included * 0.8 * 0.2**k * padded[:, taps - k : taps - k + frames]
            count = count + included
        return ops.clip(smoothed + ops.power(0.2, count), 3e-4, 5.0)

    def loudness(self, power):
        threshold = self.threshold
        c = ops.convert_to_tensor(self.zwicker)
        above = ops.maximum(power, threshold)
        return (
            self.sl
            * ops.power(threshold / 0.5, c)
            * (ops.power(0.5 + 0.5 * above / threshold, c) - 1.0)
        )

    def pseudo_lp(self, x, p):
        weighted = ops.abs(x) * self.width * self.from_band_1
        total = float(np.sum(self.width[1:]))
        return weighted_lp(weighted, p, np.full(self.bands, 1.0 / total, np.float32)) * total

    def aggregate(self, disturbance, start_frame, stop_frame, p_syllable=6.0, p_time=2.0):
        """L_p over split-second intervals (20 frames, every 10) then L_2 over time,
        over the frames ``start_frame .. stop_frame`` of each example."""
        frames = self.frames
        offsets = np.arange(frames)[None]
        index = start_frame[:, None] + offsets
        inside = ops.cast(index <= stop_frame[:, None], disturbance.dtype)
        shifted = ops.take_along_axis(disturbance, ops.minimum(index, frames - 1), axis=1) * inside
        step = FRAMES_PER_SYLLABLE // 2
        syllables = -(-frames // step)
        padded = ops.pad(shifted, ((0, 0), (0, (syllables + 1) * step - frames)))
        window = np.arange(syllables)[:, None] * step + np.arange(FRAMES_PER_SYLLABLE)[None]
        intervals = ops.take(padded, ops.convert_to_tensor(window.astype("int32")), axis=1)
        uniform = np.full(FRAMES_PER_SYLLABLE, 1.0 / FRAMES_PER_SYLLABLE, np.float32)
        per_syllable = weighted_lp(intervals, p_syllable, uniform)
        starts = np.arange(syllables) * step
        valid = ops.cast(starts[None] <= (stop_frame - start_frame)[:, None], disturbance.dtype)
        # P.862 weights later intervals more in recordings of over 1000 frames (about 16 s).
        long_recording = ops.cast(stop_frame + 1 > 1000, disturbance.dtype)[:, None]
        weight = self.time_weight[np.minimum(starts, frames - 1)][None]
        weight = long_recording * weight + (1.0 - long_recording)
        denominator = ops.sum(ops.power(weight, p_time) * valid, axis=-1, keepdims=True)
        return weighted_lp(
            weight * per_syllable, p_time, valid / ops.maximum(denominator, ROOT_FLOOR)
        )

    # Delay search -------------------------------------------------------------------

    def log_envelope(self, x):
        """P.862's voice-activity envelope: power per ``downsample`` samples, its
        noise threshold iterated 12 times (mean + 2 std of the frames below it), and
        ``log(P / threshold)`` above the threshold, 0 below."""
        # P.862 pads 75 envelope frames of silence on each side; they set the floor.
        x = ops.pad(x, ((0, 0), (self.search_padding, self.search_padding)))
        frames = x.shape[-1] // self.downsample
        power = ops.mean(
            ops.reshape(
                ops.square(x[:, : frames * self.downsample]), (-1, frames, self.downsample)
            ),
            axis=-1,
        )
        peak = ops.max(power, axis=-1, keepdims=True)
        power = ops.maximum(power, ops.where(peak > 0, peak * 1e-4, 1.0))
        threshold = ops.mean(power, axis=-1, keepdims=True)
        for _ in range(12):
            below = ops.cast(power <= threshold, power.dtype)
            count = ops.maximum(ops.sum(below, axis=-1, keepdims=True), 1.0)
            mean = ops.sum(power * below, axis=-1, keepdims=True) / count
            std = ops.sqrt(
                ops.sum(ops.square(power - mean) * below, axis=-1, keepdims=True) / count
            )
            threshold = 1.001 * (mean + 2.0 * std)
        return ops.where(power > threshold, ops.log(power / threshold), 0.0)

    def estimate_delay(self, ref, deg):
        """Samples by which ``deg`` lags ``ref`` (one per example, no gradient), in
        P.862's two stages over the whole signal: the peak of the cross-correlation of
        the activity envelopes (``downsample``-sample resolution), then the histogram
        of per-frame waveform cross-correlation peaks (1024-sample Hann frames at 16
        kHz, 512 at 8 kHz, hop a quarter frame, each peak weighted by its height^0.125,
        smoothed by a triangle of 1/64 frame) around it."""
        ref, deg = (
            ops.stop_gradient(ref[:, : self.samples]),
            ops.stop_gradient(deg[:, : self.samples]),
        )
        a, b = self.log_envelope(ref), self.log_envelope(deg)
        frames = a.shape[-1]
        size = next_pow2(2 * frames)
        xcorr = circular_correlation(a, b, size)
        lags = np.concatenate([np.arange(frames), np.arange(frames - size, 0)])
        crude = (
            ops.take(ops.convert_to_tensor(lags.astype("int32")), ops.argmax(xcorr, axis=-1))
            * self.downsample
        )

        n = self.align_fft
        shifted = self.shift(deg, crude)
        hop = n // 4
        count = (self.samples - n) // hop + 1
        index = np.arange(count)[:, None] * hop + np.arange(n)[None]
        window = np.hanning(n + 1)[:-1].astype(np.float32)
        in_ref = ops.take(ref, ops.convert_to_tensor(index.astype("int32")), axis=1) * window
        in_deg = ops.take(shifted, ops.convert_to_tensor(index.astype("int32")), axis=1) * window
        # Frames the crude shift pushed past either signal's end carry no evidence.
        first, last = index[None, :, 0], index[None, :, -1]
        valid = (first >= -ops.minimum(crude, 0)[:, None]) & (
            last < self.samples - ops.maximum(crude, 0)[:, None]
        )
        frame_xcorr = ops.abs(circular_correlation(in_ref, in_deg, n))
        peak = ops.max(frame_xcorr, axis=-1, keepdims=True)
        hits = ops.cast(frame_xcorr > 0.99 * peak, "float32") * ops.power(
            0.99 * peak + 1e-30, 0.125
        )
        histogram = ops.sum(hits * ops.cast(valid, "float32")[..., None], axis=1)
        kernel = np.zeros(n, np.float32)
        width = n // 64
        kernel[:width] = 1.0 - np.arange(width) / width
        kernel[n - width + 1 :] = kernel[1:width][::-1]
        smoothed = ops.abs(circular_convolution(histogram, kernel[None], n))
        fine_lags = np.concatenate([np.arange(n // 2), np.arange(-n // 2, 0)]).astype("int32")
        fine = ops.take(ops.convert_to_tensor(fine_lags), ops.argmax(smoothed, axis=-1))
        return ops.cast(crude, "int32") + fine

    def read_delayed(self, x, per_sample_delay):
        """``y[i] = x[clip(i + per_sample_delay[i])]``: each sample read at its own
        delay, the edge value repeated beyond the signal (as P.862's re-aligned copies)."""
        length = x.shape[-1]
        index = ops.clip(np.arange(length, dtype=np.int32)[None] + per_sample_delay, 0, length - 1)
        return ops.take_along_axis(x, index, axis=1)

    def shift(self, x, delay):
        """``y[i] = x[i + delay]`` per example, zero outside ``x``."""
        length = x.shape[-1]
        index = np.arange(length)[None] + ops.cast(delay, "int32")[:, None]
        inside = ops.cast((index >= 0) & (index < length), x.dtype)
        return ops.take_along_axis(x, ops.clip(index, 0, length - 1), axis=1) * inside

    # The whole model ---------------------------------------------------------------

    def disturbances(self, p_ref, audible_ref, p_deg, restart=None):
        """Per-frame symmetric and asymmetric disturbance ``[batch, frames]`` of the
        degraded Bark powers against the compensated reference's (before the
        loudness weighting): gain compensation, loudness, deadzone, L_2 / L_1 over bands."""
        scale = self.smoothed_scale((audible_ref + 5e3) / (self.audible(p_deg, 1.0) + 5e3), restart)
        p_deg = p_deg * scale[..., None]
        l_ref = self.loudness(p_ref)
        l_deg = self.loudness(p_deg)
        difference = l_deg - l_ref
        deadzone = 0.25 * ops.minimum(l_ref, l_deg)
        disturbance = ops.sign(difference) * ops.maximum(ops.abs(difference) - deadzone, 0.0)
        symmetric = self.pseudo_lp(disturbance, 2.0)
        asymmetry = ops.power((p_deg + 50.0) / (p_ref + 50.0), 1.2)
        asymmetry = ops.where(asymmetry < 3.0, 0.0, ops.minimum(asymmetry, 12.0))
        return symmetric, self.pseudo_lp(disturbance * asymmetry, 1.0)

    def bad_intervals(self, symmetric, stop_frame):
        """P.862's bad intervals ``[batch, frames]`` (0/1): frames whose disturbance
        exceeds 30, smeared over +-2 frames, in runs of at least 5 frames."""
        bad = ops.cast(ops.stop_gradient(symmetric) > BAD_FRAME_DISTURBANCE, "float32")
        bad = bad * ops.cast(np.arange(self.frames)[None] >= 1, "float32")
        padded = ops.pad(bad, ((0, 0), (2, 2)))
        frames = self.frames
        left = ops.max(ops.stack([padded[:, k : k + frames] for k in range(3)], axis=-1), axis=-1)
        right = ops.max(
            ops.stack([padded[:, 2 + k : 2 + k + frames] for k in range(3)], axis=-1), axis=-1
        )
        smeared = ops.minimum(left, right)
        inner = (np.arange(frames)[None] >= 2) & (np.arange(frames)[None] < stop_frame[:, None] - 2)
        smeared = smeared * ops.cast(inner, "float32")
        run = MIN_BAD_INTERVAL
        padded = ops.pad(smeared, ((0, 0), (0, run - 1)))
        starts_run = ops.min(
            ops.stack([padded[:, k : k + frames] for k in range(run)], axis=-1), axis=-1
        )
        padded = ops.pad(starts_run, ((0, 0), (run - 1, 0)))
        return ops.max(ops.stack([padded[:, k : k + frames] for k in range(run)], axis=-1), axis=-1)

    def realign_bad_intervals(self, ref, deg, bad):
        """The degraded signal with each bad interval re-aligned by its own delay, as
        P.862 does: interval k (frames a..b-1) covers samples a*hop .. b*hop + frame;
        its delay is the peak of the normalised cross-correlation of |ref| over those
        samples and |deg| over them +- 4 frames, searched within +-4 frames, and 0 when
        that correlation is below 0.5. The first ``MAX_BAD_INTERVALS`` intervals are
        re-aligned (a 4 s utterance has a handful), each correlation over at most the
        first 24 frames (0.77 s) of its interval, in a window of 32 frames; samples
        are read with the edge value repeated outside the signal. No gradient flows
        through the delays."""
        ref, deg_in = ops.stop_gradient(ref), deg
        deg = ops.stop_gradient(deg)
        length = ref.shape[-1]
        frames = self.frames
        previous = ops.pad(bad, ((0, 0), (1, 0)))[:, :frames]
        starts = bad * (1.0 - previous)
        label = ops.cumsum(starts, axis=1) * bad  # 1, 2, ... per interval, 0 outside
        intervals = ops.cast(ops.arange(1, MAX_BAD_INTERVALS + 1), "float32")
        member = ops.cast(
            ops.equal(label[:, None, :], intervals[None, :, None]), "float32"
        )  # [B, K, frames]
        present = ops.max(member, axis=-1)
        first = ops.cast(ops.argmax(member, axis=-1), "int32")
        stop = first + ops.cast(ops.sum(member, axis=-1), "int32")
        # Each interval's correlation in its own window: |ref| over the interval (its
        # first `reach` samples), |deg| from `search` before to `search` after it.
        search = 4 * self.frame_length
        size = 8 * search
        reach = size - 2 * search
        span = stop * self.hop + self.frame_length - first * self.hop  # [B, K] samples
        offsets = np.arange(size, dtype=np.int32)
        window_start = first[..., None] * self.hop
        ref_index = window_start + offsets[None, None, :reach]
        deg_index = window_start - search + offsets[None, None]
        inside_ref = ops.cast(
            (offsets[None, None, :reach] < span[..., None]) & (ref_index < length), "float32"
        )
        inside_deg = ops.cast(
            (offsets[None, None] < span[..., None] + 2 * search)
            & (deg_index >= 0)
            & (deg_index < length),
            "float32",
        )

        def gather(x, index):
            flat = ops.reshape(
                ops.clip(index, 0, length - 1), (-1, MAX_BAD_INTERVALS * index.shape[-1])
            )
            return ops.reshape(
                ops.take_along_axis(ops.abs(x), flat, axis=1), (-1,) + tuple(index.shape[1:])
            )

        x1 = gather(ref, ref_index) * inside_ref
        x2 = gather(deg, deg_index) * inside_deg
        x1 = x1 * present[..., None]
        xcorr = circular_correlation(x1, x2, size)[..., : 2 * search]  # lag = index - search
        lags = np.arange(-search, search, dtype=np.int32)
        window = ops.abs(xcorr)
        norm = ops.sqrt(ops.sum(ops.square(x1), axis=-1) * ops.sum(ops.square(x2), axis=-1))
        correlation = ops.max(window, axis=-1) / ops.maximum(norm, 1e-12)
        delay = ops.take(ops.convert_to_tensor(lags), ops.argmax(window, axis=-1))
        delay = ops.where(correlation >= 0.5, delay, 0)  # [B, K]
        sample = np.arange(length, dtype=np.int32)[None, None]
        begin, end = first[..., None] * self.hop, stop[..., None] * self.hop + self.frame_length
        covered = (
            ops.cast((sample >= begin) & (sample < end), "float32") * present[..., None]
        )  # [B, K, L]
        per_sample = ops.zeros_like(ref, dtype="int32")
        for k in range(MAX_BAD_INTERVALS):  # a later interval overwrites an overlap, as in P.862
            per_sample = ops.where(covered[:, k] > 0, delay[:, k : k + 1], per_sample)
        return self.read_delayed(deg_in, per_sample)

    # The whole model ---------------------------------------------------------------

    def utterance_alignment(self, ref, deg):
        """P.862's per-utterance delays (``align``, on the host, no gradient):
        ``(frame_delay [batch, frames], sample_delay [batch, samples + padding],
        skipped [batch, frames])``, ``skipped`` 1 on the frames P.862 leaves out
        where the delay falls back between utterances (``align.skipped_frames``).

        ``ref`` and ``deg``: the input-filtered signals (narrow band) or the
        level-aligned ones (wide band). The wide-band filter is applied here again,
        recursively in float64 as P.862's code applies it: the graph's float32 FFT
        convolution leaves rounding noise of about 1e-7 of the peak in near-silent
        passages, and the histogram of frame cross-correlation peaks, which weights
        every frame by its peak^0.125, counts that noise. On 36 reverberant pairs the
        utterances' confidences were up to 2e-3 off `pesq`'s with the graph's filter,
        2.4e-4 with this one (the splits depend on differences of that size)."""
        from scipy import signal

        frames, length, hop = self.frames, self.padded, self.hop
        buffer_pad = align.SEARCHBUFFER * self.downsample
        b0, b1, b2, a1, a2 = WB_INPUT_BIQUAD[self.sample_rate]

        def compute(ref_np, deg_np):
            if self.mode == "wb":
                taper = wideband_taper(self.samples)
                ref_np, deg_np = (
                    signal.lfilter(
                        [b0, b1, b2], [1.0, a1, a2], x[:, : self.samples] * taper, axis=-1
                    )
                    for x in (ref_np, deg_np)
                )
            frame_delay = np.zeros((len(ref_np), frames), np.int32)
            sample_delay = np.zeros((len(ref_np), length), np.int32)
            skipped = np.zeros((len(ref_np), frames), np.float32)
            frame_start = buffer_pad + np.arange(frames) * hop
            sample_at = buffer_pad + np.arange(length)
            # P.862's buffers: SEARCHBUFFER frames of zeros before the signal; after
            # it, as many frames of the filtered signal's continuation (the narrow-band
            # filter rings past the end, the padding of 320 ms covers the 300 ms; the
            # wide-band filter stops at the end: zeros).
            buffer_length = self.samples + 2 * buffer_pad

            def buffer(x):
                return np.pad(x, (buffer_pad, max(0, buffer_length - buffer_pad - len(x))))[
                    :buffer_length
                ]

            for b in range(len(ref_np)):
                starts, ends, delays = align.utterance_delays(
                    buffer(ref_np[b]), buffer(deg_np[b]), self.sample_rate
                )
                skipped[b] = align.skipped_frames(starts, ends, delays, self.downsample, frames)
                # Each position takes the last utterance starting at or before it.
                bounds, delays = np.asarray(starts) * self.downsample, np.asarray(delays)
                frame_delay[b] = delays[
                    np.maximum(np.searchsorted(bounds, frame_start, side="right") - 1, 0)
                ]
                sample_delay[b] = delays[
                    np.maximum(np.searchsorted(bounds, sample_at, side="right") - 1, 0)
                ]
            return frame_delay, sample_delay, skipped

        return host_call(
            compute,
            ref,
            deg,
            result_shape=((None, frames), (None, length), (None, frames)),
            result_dtype=("int32", "int32", "float32"),
        )

    def raw_and_mapped(self, clean, degraded, delay_search=True):
        """(raw P.862 score, MOS-LQO), each ``[batch]``. ``delay_search``: True (one
        delay per example, in the graph), "utterance" (P.862's per-utterance delays,
        on the host) or False (aligned as given)."""
        ref_level, deg_level = self.level_align(clean), self.level_align(degraded)
        ref, deg = self.input_filter(ref_level), self.input_filter(deg_level)
        start_frame, stop_frame = self.speech_range(ref)
        p_ref = self.bark_power(ref)
        if delay_search == "utterance":
            # Wide band: the host applies the input filter itself (see utterance_alignment).
            aligned = (ref_level, deg_level) if self.mode == "wb" else (ref, deg)
            frame_delay, sample_delay, skipped = self.utterance_alignment(*aligned)
            p_deg = self.bark_power(deg, frame_delay)
            # The bad intervals are searched in the degraded signal read at its
            # utterances' delays, the edge value repeated beyond it (P.862's tweaked_deg).
            deg = self.read_delayed(deg, sample_delay)
        else:
            if delay_search:
                deg = self.shift(deg, self.estimate_delay(ref, deg))
            p_deg = self.bark_power(deg)
        frame = np.arange(self.frames)[None]
        analysed = ops.cast(frame <= stop_frame[:, None], p_ref.dtype)

        speech = ops.cast(self.audible(p_ref, 100.0) >= 1e7, p_ref.dtype) * analysed
        strong = 100.0 * self.threshold

        def time_average(p):
            kept = p * ops.cast(p > strong, p.dtype) * speech[..., None]
            return ops.sum(kept, axis=1) / self.total_frames

        ratio = (time_average(p_deg) + 1000.0) / (time_average(p_ref) + 1000.0)
        p_ref = p_ref * ops.clip(ratio, 0.01, 100.0)[:, None, :]
        audible_ref = self.audible(p_ref, 1.0)
        symmetric, asymmetric = self.disturbances(p_ref, audible_ref, p_deg)
        if delay_search == "utterance":
            # Frames where the delay falls back between utterances count as
            # undisturbed (P.862 skips them; they cannot become bad intervals),
            # except the last analysed frame, which P.862's loop does not reach.
            kept = 1.0 - skipped * ops.cast(frame < stop_frame[:, None], skipped.dtype)
            symmetric, asymmetric = symmetric * kept, asymmetric * kept
        if delay_search:
            # Bad intervals are scored again with the degraded signal re-aligned, and
            # each frame keeps the smaller disturbance.
            bad = self.bad_intervals(symmetric, stop_frame)
            realigned = self.realign_bad_intervals(ref, deg, bad)
            symmetric_2, asymmetric_2 = self.disturbances(
                p_ref, audible_ref, self.bark_power(realigned), bad
            )
            symmetric = ops.where(bad > 0, ops.minimum(symmetric, symmetric_2), symmetric)
            asymmetric = ops.where(bad > 0, ops.minimum(asymmetric, asymmetric_2), asymmetric)

        loudness_weight = ops.power((audible_ref + 1e5) / 1e7, 0.04)
        symmetric = ops.minimum(symmetric / loudness_weight, 45.0)
        asymmetric = ops.minimum(asymmetric / loudness_weight, 45.0)
        d_indicator = self.aggregate(symmetric, start_frame, stop_frame)
        a_indicator = self.aggregate(asymmetric, start_frame, stop_frame)
        raw = BEST_RAW_SCORE - 0.1 * d_indicator - 0.0309 * a_indicator
        return raw, mos_lqo(raw, self.mode)


_MODELS = {}


def p862_model(sample_rate, mode, samples):
    key = (int(sample_rate), mode, int(samples))
    if key not in _MODELS:
        _MODELS[key] = P862Model(*key)
    return _MODELS[key]


def mos(clean, degraded, sample_rate=16000, mode="wb", delay_search=True):
    """Predicted MOS-LQO ``[batch]`` of ``degraded`` against ``clean``, both float
    ``[batch, samples]`` at ``sample_rate`` (8000 or 16000; "wb" needs 16000).
    ``delay_search``: True (one delay per example, searched in the graph),
    "utterance" (P.862's per-utterance alignment, computed on the host) or False
    (the two are aligned sample for sample)."""
    check_delay_search(delay_search)
    clean = ops.convert_to_tensor(clean, "float32")
    degraded = ops.convert_to_tensor(degraded, "float32")
    if len(clean.shape) != 2 or tuple(clean.shape) != tuple(degraded.shape):
        raise ValueError(
            f"`clean` and `degraded` must be waveform batches [batch, samples] of one shape. "
            f"Received {tuple(clean.shape)} and {tuple(degraded.shape)}"
        )
    if clean.shape[-1] is None:
        raise ValueError("the number of samples must be known when the graph is built")
    return p862_model(sample_rate, mode, clean.shape[-1]).raw_and_mapped(
        clean, degraded, delay_search
    )[1]
