"""The composite quality measures CSIG, CBAK and COVL and the measures they combine.

Hu and Loizou fitted linear regressions from objective measures to listeners'
ratings of enhanced speech (signal distortion, background intrusiveness, overall
quality, on the 1-5 scale of ITU-T P.835):

    CSIG = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS
    CBAK = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR
    COVL = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS

Y. Hu and P. C. Loizou, "Evaluation of objective quality measures for speech
enhancement", IEEE Trans. Audio, Speech, and Language Processing 16(1):229-238,
2008. Details follow the authors' ``composite.m`` (Loizou, "Speech Enhancement:
Theory and Practice", CRC Press): 30 ms Hann frames (``0.5 (1 - cos(2 pi n /
(N + 1)))``, n = 1..N) at a quarter-frame hop, ``floor(L / hop - N / hop)`` frames,
machine epsilon added to both signals first; LLR and WSS average the 95 % lowest
frame values, segSNR every frame clipped to [-10, 35] dB. PESQ is what speech
enhancement papers use through the Python ports of ``composite.m``: P.862.2
wide-band MOS-LQO at 16 kHz (the ``pesq`` package), and at 8 kHz the raw P.862
score that ``composite.m`` was fitted on (the inverse P.862.1 mapping of the
narrow-band MOS-LQO). Other rates are resampled to 16 kHz. The three scores are
limited to [1, 5], as those ports do (``composite.m`` itself does not limit them).

Everything runs on whole utterances of any length, a block of frames at a time.
"""

import math

import numpy as np

from spectral_restore.audio_io import resample_numpy
from spectral_restore.p862.mapping import raw_score

FRAME_SECONDS = 0.030
TRIMMED_FRACTION = 0.95
SEGSNR_LIMITS_DB = (-10.0, 35.0)
# 25 critical bands (centre and bandwidth in Hz) of Klatt's weighted spectral slope
# as composite.m tabulates them; they span 0-4 kHz at every sample rate.
CRITICAL_BAND_CENTERS = np.array(
    [
        50.0,
        120.0,
        190.0,
        260.0,
        330.0,
        400.0,
        470.0,
        540.0,
        617.372,
        703.378,
        798.717,
        904.128,
        1020.38,
        1148.30,
        1288.72,
        1442.54,
        1610.70,
        1794.16,
        1993.93,
        2211.08,
        2446.71,
        2701.97,
        2978.04,
        3276.17,
        3597.63,
    ]
)
CRITICAL_BAND_WIDTHS = np.array(
    [
        70.0,
        70.0,
        70.0,
        70.0,
        70.0,
        70.0,
        70.0,
        77.3724,
        86.0056,
        95.3398,
        105.411,
        116.256,
        127.914,
        140.423,
        153.823,
        168.154,
        183.457,
        199.776,
        217.153,
        235.631,
        255.255,
        276.072,
        298.126,
        321.465,
        346.136,
    ]
)
# Klatt (ICASSP 1982, p. 1280): weight of a band against the frame's largest and the
# nearest local spectral peak.
WSS_K_MAX = 20.0
WSS_K_LOCAL_MAX = 1.0
WSS_FLOOR = 1e-10
# (constant, {measure: coefficient}) of Hu and Loizou's regressions.
COMPOSITE_REGRESSIONS = {
    "csig": (3.093, {"llr": -1.029, "pesq": 0.603, "wss": -0.009}),
    "cbak": (1.634, {"pesq": 0.478, "wss": -0.007, "segsnr": 0.063}),
    "covl": (1.594, {"pesq": 0.805, "llr": -0.512, "wss": -0.007}),
}
COMPOSITE_LIMITS = (1.0, 5.0)
BLOCK_FRAMES = 2048
_EPS = np.finfo(np.float64).eps


def _round_half_up(x):
    """MATLAB's ``round`` for positive numbers (Python's rounds halves to even)."""
    return int(math.floor(x + 0.5))


def _frame_plan(length, sample_rate):
    """Frame length, hop and count of composite.m: N = round(30 ms), hop = floor(N / 4),
    ``floor(L / hop - N / hop)`` frames (which leaves out the last full frame)."""
    frame = _round_half_up(FRAME_SECONDS * sample_rate)
    hop = frame // 4
    return frame, hop, max(0, (length - frame) // hop)


def lpc_order(sample_rate):
    """LPC analysis order of the LLR: 10 below 10 kHz, else 16 (composite.m)."""
    return 10 if sample_rate < 10000 else 16


def composite_rate(sample_rate):
    """The rate the composite measures are computed at: 8 kHz stays, all else 16 kHz."""
    return 8000 if int(sample_rate) == 8000 else 16000


def _check_pair(clean, processed, sample_rate):
    clean = np.asarray(clean, dtype=np.float64)
    processed = np.asarray(processed, dtype=np.float64)
    if clean.ndim != 1 or processed.ndim != 1:
        raise ValueError(
            f"`clean` and `processed` must be 1-D waveforms; received shapes {clean.shape} and {processed.shape}"
        )
    if clean.shape != processed.shape:
        raise ValueError(
            f"`clean` ({clean.size} samples) and `processed` ({processed.size} samples) differ in length"
        )
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
        raise ValueError(f"`sample_rate` must be an int >= 1000 Hz. Received: {sample_rate!r}")
    # composite.m adds machine epsilon to both signals, so digital silence still has
    # a (tiny) autocorrelation and the LPC recursion stays finite.
    return clean + _EPS, processed + _EPS


def _frame_blocks(x, frame, hop, count):
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, frame + 1) / (frame + 1)))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop][:count]
    for first in range(0, count, BLOCK_FRAMES):
        yield window * frames[first : first + BLOCK_FRAMES]


def _segsnr_frames(clean, processed):
    signal = np.sum(clean**2, axis=1)
    noise = np.sum((clean - processed) ** 2, axis=1)
    return np.clip(10 * np.log10(signal / (noise + _EPS) + _EPS), *SEGSNR_LIMITS_DB)


def _autocorrelation_lpc(frames, order):
    """Autocorrelation lags 0..order and the prediction polynomial ``[1, -a]`` by
    the Levinson-Durbin recursion, in composite.m's ``lpcoeff`` order of operations."""
    length = frames.shape[1]
    lags = np.stack(
        [np.einsum("ij,ij->i", frames[:, : length - k], frames[:, k:]) for k in range(order + 1)],
        axis=1,
    )
    a = np.ones((len(frames), order))
    error = lags[:, 0].copy()
    for i in range(order):
        past = a[:, :i].copy()
        reflection = (lags[:, i + 1] - np.sum(past * lags[:, i:0:-1], axis=1)) / error
        a[:, i] = reflection
        a[:, :i] = past - reflection[:, None] * past[:, ::-1]
        error = (1 - reflection**2) * error
    return lags, np.concatenate([np.ones((len(frames), 1)), -a], axis=1)


def _llr_frames(clean, processed, order):
    """``log(a_p' R_c a_p / a_c' R_c a_c)``: the clean frame's prediction error with
    the processed frame's predictor over its own. Frames where the ratio is not a
    positive finite number (numerically degenerate predictors) count as infinitely
    distorted, so the 95 % trimming drops them first."""
    lags, clean_poly = _autocorrelation_lpc(clean, order)
    _, processed_poly = _autocorrelation_lpc(processed, order)
    index = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toeplitz = lags[:, index]
    numerator = np.einsum("bi,bij,bj->b", processed_poly, toeplitz, processed_poly)
    denominator = np.einsum("bi,bij,bj->b", clean_poly, toeplitz, clean_poly)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / denominator
    valid = np.isfinite(ratio) & (ratio > 0)
    return np.where(valid, np.log(np.where(valid, ratio, 1.0)), np.inf)


def _critical_band_filters(sample_rate, fft_length):
    """Gaussian critical-band filters on FFT bins 0..fft_length/2 - 1, equal in area,
    zero below their -30 dB point (composite.m's ``crit_filter``)."""
    half = fft_length // 2
    nyquist = sample_rate / 2
    centre = np.floor(CRITICAL_BAND_CENTERS / nyquist * half)
    width = CRITICAL_BAND_WIDTHS / nyquist * half
    norm = np.log(CRITICAL_BAND_WIDTHS[0]) - np.log(CRITICAL_BAND_WIDTHS)
    bins = np.arange(half)
    filters = np.exp(
        -11 * ((bins[None, :] - centre[:, None]) / width[:, None]) ** 2 + norm[:, None]
    )
    return filters * (filters > np.exp(-30.0 / (2.0 * 2.303)))


def _nearest_peaks(level, slope):
    """Level of the spectral peak nearest each band, searched upward where the slope
    rises and downward where it falls. As composite.m (and every port of it) does,
    an upward search stops one band short of the peak."""
    bands = slope.shape[1]
    rising_end = np.empty(slope.shape, dtype=np.int64)
    falling_end = np.empty(slope.shape, dtype=np.int64)
    following = np.full(len(slope), bands)
    for band in reversed(range(bands)):
        following = np.where(slope[:, band] <= 0, band, following)
        rising_end[:, band] = following
    preceding = np.full(len(slope), -1)
    for band in range(bands):
        preceding = np.where(slope[:, band] > 0, band, preceding)
        falling_end[:, band] = preceding
    index = np.where(slope > 0, rising_end - 1, falling_end + 1)
    return np.take_along_axis(level, index, axis=1)


def _wss_frames(clean, processed, filters, fft_length):
    """Klatt's weighted spectral slope distance per frame, normalised by the weights."""
    half = fft_length // 2

    def levels(frames):
        power = np.abs(np.fft.rfft(frames, n=fft_length, axis=1)[:, :half]) ** 2
        return 10 * np.log10(np.maximum(power @ filters.T, WSS_FLOOR))

    def weights(level, slope):
        peaks = _nearest_peaks(level, slope)
        below = level[:, :-1]
        return (
            WSS_K_MAX
            / (WSS_K_MAX + level.max(axis=1, keepdims=True) - below)
            * WSS_K_LOCAL_MAX
            / (WSS_K_LOCAL_MAX + peaks - below)
        )

    clean_level, processed_level = levels(clean), levels(processed)
    clean_slope, processed_slope = np.diff(clean_level, axis=1), np.diff(processed_level, axis=1)
    weight = (weights(clean_level, clean_slope) + weights(processed_level, processed_slope)) / 2
    return np.sum(weight * (clean_slope - processed_slope) ** 2, axis=1) / np.sum(weight, axis=1)


def _trimmed_mean(values):
    """Mean of the lowest 95 % of the frame values (composite.m's trimming)."""
    if values.size == 0:
        return math.nan
    kept = np.sort(values)[: _round_half_up(values.size * TRIMMED_FRACTION)]
    return float(np.mean(kept)) if kept.size else math.nan


def frame_measures(clean, processed, sample_rate, measures=("llr", "wss", "segsnr")):
    """LLR, WSS and segmental SNR of one pair at its own rate, as composite.m computes them.

    Formula (per 30 ms frame, then aggregated):
        segSNR = mean_t clip(10 log10(|c_t|^2 / (|c_t - p_t|^2 + eps) + eps), -10, 35) dB;
        LLR = trimmed mean_t log(a_p' R_c a_p / a_c' R_c a_c) (LPC order 10 or 16);
        WSS = trimmed mean_t sum_k W_k (S_c,k - S_p,k)^2 / sum_k W_k over the slopes S
        of 25 critical-band levels (dB), W from Klatt's peak weights (K_max 20, K_locmax 1).
    The trimmed mean keeps the lowest 95 % of frames.

    Args:
        clean, processed: 1-D float arrays of the same length.
        sample_rate: int. Their rate (no resampling here; see :func:`composite`).
        measures: tuple of "llr", "wss", "segsnr". Defaults to all three.

    Returns:
        dict measure -> float; NaN when the pair is shorter than one frame plus a hop.

    Example:
    >>> t = np.arange(16000) / 16000
    >>> x = np.sin(2 * np.pi * 440 * t) * (1 + t)
    >>> frame_measures(x, x, 16000)
    {'llr': 0.0, 'wss': 0.0, 'segsnr': 35.0}
    """
    unknown = set(measures) - {"llr", "wss", "segsnr"}
    if unknown:
        raise ValueError(
            f"`measures` must be among 'llr', 'wss', 'segsnr'. Received: {sorted(unknown)}"
        )
    clean, processed = _check_pair(clean, processed, sample_rate)
    frame, hop, count = _frame_plan(len(clean), sample_rate)
    fft_length = 1 << int(math.ceil(math.log2(2 * frame)))
    filters = _critical_band_filters(sample_rate, fft_length) if "wss" in measures else None
    parts = {name: [] for name in measures}
    for c, p in zip(
        _frame_blocks(clean, frame, hop, count), _frame_blocks(processed, frame, hop, count)
    ):
        if "llr" in parts:
            parts["llr"].append(_llr_frames(c, p, lpc_order(sample_rate)))
        if "wss" in parts:
            parts["wss"].append(_wss_frames(c, p, filters, fft_length))
        if "segsnr" in parts:
            parts["segsnr"].append(_segsnr_frames(c, p))
    out = {}
    for name, blocks in parts.items():
        values = np.concatenate(blocks) if blocks else np.zeros(0)
        if name == "segsnr":
            out[name] = float(np.mean(values)) if values.size else math.nan
        else:
            out[name] = _trimmed_mean(values)
    return out


def composite_scores(pesq, llr, wss, segsnr):
    """CSIG, CBAK and COVL from their four measures (Hu & Loizou 2008), limited to [1, 5].

    Args:
        pesq: float. PESQ as :func:`composite` defines it (wide-band MOS-LQO at
            16 kHz, raw P.862 at 8 kHz).
        llr, wss, segsnr: floats from :func:`frame_measures`.

    Returns:
        dict with "csig", "cbak", "covl" (NaN where an input is NaN).

    Example:
    >>> {k: round(v, 4) for k, v in composite_scores(3.0, 0.5, 30.0, 10.0).items()}
    {'csig': 4.1175, 'cbak': 3.488, 'covl': 3.543}
    """
    values = {"pesq": pesq, "llr": llr, "wss": wss, "segsnr": segsnr}
    out = {}
    for name, (constant, coefficients) in COMPOSITE_REGRESSIONS.items():
        score = constant + sum(weight * values[measure] for measure, weight in coefficients.items())
        out[name] = float(np.clip(score, *COMPOSITE_LIMITS))
    return out


def prepare_pair(clean, processed, sample_rate):
    """The pair at :func:`composite_rate` (resampled with
    :func:`spectral_restore.audio_io.resample_numpy` when needed) and that rate."""
    rate = composite_rate(sample_rate)
    clean, processed = np.asarray(clean, np.float64), np.asarray(processed, np.float64)
    if rate != sample_rate:
        clean, processed = (
            resample_numpy(clean, sample_rate, rate),
            resample_numpy(processed, sample_rate, rate),
        )
    return clean, processed, rate


def composite_pesq(mos_lqo, rate):
    """The PESQ value the regressions take, from the ``pesq`` package's MOS-LQO at
    ``rate``: itself at 16 kHz ("wb"), the raw P.862 score at 8 kHz ("nb")."""
    return raw_score(mos_lqo, "nb") if rate == 8000 else float(mos_lqo)


def composite(clean, processed, sample_rate):
    """CSIG, CBAK and COVL of one pair, with the PESQ, LLR, WSS and segSNR behind them.

    Formula: see the module docstring (Hu & Loizou 2008, eqs. of Sec. IV-C).

    Args:
        clean, processed: 1-D float arrays of the same length, any duration.
        sample_rate: int. 8000 and 16000 are used as they are; other rates are
            resampled to 16 kHz first.

    Returns:
        dict with "csig", "cbak", "covl", "pesq", "llr", "wss", "segsnr"; the
        composite scores are NaN when PESQ fails (silence, under 0.25 s; its
        reason is under "pesq_failure").

    Example:
    >>> t = np.arange(32000) / 16000
    >>> speech_like = np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) ** 2
    >>> scores = composite(speech_like, speech_like, 16000)
    >>> [round(scores[k], 3) for k in ("llr", "wss", "segsnr")]
    [0.0, 0.0, 35.0]
    """
    from spectral_restore.metrics import pesq_score

    clean, processed, rate = prepare_pair(clean, processed, sample_rate)
    result = pesq_score(clean, processed, rate, "wb" if rate == 16000 else "nb", processes=1)
    out = frame_measures(clean, processed, rate)
    out["pesq"] = composite_pesq(result.scores[0], rate)
    out.update(composite_scores(out["pesq"], out["llr"], out["wss"], out["segsnr"]))
    if result.failures:
        out["pesq_failure"] = next(iter(result.failures))
    return out
