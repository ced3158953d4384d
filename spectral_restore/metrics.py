"""Evaluation metrics: PESQ (reference implementation), STOI/ESTOI, SI-SDR, log-spectral distance.

All functions take numpy arrays ``[samples]`` or batches ``[batch, samples]`` and
return one float per example.

PESQ failures: the ``pesq`` package raises ``NoUtterancesError`` (no speech found),
``BufferTooShortError`` (under about 0.25 s) and a plain ``ValueError`` for a silent
degraded signal, and its C code can crash the process on files of several
minutes. :func:`pesq_score` never lets these escape: the example gets ``NaN``, and
:class:`PesqResult` counts the failures by reason (``"ProcessCrashed"`` for a
worker that died; :class:`PesqWorkers` runs long files in worker processes).

:class:`PESQMetric` is the reference PESQ as a compiled Keras metric
(:class:`~spectral_restore.callbacks.ValidationPESQ` scores held-out batches once
per epoch instead).
"""

import collections
import dataclasses
import math
import os
import pickle
import subprocess
import sys

import keras
import numpy as np
from keras import ops

from spectral_restore._pesq_job import run as _pesq_one
from spectral_restore.audio_io import resample_numpy
from spectral_restore.backend import host_call

PESQ_RATES = {"wb": 16000, "nb": 8000}


@dataclasses.dataclass
class PesqResult:
    """Scores (NaN where PESQ failed) and failure counts by reason."""

    scores: np.ndarray
    failures: dict

    @property
    def failed(self):
        return int(sum(self.failures.values()))

    def nanmean(self):
        valid = self.scores[np.isfinite(self.scores)]
        return float(valid.mean()) if valid.size else math.nan


def _as_batch(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must be [samples] or [batch, samples]; received shape {x.shape}"
        )
    return x


def check_pesq_mode(mode):
    if mode not in PESQ_RATES:
        raise ValueError(f"`mode` must be 'wb' or 'nb'. Received: {mode!r}")


# The pesq package's C code keeps its "bad intervals" in a fixed 1000-entry stack
# table without a bound check: a long file with many disturbed stretches overflows
# it and kills the process (here: 300 s of speech in white noise; 240 s passed). An
# interval takes at least 6 frames of 16 ms, so under 96 s it cannot overflow;
# longer inputs always run in a worker process.
PESQ_IN_PROCESS_SECONDS = 90.0
PESQ_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pesq_job.py")


def _pesq_job(clean, degraded, sample_rate, mode):
    """The job :func:`spectral_restore._pesq_job.run` takes: both sides at PESQ's rate."""
    rate = PESQ_RATES[mode]
    clean, degraded = np.asarray(clean, np.float64), np.asarray(degraded, np.float64)
    if sample_rate != rate:
        clean, degraded = (
            resample_numpy(clean, sample_rate, rate),
            resample_numpy(degraded, sample_rate, rate),
        )
    return clean, degraded, rate, mode


class _PesqHandle:
    __slots__ = ("job", "worker", "result")

    def __init__(self, job):
        self.job, self.worker, self.result = job, None, None


class _PesqProcess:
    """One worker process (``spectral_restore/_pesq_job.py``) and its queue of jobs,
    sent one at a time."""

    def __init__(self):
        self.process, self.current = None, None
        self.queue = collections.deque()

    def load(self):
        return (self.current is not None) + len(self.queue)

    def add(self, handle):
        handle.worker = self
        if self.current is None:
            self._send(handle)
        else:
            self.queue.append(handle)

    def _send(self, handle):
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, PESQ_WORKER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        self.current = handle
        pickle.dump(handle.job, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def receive(self):
        """Waits for the job in flight, then sends the next queued one."""
        handle = self.current
        try:
            handle.result = pickle.load(self.process.stdout)
        except EOFError:
            self.process.wait()
            self.process = None
            handle.result = (math.nan, "ProcessCrashed")
        handle.job, self.current = None, None
        if self.queue:
            self._send(self.queue.popleft())

    def close(self):
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait()
            self.process = None


class PesqWorkers:
    """Reference PESQ jobs in worker processes that outlive a crashing job.

    ``submit`` queues one ``(clean, degraded)`` pair and returns a handle;
    ``results`` waits for handles and returns ``(score, reason)`` per handle
    (``reason`` None on success). Each worker is a plain Python process running
    ``spectral_restore/_pesq_job.py`` (numpy and ``pesq`` only, whatever the parent
    has loaded; no main-module guard needed) and scores one job at a time. When the
    ``pesq`` package's C code kills a worker, the job it was running gives NaN with
    reason ``"ProcessCrashed"`` and the next job starts a new worker. Pairs longer
    than ``PESQ_IN_PROCESS_SECONDS`` (the ones that can crash, and that cost PESQ
    about a gigabyte for 10 minutes) go one at a time to a worker of their own;
    shorter ones to the least loaded of ``processes`` workers.

    Args:
        processes: int. Workers for the shorter pairs (>= 1).
    """

    def __init__(self, processes):
        if int(processes) < 1:
            raise ValueError(f"`processes` must be >= 1. Received: {processes}")
        self._workers = [_PesqProcess() for _ in range(int(processes))]
        self._long = _PesqProcess()

    def submit(self, clean, degraded, sample_rate, mode):
        check_pesq_mode(mode)
        handle = _PesqHandle(_pesq_job(clean, degraded, sample_rate, mode))
        long = len(handle.job[0]) > PESQ_IN_PROCESS_SECONDS * handle.job[2]
        (self._long if long else min(self._workers, key=_PesqProcess.load)).add(handle)
        return handle

    def results(self, handles):
        for handle in handles:
            while handle.result is None:
                handle.worker.receive()
        return [handle.result for handle in handles]

    def close(self):
        for worker in self._workers + [self._long]:
            worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def pesq_score(clean, degraded, sample_rate, mode="wb", processes=None):
    """ITU-T P.862 PESQ (P.862.2 for "wb") with the reference ``pesq`` package.

    Args:
        clean, degraded: ``[samples]`` or ``[batch, samples]`` float arrays.
        sample_rate: int. Rate of the inputs; they are resampled to 16 kHz
            ("wb") or 8 kHz ("nb") when different, with
            :func:`spectral_restore.audio_io.resample_numpy`.
        mode: str. "wb" (MOS-LQO, 1.04-4.64) or "nb" (P.862.1 MOS-LQO).
        processes: int or None. Worker processes; None uses one per CPU for
            batches of more than 4 examples, else runs in this process. Inputs
            longer than ``PESQ_IN_PROCESS_SECONDS`` always run in
            :class:`PesqWorkers`, which survive the ``pesq`` package's crashes.

    Returns:
        :class:`PesqResult`; examples PESQ rejects (silence, too short, silent
        degraded signal) are NaN and counted under their error's class name, a
        crashed worker under ``"ProcessCrashed"``.
    """
    check_pesq_mode(mode)
    clean, degraded = _as_batch(clean, "clean"), _as_batch(degraded, "degraded")
    if clean.shape != degraded.shape:
        raise ValueError(f"clean {clean.shape} and degraded {degraded.shape} differ in shape")
    if processes is None:
        processes = (os.cpu_count() or 1) if len(clean) > 4 else 1
    if processes > 1 or clean.shape[1] > PESQ_IN_PROCESS_SECONDS * sample_rate:
        with PesqWorkers(processes) as workers:
            results = workers.results(
                [workers.submit(c, d, sample_rate, mode) for c, d in zip(clean, degraded)]
            )
    else:
        results = [_pesq_one(_pesq_job(c, d, sample_rate, mode)) for c, d in zip(clean, degraded)]
    failures = {}
    for _, reason in results:
        if reason:
            failures[reason] = failures.get(reason, 0) + 1
    return PesqResult(np.array([score for score, _ in results]), failures)


def si_sdr(reference, estimate, eps=1e-10):
    """Scale-invariant SDR in dB (Le Roux et al., "SDR - half-baked or well done?",
    ICASSP 2019): both signals made zero-mean, ``s = <e, r> r / ||r||^2``,
    ``10 log10(||s||^2 / ||s - e||^2)``."""
    reference, estimate = _as_batch(reference, "reference"), _as_batch(estimate, "estimate")
    reference = reference - reference.mean(axis=1, keepdims=True)
    estimate = estimate - estimate.mean(axis=1, keepdims=True)
    scale = np.sum(estimate * reference, axis=1, keepdims=True) / (
        np.sum(reference**2, axis=1, keepdims=True) + eps
    )
    target = scale * reference
    return 10 * np.log10(
        (np.sum(target**2, axis=1) + eps) / (np.sum((target - estimate) ** 2, axis=1) + eps)
    )


def log_spectral_distance(
    reference, estimate, frame_length=512, hop_length=128, floor=1e-10, block=4096
):
    """Log-spectral distance in dB: ``mean_t sqrt(mean_k (10 log10(P_ref / P_est))^2)``,
    Hann frames, power floored at ``floor``; ``block`` frames at a time, so long files
    stay in bounded memory."""
    reference, estimate = _as_batch(reference, "reference"), _as_batch(estimate, "estimate")
    window = np.hanning(frame_length + 1)[:-1]
    if reference.shape[1] < frame_length:
        padding = ((0, 0), (0, frame_length - reference.shape[1]))
        reference, estimate = np.pad(reference, padding), np.pad(estimate, padding)
    count = 1 + (reference.shape[1] - frame_length) // hop_length

    def power(x, first):
        frames = np.lib.stride_tricks.sliding_window_view(x, frame_length, axis=1)[:, ::hop_length]
        return np.maximum(
            np.abs(np.fft.rfft(frames[:, first : first + block] * window, axis=-1)) ** 2, floor
        )

    total = np.zeros(len(reference))
    for first in range(0, count, block):
        difference = 10 * np.log10(power(reference, first) / power(estimate, first))
        total += np.sum(np.sqrt(np.mean(difference**2, axis=-1)), axis=-1)
    return total / count


# --- STOI ---------------------------------------------------------------------------
STOI_RATE = 10000
STOI_FRAME = 256
STOI_FFT = 512
STOI_BANDS = 15
STOI_MIN_FREQ = 150.0
STOI_SEGMENT = 30
STOI_BETA_DB = -15.0
STOI_DYNAMIC_RANGE_DB = 40.0
_EPS = np.finfo(float).eps


def _octave_resample_filter(up, down):
    """The anti-aliasing filter of GNU Octave's ``resample`` (60 dB rejection, roll-off
    of 10 % of the cutoff, Kaiser window), which STOI's reference code uses."""
    cutoff = 1.0 / (2 * max(up, down))
    roll_off = cutoff / 10
    rejection_db = 60.0
    half = int(np.ceil((rejection_db - 8) / (28.714 * roll_off)))
    t = np.arange(-half, half + 1)
    ideal = 2 * up * cutoff * np.sinc(2 * cutoff * t)
    beta = 0.1102 * (rejection_db - 8.7)
    taps = np.kaiser(2 * half + 1, beta) * ideal
    return taps / taps.sum()


def _resample_for_stoi(x, rate):
    import scipy.signal

    divisor = math.gcd(STOI_RATE, rate)
    up, down = STOI_RATE // divisor, rate // divisor
    return scipy.signal.resample_poly(x, up, down, window=_octave_resample_filter(up, down))


def _third_octave_matrix():
    freqs = np.linspace(0, STOI_RATE, STOI_FFT + 1)[: STOI_FFT // 2 + 1]
    k = np.arange(STOI_BANDS)
    low = STOI_MIN_FREQ * 2.0 ** ((2 * k - 1) / 6)
    high = STOI_MIN_FREQ * 2.0 ** ((2 * k + 1) / 6)
    matrix = np.zeros((STOI_BANDS, len(freqs)))
    for band in range(STOI_BANDS):
        first = int(np.argmin((freqs - low[band]) ** 2))
        last = int(np.argmin((freqs - high[band]) ** 2))
        matrix[band, first:last] = 1.0
    return matrix


STOI_BLOCK = 4096


def _frame_count(length):
    """Frames that STOI's reference code takes: starts ``0, hop, ...`` strictly
    before ``length - STOI_FRAME``."""
    return max(0, -(-(length - STOI_FRAME) // (STOI_FRAME // 2)))


def _stoi_frame_blocks(x, window, count):
    """Windowed 50 %-overlap frames of ``x``, ``STOI_BLOCK`` at a time (bounded memory)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, STOI_FRAME)[:: STOI_FRAME // 2][:count]
    for first in range(0, count, STOI_BLOCK):
        yield window * frames[first : first + STOI_BLOCK]


def _drop_silent_frames(clean, degraded, window):
    """Frames of ``clean`` more than 40 dB below its loudest are removed from both;
    the rest is overlap-added back (Taal et al. 2011, sec. II)."""
    count = _frame_count(len(clean))
    if count == 0:
        return clean[:0], degraded[:0]
    energy = np.concatenate(
        [
            20 * np.log10(np.linalg.norm(block, axis=1) + _EPS)
            for block in _stoi_frame_blocks(clean, window, count)
        ]
    )
    keep = np.flatnonzero(energy > energy.max() - STOI_DYNAMIC_RANGE_DB)
    hop = STOI_FRAME // 2

    def overlap_add(x):
        # With 50 % overlap, output hop k is the first half of kept frame k plus the
        # second half of kept frame k - 1.
        frames = np.lib.stride_tricks.sliding_window_view(x, STOI_FRAME)[::hop]
        out = np.zeros((len(keep) + 1) * hop)
        for first in range(0, len(keep), STOI_BLOCK):
            block = window * frames[keep[first : first + STOI_BLOCK]]
            out[first * hop : (first + len(block)) * hop] += block[:, :hop].ravel()
            out[(first + 1) * hop : (first + 1 + len(block)) * hop] += block[:, hop:].ravel()
        return out

    return overlap_add(clean), overlap_add(degraded)


def _band_envelopes(x, window):
    """One-third-octave band envelopes ``[15, frames]`` of ``x`` (Taal et al. 2011, eq. 1)."""
    count = _frame_count(len(x))
    bands = _third_octave_matrix()
    blocks = [
        np.sqrt(bands @ (np.abs(np.fft.rfft(block, n=STOI_FFT, axis=1).T) ** 2))
        for block in _stoi_frame_blocks(x, window, count)
    ]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((STOI_BANDS, 0))


def _segment_blocks(envelope):
    """30-frame segments ``[segments, 15, 30]`` of an envelope, ``STOI_BLOCK`` at a time."""
    segments = np.lib.stride_tricks.sliding_window_view(envelope, STOI_SEGMENT, axis=1).transpose(
        1, 0, 2
    )
    for first in range(0, len(segments), STOI_BLOCK):
        yield segments[first : first + STOI_BLOCK]


def _normalize(x, axis):
    x = x - x.mean(axis=axis, keepdims=True)
    return x / (np.linalg.norm(x, axis=axis, keepdims=True) + _EPS)


def _stoi_one(clean, degraded, rate, extended):
    if rate != STOI_RATE:
        clean, degraded = _resample_for_stoi(clean, rate), _resample_for_stoi(degraded, rate)
    window = np.hanning(STOI_FRAME + 2)[1:-1]
    clean, degraded = _drop_silent_frames(clean, degraded, window)
    env_clean, env_degraded = _band_envelopes(clean, window), _band_envelopes(degraded, window)
    if env_clean.shape[1] < STOI_SEGMENT:
        return math.nan
    clip = 10 ** (-STOI_BETA_DB / 20)
    total, count = 0.0, 0
    for x, y in zip(_segment_blocks(env_clean), _segment_blocks(env_degraded)):
        if extended:
            x, y = (
                _normalize(_normalize(x, axis=2), axis=1),
                _normalize(_normalize(y, axis=2), axis=1),
            )
            total += np.sum(x * y) / STOI_SEGMENT
        else:
            y = y * (
                np.linalg.norm(x, axis=2, keepdims=True)
                / (np.linalg.norm(y, axis=2, keepdims=True) + _EPS)
            )
            y = np.minimum(y, x * (1 + clip))
            total += np.sum(_normalize(x, axis=2) * _normalize(y, axis=2)) / STOI_BANDS
        count += len(x)
    return total / count


def stoi(clean, degraded, sample_rate, extended=False):
    """Short-time objective intelligibility (Taal et al., IEEE TASLP 19(7), 2011), or
    with ``extended=True`` ESTOI (Jensen & Taal, IEEE TASLP 24(11), 2016).

    At 10 kHz: silent frames (40 dB below the loudest clean frame) removed,
    256-sample Hann frames at 50 % overlap, 15 one-third-octave bands from 150 Hz,
    30-frame (384 ms) envelope segments. STOI: degraded envelopes normalised to the
    clean ones and clipped at -15 dB SDR, then the mean correlation over bands and
    segments. ESTOI: each segment's band rows, then its frame columns, made zero-mean
    and unit-norm, ``d = sum(X * Y) / 30`` per segment, averaged over segments. NaN
    when fewer than 30 frames remain (too short or silent; ``pystoi`` returns 1e-5
    there). Whole files of any length, computed in blocks of frames and segments
    (memory grows with the file only by a few copies of the signal).

    Args:
        clean, degraded: ``[samples]`` or ``[batch, samples]`` float arrays.
        sample_rate: int. Their rate (resampled to 10 kHz with Octave's filter, as
            the reference code does).
        extended: bool. ESTOI instead of STOI. Defaults to False.

    Returns:
        ``[batch]`` float64 scores in [0, 1] (ESTOI may go slightly below 0).
    """
    clean, degraded = _as_batch(clean, "clean"), _as_batch(degraded, "degraded")
    if clean.shape != degraded.shape:
        raise ValueError(f"clean {clean.shape} and degraded {degraded.shape} differ in shape")
    return np.array(
        [_stoi_one(c, d, int(sample_rate), bool(extended)) for c, d in zip(clean, degraded)]
    )


# --- PESQ during training -------------------------------------------------------------
@keras.saving.register_keras_serializable(package="spectral_restore")
class PESQMetric(keras.metrics.Metric):
    """Mean reference PESQ of ``(y_true, y_pred)`` waveform batches, as a Keras metric.

    The ``pesq`` package runs on the CPU through
    :func:`spectral_restore.backend.host_call` (any backend; not under
    TensorFlow's XLA, ``jit_compile=True``). Examples PESQ rejects (silence, under
    0.25 s) are left out of the mean and counted in the ``failed`` variable; the
    result is NaN while no example has been scored. As a compiled metric
    (``metrics=[PESQMetric(16000)]``) it also runs on every training step, on the
    CPU, which slows training:
    :class:`~spectral_restore.callbacks.ValidationPESQ` (once per epoch, on
    held-out batches) is usually better.

    Args:
        sample_rate: int. Rate of the waveforms (resampled for PESQ when not 16 kHz
            for "wb" or 8 kHz for "nb"). Defaults to 16000.
        mode: str. "wb" or "nb". Defaults to "wb".
        name: str. Defaults to "pesq_wb" / "pesq_nb".
    """

    def __init__(self, sample_rate=16000, mode="wb", name=None, dtype=None):
        check_pesq_mode(mode)
        super().__init__(name=name or f"pesq_{mode}", dtype=dtype or "float32")
        self.sample_rate, self.mode = int(sample_rate), mode
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")
        self.failed = self.add_variable(shape=(), initializer="zeros", name="failed")

    def _scores(self, clean, estimate):
        return pesq_score(clean, estimate, self.sample_rate, self.mode, processes=1).scores.astype(
            np.float32
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (ops.shape(y_true)[0], -1))
        y_pred = ops.reshape(ops.cast(y_pred, "float32"), (ops.shape(y_pred)[0], -1))
        scores = host_call(
            self._scores, y_true, y_pred, result_shape=(None,), result_dtype="float32"
        )
        valid = ops.isfinite(scores)
        self.total.assign_add(ops.sum(ops.where(valid, scores, 0.0)))
        self.count.assign_add(ops.sum(ops.cast(valid, "float32")))
        self.failed.assign_add(ops.sum(ops.cast(ops.logical_not(valid), "float32")))

    def result(self):
        return ops.where(self.count > 0, self.total / ops.maximum(self.count, 1.0), float("nan"))

    def get_config(self):
        return {
            "sample_rate": self.sample_rate,
            "mode": self.mode,
            "name": self.name,
            "dtype": self.dtype,
        }
