"""P.862's utterance alignment, in numpy: the delay of every utterance of a pair.

P.862 (section 10.2 of the Recommendation) does not align a degraded signal by one
delay: it finds the utterances of the reference (a voice-activity envelope with
short bursts dropped and short gaps joined), estimates each one's delay (cross-
correlation of the log envelopes, then the histogram of frame cross-correlation
peaks), and tries to split each long utterance in two where two delays explain it
with more confidence. The scores of reverberant speech depend on those delays by
several hundredths. Delays carry no gradient, so this runs on the host, once per
pair, as :func:`utterance_delays`; the differentiable part of the model
(``spectral_restore.p862.model``) then reads each frame at its utterance's delay.

Signals here are P.862's working buffers: the level-aligned, filtered signal with
75 envelope frames (``SEARCHBUFFER``) of zeros before and after it.
"""

import numpy as np

SEARCHBUFFER = 75
MIN_SPEECH_FRAMES = 4  # MINSPEECHLGTH: shorter bursts are not speech
JOIN_SPEECH_FRAMES = 50  # JOINSPEECHLGTH: shorter gaps are joined
MIN_UTTERANCE_FRAMES = 50  # MINUTTLENGTH
SPLIT_MIN_FRAMES = 200  # utterances at least this long are tried for a split
MAX_UTTERANCES = 50
MAX_BREAKPOINTS = 40


# P.862's alignment filter (the reference code's InIIR_Hsos tables): second-order
# sections (b0, b1, b2, a1, a2), applied after the DC block to the model's signal.
ALIGN_SOS = {
    8000: (
        (0.885535424, -0.885535424, 0.0, -0.771070709, 0.0),
        (0.895092588, 1.292907193, 0.449260174, 1.268869037, 0.442025372),
        (4.049527940, -7.865190042, 3.815662102, -1.746859852, 0.786305963),
        (0.500002353, -0.500002353, 0.0, 0.0, 0.0),
        (0.565002834, -0.241585934, -0.306009671, 0.259688659, 0.249979657),
        (2.115237288, 0.919935084, 1.141240051, -1.587313419, 0.665935315),
        (0.912224584, -0.224397719, -0.641121413, -0.246029464, -0.556720590),
        (0.444617727, -0.307589321, 0.141638062, -0.996391149, 0.502251622),
    ),
    16000: (
        (0.325631521, -0.086782860, -0.238848661, -1.079416490, 0.434583902),
        (0.403961804, -0.556985881, 0.153024077, -0.415115835, 0.696590244),
        (4.736162769, 3.287251046, 1.753289019, -1.859599046, 0.876284034),
        (0.365373469, 0.0, 0.0, -0.634626531, 0.0),
        (0.884811506, 0.0, 0.0, -0.256725271, 0.141536777),
        (0.723593055, -1.447186099, 0.723593044, -1.129587469, 0.657232737),
        (1.644910855, -1.817280902, 1.249658063, -1.778403899, 0.801724355),
        (0.633692689, -0.284644314, -0.319789663, 0.0, 0.0),
        (1.032763031, 0.268428979, 0.602913323, 0.0, 0.0),
        (1.001616361, -0.823749013, 0.439731942, -0.885778255, 0.0),
        (0.752472096, -0.375388990, 0.188977609, -0.077258216, 0.247230734),
        (1.023700575, 0.001661628, 0.521284240, -0.183867259, 0.354324187),
    ),
}


def align_filter(buffer, sample_rate, tail):
    """P.862's ``input_filter`` for alignment: DC block (mean of the signal part over
    the whole buffer length, removed from the signal part; a one-envelope-frame
    fade at each end) and the alignment IIR over the buffer plus ``tail`` zeros."""
    from scipy import signal

    downsample = 32 if sample_rate == 8000 else 64
    data = np.concatenate([np.asarray(buffer, np.float64), np.zeros(tail)])
    total = len(buffer)
    offset = SEARCHBUFFER * downsample
    inner = slice(offset, total - offset)
    data[inner] -= data[inner].sum() / total
    fade = (0.5 + np.arange(downsample)) / downsample
    data[offset : offset + downsample] *= fade
    data[total - offset - downsample : total - offset] *= fade[::-1]
    sos = np.array([[b0, b1, b2, 1.0, a1, a2] for b0, b1, b2, a1, a2 in ALIGN_SOS[sample_rate]])
    return signal.sosfilt(sos, data)[:total]


def _trunc_div(a, b):
    """C's integer division (toward zero), which the Recommendation's code uses."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def voice_activity(data, downsample):
    """P.862's ``apply_VAD``: (envelope ``VAD`` >= 0, ``logVAD``) per ``downsample`` samples."""
    n = len(data) // downsample
    vad = np.mean(np.square(data[: n * downsample].reshape(n, downsample)), axis=1)
    threshold = vad.mean()
    level_min = vad.max()
    level_min = level_min * 1e-4 if level_min > 0 else 1.0
    vad = np.maximum(vad, level_min)
    for _ in range(12):
        below = vad <= threshold
        noise, spread = 0.0, 0.0
        if below.any():
            noise = vad[below].mean()
            spread = np.sqrt(np.mean(np.square(vad[below] - noise)))
        threshold = 1.001 * (noise + 2.0 * spread)
    above = vad > threshold
    level_signal = vad[above].mean() if above.any() else 0.0
    if not above.any():
        threshold = -1.0
    level_noise = vad[~above].mean() if (~above).any() else 1.0
    vad = np.where(vad <= threshold, -vad, vad)
    vad[0] = vad[-1] = -level_min

    def runs():
        start = 0
        for count in range(1, n):
            if vad[count] > 0 >= vad[count - 1]:
                start = count
            if vad[count] <= 0 < vad[count - 1]:
                yield start, count

    for start, finish in list(runs()):
        if finish - start <= MIN_SPEECH_FRAMES:
            vad[start:finish] = -vad[start:finish]
    if level_signal >= level_noise * 1000.0:
        start = 0
        for count in range(1, n):
            if vad[count] > 0 >= vad[count - 1]:
                start = count
            if vad[count] <= 0 < vad[count - 1]:
                if vad[start:count].sum() < 3.0 * threshold * (count - start):
                    vad[start:count] = -vad[start:count]
    finish = 0
    for count in range(1, n):
        if vad[count] > 0 >= vad[count - 1]:
            if finish > 0 and count - finish <= JOIN_SPEECH_FRAMES:
                vad[finish:count] = level_min
        if vad[count] <= 0 < vad[count - 1]:
            finish = count
    if not any(vad[c] > 0 >= vad[c - 1] for c in range(1, n)):
        vad = np.abs(vad)
        vad[0] = vad[-1] = -level_min
    count = 3
    while count < n - 2:
        if vad[count] > 0 and vad[count - 2] <= 0:
            vad[count - 2] = vad[count] * 0.1
            vad[count - 1] = vad[count] * 0.3
            count += 1
        if vad[count] <= 0 < vad[count - 1]:
            vad[count] = vad[count - 1] * 0.3
            vad[count + 1] = vad[count - 1] * 0.1
            count += 3
        count += 1
    vad = np.maximum(vad, 0.0)
    if threshold <= 0:
        threshold = level_min
    log_vad = np.where(vad <= threshold, 0.0, np.log(np.maximum(vad, 1e-300) / threshold))
    return vad, log_vad


def _crude_lag(ref_log, deg_log, start_ref, start_deg, n_ref, n_deg):
    """Lag (envelope frames) of the peak of the envelopes' cross-correlation."""
    if n_ref <= 1 or n_deg <= 1:
        return 0
    y = np.correlate(
        deg_log[start_deg : start_deg + n_deg], ref_log[start_ref : start_ref + n_ref], mode="full"
    )
    best = int(np.argmax(y)) if y.max() > 0 else n_ref - 1
    return best - n_ref + 1


class _Aligner:
    def __init__(self, ref, deg, downsample, fft_length):
        self.ref, self.deg = np.asarray(ref, np.float64), np.asarray(deg, np.float64)
        self.downsample, self.n = downsample, fft_length
        self.ref_vad, self.ref_log = voice_activity(self.ref, downsample)
        _, self.deg_log = voice_activity(self.deg, downsample)
        self.window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(fft_length) / fft_length))
        self.kernel = fft_length // 64

    def frame_peaks(self, start_ref, start_deg):
        """|xcorr| of one Hann frame pair; the bins above 0.99 of its peak and that level."""
        n = self.n
        a = np.fft.rfft(self.ref[start_ref : start_ref + n] * self.window)
        b = np.fft.rfft(self.deg[start_deg : start_deg + n] * self.window)
        x = np.abs(np.fft.irfft(np.conj(a) * b, n))
        level = 0.99 * x.max()
        return np.nonzero(x > level)[0], level

    def crude(self, search_start, search_end, estimate):
        """``crude_align`` of one search window around ``estimate`` (samples)."""
        d = self.downsample
        start_ref = search_start
        start_deg = start_ref + _trunc_div(estimate, d)
        if start_deg < 0:
            start_ref, start_deg = -_trunc_div(estimate, d), 0
        n_ref = search_end - start_ref
        n_deg = n_ref
        if start_deg + n_deg > len(self.deg) // d:
            n_deg = len(self.deg) // d - start_deg
        return (
            _crude_lag(self.ref_log, self.deg_log, start_ref, start_deg, n_ref, n_deg) * d
            + estimate
        )

    def fine(self, search_start, search_end, estimate):
        """``time_align``: (delay, confidence) from the smoothed peak histogram."""
        n, d = self.n, self.downsample
        histogram = np.zeros(n)
        start_ref = search_start * d
        start_deg = start_ref + estimate
        if start_deg < 0:
            start_ref, start_deg = -estimate, 0
        while start_deg + n <= len(self.deg) and start_ref + n <= search_end * d:
            bins, level = self.frame_peaks(start_ref, start_deg)
            histogram[bins] += level**0.125
            start_ref += n // 4
            start_deg += n // 4
        total = histogram.sum()
        triangle = np.zeros(n)
        triangle[0] = 1.0
        steps = np.arange(1, self.kernel)
        triangle[steps] = triangle[n - steps] = 1.0 - steps / self.kernel
        smoothed = np.abs(np.fft.irfft(np.fft.rfft(histogram) * np.fft.rfft(triangle), n))
        smoothed = smoothed / total if total > 0 else np.zeros(n)
        best = int(np.argmax(smoothed)) if smoothed.max() > 0 else 0
        return estimate + (best - n if best >= n // 2 else best), float(smoothed.max())

    def _spread(self, histogram, bins, level):
        """split_align's histogram update: a triangle around each peak bin."""
        weight = level**0.125 / self.kernel
        offsets = np.arange(1 - self.kernel, self.kernel)
        for b in bins:
            np.add.at(histogram, (b + offsets) % self.n, weight * (self.kernel - np.abs(offsets)))
        return weight * self.kernel * len(bins)

    @staticmethod
    def _peak(histogram, total, n):
        best = int(np.argmax(histogram)) if histogram.max() > 0 else 0
        return (best - n if best >= n // 2 else best), (
            histogram.max() / total if total > 0 else 0.0
        )

    def _side_delays(self, order, estimates, confidences, first_frames, step, inside):
        """split_align's delays of one side of every breakpoint (-2 = still to find):
        visiting breakpoints in ``order``, a histogram of frame peaks starts at
        ``first_frames(estimate)`` and moves by ``step`` samples while ``inside``;
        later breakpoints with the same crude estimate continue the same histogram."""
        delays, confidences = [0] * len(estimates), list(confidences)
        for position, bp in enumerate(order):
            if confidences[bp] > -2.0:
                continue
            est = estimates[bp]
            histogram, total = np.zeros(self.n), 0.0
            ref_at, deg_at = first_frames(est)
            for later in order[position:]:
                if later != bp and not (estimates[later] == est and confidences[later] <= -2.0):
                    continue
                while inside(ref_at, deg_at, later):
                    total += self._spread(histogram, *self.frame_peaks(ref_at, deg_at))
                    ref_at, deg_at = ref_at + step, deg_at + step
                offset, confidence = self._peak(histogram, total, self.n)
                delays[later], confidences[later] = est + offset, confidence
        return delays, confidences

    def split(self, start, speech_start, speech_end, end, estimate, confidence):
        """``split_align``: the best breakpoint and the two halves' delays, or None."""
        n, d = self.n, self.downsample
        length = speech_end - speech_start
        delta = n // (4 * d)
        step = int((0.801 * length + 40 * delta - 1) / (40 * delta)) * delta
        pad = max(length // 10, 75)
        breakpoints = [speech_start + pad]
        while True:
            breakpoints.append(breakpoints[-1] + step)
            if not (breakpoints[-1] <= speech_end - pad and len(breakpoints) - 1 < MAX_BREAKPOINTS):
                break
        count = len(breakpoints) - 1
        if count <= 0:
            return None
        breakpoints = breakpoints[: count + 1]
        est1 = [self.crude(start, bp, estimate) for bp in breakpoints[:count]]
        est2 = [self.crude(bp, end, estimate) for bp in breakpoints[:count]]

        def from_start(est):
            start_ref = start * d
            return (-est, 0) if start_ref + est < 0 else (start_ref, start_ref + est)

        def from_end(est):
            start_ref = end * d - n
            if start_ref + est + n > len(self.deg):
                return len(self.deg) - n - est, len(self.deg) - n
            return start_ref, start_ref + est

        delay1, conf1 = self._side_delays(
            list(range(count)),
            est1,
            [-2.0] * count,
            from_start,
            n // 4,
            lambda ref_at, deg_at, bp: (
                deg_at + n <= len(self.deg) and ref_at + n <= breakpoints[bp] * d
            ),
        )
        delay2, conf2 = self._side_delays(
            list(range(count - 1, -1, -1)),
            est2,
            [-2.0 if c > confidence else 0.0 for c in conf1],
            from_end,
            -(n // 4),
            lambda ref_at, deg_at, bp: deg_at >= 0 and ref_at >= breakpoints[bp] * d,
        )

        best = None
        best_sum = 0.0
        for i in range(count):
            if (
                abs(delay2[i] - delay1[i]) >= d
                and conf1[i] + conf2[i] > best_sum
                and conf1[i] > confidence
                and conf2[i] > confidence
            ):
                best_sum = conf1[i] + conf2[i]
                best = (est1[i], delay1[i], conf1[i], est2[i], delay2[i], conf2[i], breakpoints[i])
        return best


def utterance_delays(ref, deg, sample_rate):
    """P.862's utterances of one pair: ``(starts, ends, delays)``.

    ``ref`` and ``deg``: P.862's working buffers (see the module docstring), equal
    length. ``starts`` and ``ends``: the first and the end envelope frame
    (``downsample`` samples each, buffer coordinates) of each utterance, starts
    ascending (neighbours may overlap where a split moved a boundary); ``delays``:
    samples by which the degraded signal lags in each. A frame starting at buffer
    sample ``s`` takes the delay of the last utterance starting at or before
    ``s // downsample`` (the first utterance's before it). With no utterance found,
    one utterance with the whole-signal delay.
    """
    downsample = 32 if sample_rate == 8000 else 64
    fft_length = 512 if sample_rate == 8000 else 1024
    tail = 320 * sample_rate // 1000  # DATAPADDING_MSECS after the buffer
    al = _Aligner(
        align_filter(ref, sample_rate, tail),
        align_filter(deg, sample_rate, tail),
        downsample,
        fft_length,
    )
    frames = len(al.ref) // downsample
    crude = _crude_lag(al.ref_log, al.deg_log, 0, 0, frames, len(al.deg) // downsample) * downsample

    # id_searchwindows
    low = MIN_UTTERANCE_FRAMES - _trunc_div(crude, downsample)
    high = _trunc_div(len(al.deg) - crude, downsample) - MIN_UTTERANCE_FRAMES
    search, speech = [], []
    active, begin = False, 0
    for count in range(frames):
        value = al.ref_vad[count]
        if value > 0 and not active:
            active, begin = True, count
        if (value == 0 or count == frames - 1) and active:
            active = False
            if count - begin >= MIN_UTTERANCE_FRAMES and begin < high and count > low:
                search.append([max(begin - SEARCHBUFFER, 0), min(count + SEARCHBUFFER, frames - 1)])
                speech.append([begin, count])
    if not speech:
        return [SEARCHBUFFER], [frames - SEARCHBUFFER], [crude]

    estimates, delays, confidences = [], [], []
    for start, end in search:
        estimate = al.crude(start, end, crude)
        delay, confidence = al.fine(start, end, estimate)
        estimates.append(estimate)
        delays.append(delay)
        confidences.append(confidence)

    # id_utterances
    starts = [s for s, _ in speech]
    ends = [e for _, e in speech]
    starts[0] = SEARCHBUFFER
    ends[-1] = frames - SEARCHBUFFER
    for u in range(1, len(starts)):
        middle = (starts[u] + ends[u - 1]) // 2
        starts[u] = ends[u - 1] = middle
    if starts[0] * downsample + delays[0] < SEARCHBUFFER * downsample:
        starts[0] = SEARCHBUFFER + _trunc_div(downsample - 1 - delays[0], downsample)
    if ends[-1] * downsample + delays[-1] > len(al.deg) - SEARCHBUFFER * downsample:
        ends[-1] = _trunc_div(len(al.deg) - delays[-1], downsample) - SEARCHBUFFER
    for u in range(1, len(starts)):
        this_start = starts[u] * downsample + delays[u]
        last_end = ends[u - 1] * downsample + delays[u - 1]
        if this_start < last_end:
            middle = _trunc_div(this_start + last_end, 2)
            starts[u] = _trunc_div(downsample - 1 + middle - delays[u], downsample)
            ends[u - 1] = _trunc_div(middle - delays[u - 1], downsample)

    # utterance_split
    u = 0
    while u < len(starts) and len(starts) < MAX_UTTERANCES:
        start, end = starts[u], ends[u]
        speech_start = start
        while speech_start < end and al.ref_vad[speech_start] <= 0:
            speech_start += 1
        speech_end = end
        while speech_end > start and al.ref_vad[speech_end] <= 0:
            speech_end -= 1
        speech_end += 1
        if speech_end - speech_start < SPLIT_MIN_FRAMES:
            u += 1
            continue
        found = al.split(start, speech_start, speech_end, end, estimates[u], confidences[u])
        if found is None or not (found[2] > confidences[u] and found[5] > confidences[u]):
            u += 1
            continue
        est1, d1, c1, est2, d2, c2, breakpoint = found
        estimates[u : u + 1] = [est1, est2]
        delays[u : u + 1] = [d1, d2]
        confidences[u : u + 1] = [c1, c2]
        if d2 < d1:
            first, second = (start, breakpoint), (breakpoint, end)
        else:
            shift = _trunc_div(d2 - d1, 2 * downsample)
            first, second = (start, breakpoint + shift), (breakpoint - shift, end)
        starts[u : u + 1] = [first[0], second[0]]
        ends[u : u + 1] = [first[1], second[1]]
        if (starts[u] - SEARCHBUFFER) * downsample + d1 < 0:
            starts[u] = SEARCHBUFFER + _trunc_div(downsample - 1 - d1, downsample)
        if ends[u + 1] * downsample + d2 > len(al.deg) - SEARCHBUFFER * downsample:
            ends[u + 1] = _trunc_div(len(al.deg) - d2, downsample) - SEARCHBUFFER
    return starts, ends, delays


def skipped_frames(starts, ends, delays, downsample, frames):
    """The model frames P.862 leaves out (disturbance 0) where the delay falls back.

    Where utterance ``u`` starts with a delay more than half a frame shorter than
    the previous one's, the degraded signal around the boundary would be heard
    twice; P.862 (``pesq_psychoacoustic_model`` in the Recommendation's code)
    zeroes the disturbance of the frames from where either side of the boundary
    begins to be read (the earlier of utterance ``u``'s first degraded sample and
    utterance ``u - 1``'s last) to the boundary plus the jump, one frame past.
    Frames are ``4 * downsample`` samples apart, frame 0 at buffer sample
    ``SEARCHBUFFER * downsample``; divisions truncate toward zero as in C.

    Args:
        starts, ends, delays: sequences. :func:`utterance_delays`'s result.
        downsample: int. Envelope frame length in samples (32 at 8 kHz, 64 at 16 kHz).
        frames: int. Number of model frames.

    Returns:
        bool array ``[frames]``, True where the frame is left out.
    """
    hop = 4 * downsample
    skipped = np.zeros(frames, bool)
    for u in range(1, len(starts)):
        jump = delays[u] - delays[u - 1]
        if jump >= -hop:
            continue
        first = _trunc_div((starts[u] - SEARCHBUFFER) * downsample + delays[u], hop)
        first = max(
            min(first, _trunc_div((ends[u - 1] - SEARCHBUFFER) * downsample + delays[u - 1], hop)),
            0,
        )
        last = _trunc_div((starts[u] - SEARCHBUFFER) * downsample - jump, hop) + 1
        skipped[first : max(first, min(last + 1, frames))] = True
    return skipped


__all__ = ["skipped_frames", "utterance_delays", "voice_activity"]
