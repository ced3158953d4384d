"""Reading, writing and resampling audio.

Reading returns float32 samples in [-1, 1]. Under the TensorFlow backend, WAV
files in 16-bit PCM are decoded with ``tf.audio.decode_wav`` and, when the optional
``tensorflow-io`` ops load (TensorFlow 2.16-2.17 only), they decode the non-WAV
formats; everything else (other WAV encodings, FLAC, OGG/Vorbis and the rest of
what libsndfile reads), and every format under the other backends, goes through
``soundfile``, so reading needs no TensorFlow. Remote paths (``gs://...``) are read
with ``tf.io.gfile``. Every failure raises :class:`AudioReadError` (a ``ValueError``)
naming the file and the problem, or ``FileNotFoundError`` for a missing file.

:func:`resample` is a polyphase resampler in ``keras.ops`` (so it runs inside a
``tf.function`` and is differentiable) with the same Kaiser-windowed sinc filter
as ``scipy.signal.resample_poly``; :func:`resample_numpy` is the same resampler on
the host (scipy, float64, memory proportional to the signal) for evaluating long files.

Files of any length are read, resampled and written in blocks, in memory that does not
grow with the file: :class:`AudioReader` and :class:`AudioWriter` (``soundfile``) and
:class:`StreamResampler` (libsoxr through ``python-soxr``, its "HQ" setting: 20-bit
precision, passband to 91% of the lower Nyquist frequency; block-wise use gives the
whole-signal result exactly).
"""

import functools
import io
import math
import os
import re
import struct
import warnings

import numpy as np
from keras import ops

from spectral_restore.backend import name as backend_name
from spectral_restore.backend import require_tensorflow

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
READ_BACKENDS = ("auto", "tf", "soundfile", "tfio")


class AudioReadError(ValueError):
    """An audio file could not be read: empty, truncated, corrupt or invalid samples."""


def check_sample_rate(sample_rate, name="sample_rate"):
    """Returns ``sample_rate`` as int, or raises ``ValueError`` if it is not an
    integer between 1 kHz and 384 kHz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise ValueError(f"`{name}` must be an integer number of Hz. Received: {sample_rate!r}")
    if float(sample_rate) != int(sample_rate):
        raise ValueError(f"`{name}` must be a whole number of Hz. Received: {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"Unsupported `{name}` {sample_rate} Hz: must be between "
            f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz."
        )
    return sample_rate


def check_count(value, name):
    """Returns ``value`` as int, or raises ``ValueError`` naming ``name`` if it is not
    an integer >= 1 (a channel count, a block or chunk length)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {value!r}")
    return int(value)


@functools.lru_cache(maxsize=None)
def tfio_available():
    """True when ``tensorflow_io`` imports and its audio ops load with this TensorFlow."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tensorflow as tf
            import tensorflow_io as tfio

            probe = tf.zeros([8, 1], tf.int16)
            tfio.audio.encode_flac(probe, rate=8000)
    except Exception:  # noqa: BLE001 - any failure means the optional ops are unusable
        return False
    return True


def is_remote_path(path):
    """True for ``scheme://`` paths (``gs://``, ``s3://``, ...), which only
    ``tf.io.gfile`` reads."""
    return "://" in os.fspath(path)


def _open_binary(path):
    """``path`` opened for binary reading: local files with ``open``, remote ones with
    ``tf.io.gfile``."""
    if is_remote_path(path):
        require_tensorflow(f"Reading the remote file {path}")
        import tensorflow as tf

        exists, is_dir, opener = tf.io.gfile.exists, tf.io.gfile.isdir, tf.io.gfile.GFile
    else:
        exists, is_dir, opener = os.path.exists, os.path.isdir, open
    if not exists(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    if is_dir(path):
        raise AudioReadError(f"{path}: is a directory, not an audio file")
    return opener(path, "rb")


def _read_bytes(path):
    """The bytes of ``path`` (see :func:`_open_binary`)."""
    with _open_binary(path) as f:
        return f.read()


def _wav_is_truncated(file):
    """True when the seekable binary ``file`` is RIFF/WAVE with a ``data`` chunk claiming
    more bytes than present. Reads only the chunk headers and leaves ``file`` at its start."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    header = file.read(12)
    truncated = False
    if len(header) == 12 and header[:4] == b"RIFF" and header[8:12] == b"WAVE":
        position = 12
        while position + 8 <= size:
            file.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
            position += 8
            if chunk_id == b"data":
                truncated = chunk_size != 0xFFFFFFFF and size - position < chunk_size
                break
            position += chunk_size + (chunk_size & 1)
    file.seek(0)
    return truncated


def _decode_error(path, err):
    """``AudioReadError`` for a decoder's exception: its first line, without
    TensorFlow's ``{{function_node ...}}`` prefix and ``[Op:...]`` suffix."""
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message)
    return AudioReadError(f"{path}: could not decode audio ({message})")


def _decode_wav_tf(data):
    import tensorflow as tf

    audio, rate = tf.audio.decode_wav(tf.constant(data))
    return audio.numpy().T, int(rate.numpy())


def _decode_soundfile(data):
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.T, int(rate)


def _decode_tfio(path):
    import tensorflow as tf
    import tensorflow_io as tfio

    audio = tfio.audio.AudioIOTensor(path)
    data = audio.to_tensor()
    rate = int(audio.rate.numpy())
    if data.dtype.is_integer:
        data = tf.cast(data, tf.float32) / float(-data.dtype.min)
    return data.numpy().T.astype(np.float32), rate


def read_audio(path, sample_rate=None, mono=True, backend="auto"):
    """Reads an audio file as float32 in [-1, 1].

    Args:
        path: str or os.PathLike. The file.
        sample_rate: int or None. Resample to this rate; None keeps the file's.
            Defaults to None.
        mono: bool. Average the channels. Defaults to True.
        backend: str. "auto" (under the TensorFlow backend: WAV 16-bit via
            ``tf.audio.decode_wav``, other formats via tensorflow-io when its ops
            load, else soundfile; under other backends: soundfile), or force
            "tf", "soundfile" or "tfio" ("tf" and "tfio" need TensorFlow).
            Defaults to "auto".

    Returns:
        ``(samples, rate)``: ``samples`` is ``[num_samples]`` when ``mono`` else
        ``[channels, num_samples]``.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioReadError: empty, truncated or corrupt file, no samples, NaN/inf
            samples, or an unsupported sample rate.
    """
    path = os.fspath(path)
    if backend not in READ_BACKENDS:
        raise ValueError(f"`backend` must be one of {READ_BACKENDS}. Received: {backend!r}")
    if backend in ("tf", "tfio"):
        require_tensorflow(f"read_audio(backend={backend!r})")
    content = _read_bytes(path)
    if not content:
        raise AudioReadError(f"{path}: the file is empty (0 bytes)")
    is_wav = path.lower().endswith((".wav", ".wave"))
    if is_wav and _wav_is_truncated(io.BytesIO(content)):
        raise AudioReadError(
            f"{path}: truncated WAV file (the data chunk is shorter than its header says)"
        )
    if backend == "auto":
        # TensorFlow's decoders only under its own backend: elsewhere TensorFlow may be
        # installed but should not start (on a GPU it would reserve the memory).
        if backend_name() != "tensorflow":
            backend = "soundfile"
        elif is_wav:
            backend = "tf"
        elif tfio_available():
            backend = "tfio"
        else:
            backend = "soundfile"
    data = rate = None
    try:
        if backend == "tf":
            try:
                data, rate = _decode_wav_tf(content)
            except Exception as err:  # noqa: BLE001 - re-raised below when soundfile fails too
                if "16-bit" not in str(err) and "Bad audio format" not in str(err):
                    raise
        elif backend == "tfio":
            if not tfio_available():
                raise AudioReadError(
                    "tensorflow-io's ops do not load with this TensorFlow "
                    "(they need TensorFlow 2.16-2.17); use backend='soundfile'"
                )
            data, rate = _decode_tfio(path)
        if data is None:
            data, rate = _decode_soundfile(content)
    except AudioReadError:
        raise
    except Exception as err:  # noqa: BLE001 - decoder errors become one clear error type
        raise _decode_error(path, err) from err
    try:
        check_sample_rate(rate)
    except ValueError as err:
        raise AudioReadError(f"{path}: {err}") from None
    if data.size == 0:
        raise AudioReadError(f"{path}: the file holds no audio samples")
    bad = np.count_nonzero(~np.isfinite(data))
    if bad:
        raise AudioReadError(f"{path}: {bad} of {data.size} samples are NaN or infinite")
    data = data.astype(np.float32)
    if mono:
        data = data.mean(axis=0)
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate)
        if sample_rate != rate:
            data = ops.convert_to_numpy(resample(data, rate, sample_rate))
            rate = sample_rate
    return data, rate


def to_pcm16(samples):
    """Float samples in [-1, 1] as 16-bit PCM integers (rounded, saturated)."""
    return np.clip(np.round(np.asarray(samples) * 32767.0), -32768, 32767).astype(np.int16)


def _output_format(path, subtype):
    """``(format, subtype)`` soundfile writes ``path`` with, after checking its extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in WRITE_FORMATS:
        raise ValueError(f"Cannot write {path}: extension must be one of {sorted(WRITE_FORMATS)}")
    return WRITE_FORMATS[extension], subtype or ("VORBIS" if extension == ".ogg" else "PCM_16")


def _check_writable(path, samples, subtype):
    """Raises ``ValueError`` for NaN/inf samples, or a peak beyond 1.0 that an integer
    PCM ``subtype`` would clip silently."""
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"Cannot write {path}: samples contain NaN or infinite values")
    peak = float(np.max(np.abs(samples), initial=0.0))
    if subtype.startswith("PCM") and peak > 1.0:
        raise ValueError(
            f"Cannot write {path}: peak {peak:.3f} exceeds 1.0 and {subtype} would clip it. "
            "Normalise the audio or use subtype='FLOAT' (WAV)."
        )


class AudioWriter:
    """An audio file written block by block: WAV, FLAC or OGG, chosen by the extension.

    Every block is checked as :func:`write_audio` checks a whole signal. Use it as a
    context manager (``with AudioWriter(...) as writer: writer.write(block)``).

    Args:
        path: str or os.PathLike. Destination; parent folders are created.
        sample_rate: int. Sample rate in Hz.
        channels: int. Channel count (at least 1).
        subtype: str or None. soundfile subtype; None gives 16-bit PCM for WAV and
            FLAC, Vorbis for OGG. Defaults to None.

    Raises:
        ValueError: unknown extension, bad sample rate or channel count; on
            ``write``: a block of another channel count, NaN/inf samples, or samples
            beyond [-1, 1] for an integer PCM subtype.
    """

    def __init__(self, path, sample_rate, channels, subtype=None):
        import soundfile as sf

        self.path = os.fspath(path)
        file_format, self.subtype = _output_format(self.path, subtype)
        self.sample_rate = check_sample_rate(sample_rate)
        self.channels = check_count(channels, "channels")
        self.frames = 0
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = sf.SoundFile(
            self.path,
            "w",
            samplerate=self.sample_rate,
            channels=self.channels,
            subtype=self.subtype,
            format=file_format,
        )

    def write(self, samples):
        """Appends ``samples`` ``[channels, frames]`` (or ``[frames]`` for one channel)."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 1 and self.channels == 1:
            samples = samples[None]
        if samples.ndim != 2 or samples.shape[0] != self.channels:
            raise ValueError(
                f"`samples` must be [{self.channels}, frames] for {self.path}. Received shape {samples.shape}"
            )
        _check_writable(self.path, samples, self.subtype)
        self._file.write(samples.T)
        self.frames += samples.shape[1]

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def write_audio(path, samples, sample_rate, subtype=None):
    """Writes float samples to WAV, FLAC or OGG (chosen by the extension).

    Args:
        path: str or os.PathLike. Destination; parent folders are created.
        samples: array ``[num_samples]`` or ``[channels, num_samples]``.
        sample_rate: int. Sample rate in Hz.
        subtype: str or None. soundfile subtype; None gives 16-bit PCM for WAV
            and FLAC, Vorbis for OGG. Defaults to None.

    Raises:
        ValueError: unknown extension, NaN/inf samples, or samples beyond
            [-1, 1] for an integer PCM subtype (they would be clipped silently;
            normalise first or write ``subtype="FLOAT"`` WAV).
    """
    path = os.fspath(path)
    _, subtype = _output_format(path, subtype)
    sample_rate = check_sample_rate(sample_rate)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise ValueError(
            f"`samples` must be a non-empty [samples] or [channels, samples] array. "
            f"Received shape {samples.shape}"
        )
    # Checked before the file is created, so a refused signal leaves no file behind.
    _check_writable(path, samples, subtype)
    samples = samples.reshape(-1, samples.shape[-1])
    with AudioWriter(path, sample_rate, samples.shape[0], subtype=subtype) as writer:
        writer.write(samples)


class AudioReader:
    """An audio file opened for reading in blocks with ``soundfile``, checked as
    :func:`read_audio` checks a whole file (missing, empty, truncated WAV, corrupt,
    no samples, unsupported rate; NaN/inf samples when a block holding them is read).

    Args:
        path: str or os.PathLike. Any format libsndfile reads; ``gs://``-style paths
            through ``tf.io.gfile`` (needs TensorFlow).

    Attributes:
        sample_rate, channels, frames: int. As the file's header gives them.
        subtype: str. The file's sample format (``"PCM_16"``, ``"FLOAT"``, ...).

    Raises:
        FileNotFoundError: the file does not exist.
        AudioReadError: the checks above.

    Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> write_audio(path, np.zeros((2, 1000)), 16000)
    >>> with AudioReader(path) as reader:
    ...     [block.shape for block, last in reader.blocks(400)]
    [(2, 400), (2, 400), (2, 200)]
    """

    def __init__(self, path):
        import soundfile as sf

        self.path = os.fspath(path)
        self._source = _open_binary(self.path)
        try:
            if self._source.seek(0, os.SEEK_END) == 0:
                raise AudioReadError(f"{self.path}: the file is empty (0 bytes)")
            self._source.seek(0)
            if self.path.lower().endswith((".wav", ".wave")) and _wav_is_truncated(self._source):
                raise AudioReadError(
                    f"{self.path}: truncated WAV file (the data chunk is shorter than its header says)"
                )
            try:
                self._file = sf.SoundFile(self._source)
            except (RuntimeError, TypeError, ValueError) as err:
                raise _decode_error(self.path, err) from err
            try:
                self.sample_rate = check_sample_rate(self._file.samplerate)
            except ValueError as err:
                raise AudioReadError(f"{self.path}: {err}") from None
            self.channels, self.frames, self.subtype = (
                self._file.channels,
                self._file.frames,
                self._file.subtype,
            )
            if self.frames == 0:
                raise AudioReadError(f"{self.path}: the file holds no audio samples")
        except BaseException:
            self.close()
            raise

    def blocks(self, frames):
        """Yields ``(block, last)``: float32 blocks ``[channels, frames]`` (the last one
        shorter) in order, ``last`` True for the final one."""
        frames = check_count(frames, "frames")
        position = 0
        block = self._read(frames, position)
        while block.shape[1]:
            following = self._read(frames, position + block.shape[1])
            yield block, not following.shape[1]
            position += block.shape[1]
            block = following

    def _read(self, frames, position):
        try:
            block = self._file.read(frames, dtype="float32", always_2d=True).T
        except RuntimeError as err:
            raise _decode_error(self.path, err) from err
        bad = np.count_nonzero(~np.isfinite(block))
        if bad:
            raise AudioReadError(
                f"{self.path}: {bad} samples from {position / self.sample_rate:.3f} s on are NaN or infinite"
            )
        return block

    def close(self):
        if getattr(self, "_file", None) is not None:
            self._file.close()
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class StreamResampler:
    """Resamples a signal that arrives in blocks, from ``from_rate`` to ``to_rate`` Hz.

    libsoxr (``python-soxr``) at its "HQ" setting: a linear-phase polyphase filter of
    20-bit precision, passband flat to within 0.01 dB up to 91% of the lower Nyquist
    frequency, stopband from that Nyquist frequency on (so nothing aliases), its group
    delay compensated. The concatenated outputs of the blocks equal
    ``soxr.resample`` of the whole signal, about ``samples * to_rate / from_rate``
    samples in all (benchmarks/host_resampler.py compares it with the other resamplers).
    Equal rates pass blocks through unchanged.

    Args:
        from_rate, to_rate: int. Sample rates in Hz.
        channels: int. Channel count of the blocks.

    Reference: libsoxr, https://sourceforge.net/projects/soxr/ (quality recipes in soxr.h).

    Example:
    >>> stream = StreamResampler(48000, 16000, channels=2)
    >>> pieces = [stream(np.zeros((2, 4800), "float32"), last=k == 9) for k in range(10)]
    >>> sum(piece.shape[1] for piece in pieces)
    16000
    """

    QUALITY = "HQ"

    def __init__(self, from_rate, to_rate, channels):
        import soxr

        self.from_rate = check_sample_rate(from_rate, "from_rate")
        self.to_rate = check_sample_rate(to_rate, "to_rate")
        self.channels = check_count(channels, "channels")
        self._finished = False
        self._stream = (
            None
            if self.from_rate == self.to_rate
            else soxr.ResampleStream(
                self.from_rate, self.to_rate, self.channels, dtype="float32", quality=self.QUALITY
            )
        )

    def __call__(self, block, last=False):
        """The output due for ``block`` ``[channels, frames]`` (float32); ``last`` flushes
        the filter's tail and must be True exactly once, with the final block (which may
        be empty)."""
        if self._finished:
            raise ValueError(
                "This StreamResampler has had its last block; make a new one for another signal"
            )
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(
                f"`block` must be [{self.channels}, frames]. Received shape {block.shape}"
            )
        self._finished = bool(last)
        if self._stream is None:
            return block
        # A fresh C-order copy, not ascontiguousarray: numpy 1.x keeps odd strides for a
        # block of one frame, which soxr refuses.
        return np.ascontiguousarray(
            self._stream.resample_chunk(block.T.copy(order="C"), last=bool(last)).T
        )


def kaiser_lowpass(up, down, beta=5.0, zeros_per_side=10):
    """The anti-aliasing filter of a rational ``up/down`` resampler.

    Formula: ``h[n] = up * g[n] / sum(g)``, ``g[n] = fc * sinc(fc * (n - H)) * kaiser(n; beta)``,
    ``n = 0..2H``, ``fc = 1 / max(up, down)`` (cutoff relative to Nyquist),
    ``H = zeros_per_side * max(up, down)``: the same design as
    ``scipy.signal.resample_poly`` with its default ``window=("kaiser", 5.0)``.
    """
    max_rate = max(up, down)
    half_length = zeros_per_side * max_rate
    cutoff = 1.0 / max_rate
    n = np.arange(2 * half_length + 1) - half_length
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half_length + 1, beta)
    return up * taps / taps.sum(), half_length


@functools.lru_cache(maxsize=64)
def _polyphase_plan(up, down):
    """Filter taps arranged per phase, and the output offset matching resample_poly."""
    taps, half_length = kaiser_lowpass(up, down)
    pre_pad = down - half_length % down
    pre_remove = (half_length + pre_pad) // down
    taps_per_phase = -(-len(taps) // up)
    table = np.zeros((up, taps_per_phase), dtype=np.float64)
    for phase_index in range(up):
        picked = taps[phase_index::up]
        table[phase_index, : len(picked)] = picked
    offset = pre_remove * down - pre_pad
    return table.astype(np.float32), taps_per_phase, offset


def resample(x, from_rate, to_rate):
    """Resamples waveforms ``[..., samples]`` from ``from_rate`` to ``to_rate`` Hz.

    Polyphase FIR resampling by the reduced ratio ``up/down = to/from``:
    ``y[m] = sum_j x[floor(T_m / up) - j] * h[T_m mod up + j * up]`` with
    ``T_m = m * down + offset``, ``h`` from :func:`kaiser_lowpass` and ``offset``
    chosen as in ``scipy.signal.resample_poly`` so both agree sample for sample
    (samples outside the input count as zeros). The output has
    ``ceil(samples * up / down)`` samples. Works with a dynamic length inside
    ``tf.function`` and is differentiable with respect to ``x``.

    Example:
    >>> y = resample(np.ones((2, 441), "float32"), 44100, 16000)
    >>> tuple(y.shape)
    (2, 160)
    """
    from_rate = check_sample_rate(from_rate, "from_rate")
    to_rate = check_sample_rate(to_rate, "to_rate")
    x = ops.convert_to_tensor(x)
    if x.dtype not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    if from_rate == to_rate:
        return x
    divisor = math.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    table, taps_per_phase, offset = _polyphase_plan(up, down)
    num_in = ops.shape(x)[-1]
    num_out = (num_in * up + down - 1) // down
    positions = ops.arange(0, num_out, dtype="int32") * down + offset
    newest = positions // up
    phase_index = positions - newest * up
    inputs = newest[:, None] - ops.arange(0, taps_per_phase, dtype="int32")[None, :]
    valid = ops.logical_and(inputs >= 0, inputs < num_in)
    inputs = ops.clip(inputs, 0, ops.maximum(num_in - 1, 0))
    coefficients = ops.take(ops.convert_to_tensor(table, dtype=x.dtype), phase_index, axis=0)
    coefficients = ops.where(valid, coefficients, ops.zeros_like(coefficients))
    gathered = ops.take(x, inputs, axis=-1)
    return ops.sum(gathered * coefficients, axis=-1)


def resample_numpy(x, from_rate, to_rate):
    """Resamples numpy waveforms ``[..., samples]`` on the host, in float64.

    The same filter and alignment as :func:`resample` (which matches
    ``scipy.signal.resample_poly`` with its default Kaiser window, beta 5), computed
    by ``resample_poly`` itself: no ``[outputs, taps]`` gather, so memory stays
    proportional to the signal and a 10-minute file costs a few of its own copies.
    Evaluation code uses it; graph code uses :func:`resample`.

    Example:
    >>> resample_numpy(np.ones((2, 441)), 44100, 16000).shape
    (2, 160)
    """
    import scipy.signal

    from_rate = check_sample_rate(from_rate, "from_rate")
    to_rate = check_sample_rate(to_rate, "to_rate")
    x = np.asarray(x, dtype=np.float64)
    if from_rate == to_rate:
        return x
    divisor = math.gcd(from_rate, to_rate)
    return scipy.signal.resample_poly(x, to_rate // divisor, from_rate // divisor, axis=-1)


__all__ = [
    "AudioReadError",
    "check_sample_rate",
    "check_count",
    "read_audio",
    "write_audio",
    "AudioReader",
    "AudioWriter",
    "StreamResampler",
    "to_pcm16",
    "resample",
    "resample_numpy",
    "kaiser_lowpass",
    "tfio_available",
    "is_remote_path",
]
