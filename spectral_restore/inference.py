"""Restoring audio files with a trained model: ``spectral-restore restore``.

A model is a ``.keras`` file (any Keras backend) or a SavedModel folder written by
:func:`spectral_restore.export.export_saved_model` (needs TensorFlow). Both restore
long inputs chunk by chunk with the same crossfade, on the host
(:class:`ChunkedRestoration`; the export carries the same in TensorFlow ops for its
own callers). A file is read in blocks at its own rate and channel count, resampled
to the model's rate, restored (the channels form the batch), resampled back and
written block by block, with its original rate, length, channel count and, where the
output format allows it, its original sample format: memory does not grow with the
file's length, and the result equals restoring the whole file at once."""

import dataclasses
import json
import os

import numpy as np

from spectral_restore import __version__
from spectral_restore.audio_io import (
    WRITE_FORMATS,
    AudioReader,
    AudioWriter,
    StreamResampler,
    check_count,
)
from spectral_restore.backend import require_tensorflow

EXPORT_FORMAT = 1
DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_OVERLAP_SECONDS = 0.5
DEFAULT_BLOCK_SECONDS = 10.0
# The metadata an export carries in its assets folder (written by spectral_restore.export).
METADATA_FILE = "spectral_restore.json"


def crossfade_window(chunk, overlap):
    """The chunk weight ``w`` of :func:`restore_in_chunks`: ``[chunk]`` float32,
    ``sin^2`` ramps of ``overlap`` samples at both ends (never exactly 0, so the
    normalising sum is positive at the edges too)."""
    ramp = np.sin(np.pi * (np.arange(overlap) + 0.5) / (2 * overlap)) ** 2
    window = np.ones(chunk)
    window[:overlap] = ramp
    window[chunk - overlap :] = ramp[::-1]
    return window.astype(np.float32)


def chunking(
    sample_rate, chunk_seconds=DEFAULT_CHUNK_SECONDS, overlap_seconds=DEFAULT_OVERLAP_SECONDS
):
    """``(chunk, overlap)`` in samples, after checking the durations."""
    if not chunk_seconds or chunk_seconds <= 0:
        raise ValueError(f"`chunk_seconds` must be > 0. Received: {chunk_seconds!r}")
    if overlap_seconds is None or overlap_seconds <= 0 or overlap_seconds >= chunk_seconds / 2:
        raise ValueError(
            f"`overlap_seconds` must be in (0, chunk_seconds / 2) = (0, {chunk_seconds / 2}). "
            f"Received: {overlap_seconds!r}"
        )
    return int(round(chunk_seconds * sample_rate)), max(
        1, int(round(overlap_seconds * sample_rate))
    )


class ChunkedRestoration:
    """Restores a signal that arrives in blocks, chunk by chunk with a crossfade, in
    memory of about one chunk whatever the signal's length.

    Formula: with chunk length L, overlap O and hop H = L - O, chunk k covers samples
    ``[kH, kH + L)`` (the signal zero-padded at its end to whole chunks) and is
    weighted by ``w`` (1 in the middle, ``sin^2`` ramps of O samples at both ends,
    ``sin^2 + cos^2 = 1`` across each overlap); the output is
    ``y[n] = sum_k w[n - kH] f(x_k)[n - kH] / sum_k w[n - kH]``. A signal of at most
    L samples is restored whole. Output samples before ``(k + 1)H`` are final once
    chunk k is restored, so each call returns those and keeps the rest; the outputs
    of all calls, concatenated, do not depend on how the signal was cut into blocks.

    Args:
        restore: callable. ``[channels, n]`` float32 numpy, ``n <= L`` -> same shape.
        chunk, overlap: int. L and O in samples, ``0 < O < L / 2``.
        channels: int. Rows of every block (restored together, as a batch).

    Example:
    >>> stream = ChunkedRestoration(lambda piece: 2 * piece, chunk=300, overlap=50, channels=1)
    >>> x = np.ones((1, 1000), "float32")
    >>> pieces = [stream(x[:, :450]), stream(x[:, 450:], last=True)]
    >>> [piece.shape[1] for piece in pieces], float(np.max(np.abs(np.concatenate(pieces, 1) - 2)))
    ([250, 750], 0.0)
    """

    def __init__(self, restore, chunk, overlap, channels):
        self.restore = restore
        self.chunk, self.overlap = check_count(chunk, "chunk"), check_count(overlap, "overlap")
        self.channels = check_count(channels, "channels")
        if not 2 * overlap < chunk:
            raise ValueError(
                f"`overlap` must be below chunk / 2 = {chunk / 2}. Received: {overlap!r}"
            )
        self.hop = self.chunk - self.overlap
        self._window = crossfade_window(self.chunk, self.overlap).astype(np.float64)
        self._pending = np.zeros(
            (self.channels, 0), np.float32
        )  # inputs from the next chunk's start on
        self._tail = (
            None  # the previous chunk's weighted outputs and weights over the next one's overlap
        )
        self._finished = False

    def _restore_chunk(self, piece):
        """Output samples ``[kH, kH + H)`` of chunk k (``piece``, L samples), final."""
        restored = np.asarray(self.restore(piece), np.float64) * self._window
        weights = self._window.copy()
        if self._tail is not None:
            restored[:, : self.overlap] += self._tail[0]
            weights[: self.overlap] += self._tail[1]
        self._tail = restored[:, self.hop :], weights[self.hop :]
        return restored[:, : self.hop] / weights[: self.hop]

    def __call__(self, block, last=False):
        """The output samples that ``block`` ``[channels, n]`` completes (float32);
        ``last`` must be True exactly once, with the final block (which may be empty)."""
        if self._finished:
            raise ValueError(
                "This ChunkedRestoration has had its last block; make a new one for another signal"
            )
        block = np.asarray(block, np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(
                f"`block` must be [{self.channels}, samples]. Received shape {block.shape}"
            )
        self._finished = bool(last)
        pending = np.concatenate([self._pending, block], axis=1)
        outputs = []
        # More than one chunk still to come: chunk k holds real samples only and is not
        # the whole signal, whatever follows.
        while pending.shape[1] > self.chunk:
            outputs.append(self._restore_chunk(pending[:, : self.chunk]))
            pending = pending[:, self.hop :]
        if last:
            if self._tail is None and pending.shape[1]:
                outputs.append(np.asarray(self.restore(pending), np.float64))
            elif self._tail is not None:
                remaining, closing = pending.shape[1], []
                # Chunks start while they reach past the last overlap (kH < length - O).
                while pending.shape[1] > self.overlap:
                    piece = pending[:, : self.chunk]
                    piece = np.pad(piece, [(0, 0), (0, self.chunk - piece.shape[1])])
                    closing.append(self._restore_chunk(piece))
                    pending = pending[:, self.hop :]
                closing.append(self._tail[0] / self._tail[1])
                outputs.append(np.concatenate(closing, axis=1)[:, :remaining])
            pending = pending[:, :0]
        self._pending = pending
        if not outputs:
            return np.zeros((self.channels, 0), np.float32)
        return np.concatenate(outputs, axis=1).astype(np.float32)


def restore_in_chunks(restore, waveform, chunk, overlap):
    """Applies ``restore`` to ``waveform`` ``[batch, samples]`` in crossfaded chunks:
    :class:`ChunkedRestoration` given the whole waveform as one block.

    Args:
        restore: callable. ``[batch, n]`` float32 numpy, ``n <= L`` -> same shape.
        waveform: float32 array ``[batch, samples]``.
        chunk, overlap: int. L and O in samples, ``0 < O < L / 2``.

    Example:
    >>> x = np.random.default_rng(0).standard_normal((2, 1000)).astype("float32")
    >>> y = restore_in_chunks(lambda piece: 2 * piece, x, chunk=300, overlap=50)
    >>> bool(np.allclose(y, 2 * x, atol=1e-6))
    True
    """
    waveform = np.asarray(waveform, np.float32)
    return ChunkedRestoration(restore, chunk, overlap, waveform.shape[0])(waveform, last=True)


def model_metadata(model, chunk, overlap):
    """What a server or client needs to know about a restoration ``model``."""
    stft_config = getattr(model, "stft_config", None)
    return {
        "format": EXPORT_FORMAT,
        "spectral_restore_version": __version__,
        "model_class": type(model).__name__,
        "model_name": model.name,
        "preset": getattr(model, "preset", None),
        "parameters": int(model.count_params()),
        "sample_rate": int(getattr(model, "sample_rate", 16000)),
        "stft": None if stft_config is None else stft_config.get_config(),
        "chunk_samples": int(chunk),
        "overlap_samples": int(overlap),
        "input": {"name": "waveform", "dtype": "float32", "shape": [None, None]},
        "output": {"name": "restored", "dtype": "float32", "shape": [None, None]},
    }


def load_keras_model(model):
    """``model`` itself when it is a keras.Model, else the ``.keras`` file it names."""
    import keras

    if isinstance(model, keras.Model):
        return model
    path = os.fspath(model)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file not found: {path}")
    if not path.endswith(".keras"):
        raise ValueError(f"Expected a Keras model file (.keras); received {path}")
    import spectral_restore.models.gan  # noqa: F401 - registers the classes for deserialization
    import spectral_restore.models.registry  # noqa: F401 - and every architecture

    return keras.saving.load_model(path, compile=False)


def read_metadata(export_dir):
    """The metadata JSON an export carries in its assets."""
    path = os.path.join(os.fspath(export_dir), "assets", METADATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{export_dir} is not a spectral-restore SavedModel export (no assets/{METADATA_FILE})"
        )
    with open(path) as f:
        return json.load(f)


class AudioRestorer:
    """A loaded restoration model: ``restorer(waveform)`` restores ``[batch, samples]``
    float32 audio at ``restorer.sample_rate``; ``restorer.stream(channels)`` restores a
    signal arriving in blocks. Both chunk long inputs on the host
    (:class:`ChunkedRestoration`), and the model sees at most one chunk at a time.

    Args:
        model: str, os.PathLike or keras.Model. A ``.keras`` file, a SavedModel
            export folder (needs TensorFlow), or a model in memory.
        chunk_seconds, overlap_seconds: float or None. Chunking for Keras models (an
            export carries its own, in its metadata). Defaults to
            ``DEFAULT_CHUNK_SECONDS`` and ``DEFAULT_OVERLAP_SECONDS``.
        pad_seconds: float or None. Keras models: an input of at most one chunk is
            zero-padded at its end to a multiple of this (at most the chunk) and the
            output cut back, so a compiled model (XLA, JAX) sees a few input shapes
            instead of one per length; longer inputs are chunks of one shape anyway.
            None restores every input at its own length. Defaults to None.
    """

    def __init__(self, model, chunk_seconds=None, overlap_seconds=None, pad_seconds=None):
        import keras

        if not isinstance(model, keras.Model) and os.path.isdir(os.fspath(model)):
            require_tensorflow("Restoring with a SavedModel")
            import tensorflow as tf

            path = os.fspath(model)
            self.metadata = read_metadata(path)
            signature = tf.saved_model.load(path).signatures["serving_default"]
            # Inputs of at most one chunk, which the export restores whole.
            self._restore_piece = lambda wave: signature(waveform=tf.constant(wave, tf.float32))[
                "restored"
            ].numpy()
            self.source = path
        else:
            network = load_keras_model(model)
            rate = int(getattr(network, "sample_rate", 16000))
            chunk, overlap = chunking(
                rate,
                chunk_seconds or DEFAULT_CHUNK_SECONDS,
                overlap_seconds or DEFAULT_OVERLAP_SECONDS,
            )
            self.metadata = model_metadata(network, chunk, overlap)
            if pad_seconds is not None and not pad_seconds > 0:
                raise ValueError(f"`pad_seconds` must be > 0 or None. Received: {pad_seconds!r}")
            multiple = None if pad_seconds is None else max(1, int(round(pad_seconds * rate)))

            def restore_piece(wave):
                length = wave.shape[1]
                padded = (
                    length if multiple is None else min(chunk, -(-length // multiple) * multiple)
                )
                wave = np.pad(wave, [(0, 0), (0, padded - length)])
                return np.asarray(network.predict_on_batch(wave))[:, :length]

            self._restore_piece = restore_piece
            self.source = model if not isinstance(model, keras.Model) else model.name
        self.sample_rate = int(self.metadata["sample_rate"])
        self.chunk, self.overlap = (
            int(self.metadata["chunk_samples"]),
            int(self.metadata["overlap_samples"]),
        )

    def __call__(self, waveform):
        waveform = np.asarray(waveform)
        if waveform.ndim != 2:
            raise ValueError(
                f"AudioRestorer takes waveforms [batch, samples]; received shape {waveform.shape}"
            )
        if not np.issubdtype(waveform.dtype, np.floating):
            raise TypeError(
                f"AudioRestorer takes float waveforms in [-1, 1]; received dtype {waveform.dtype}"
            )
        return restore_in_chunks(
            self._restore_piece, waveform.astype(np.float32), self.chunk, self.overlap
        )

    def stream(self, channels):
        """A :class:`ChunkedRestoration` of this model for a signal of ``channels``
        rows arriving in blocks: its outputs, concatenated, equal ``self(signal)``."""
        return ChunkedRestoration(self._restore_piece, self.chunk, self.overlap, channels)


@dataclasses.dataclass
class FileResult:
    """What restoring one file did: ``error`` is None on success."""

    source: str
    output: str = None
    sample_rate: int = None
    channels: int = None
    seconds: float = None
    clipped_samples: int = 0
    error: str = None


def output_path(path, out_dir):
    """Same name in ``out_dir``; formats the project cannot write become ``.wav``."""
    stem, extension = os.path.splitext(os.path.basename(path))
    extension = extension.lower() if extension.lower() in WRITE_FORMATS else ".wav"
    return os.path.join(out_dir, stem + extension)


def _output_subtype(subtype, output):
    """The input's sample format ``subtype`` when the output format can hold it, else
    None (the output format's default)."""
    import soundfile as sf

    return subtype if sf.check_format(WRITE_FORMATS[os.path.splitext(output)[1]], subtype) else None


def restore_file(restorer, path, out_dir, plot=False, block_seconds=DEFAULT_BLOCK_SECONDS):
    """Restores ``path`` into ``out_dir`` (same name; formats the project cannot write
    become ``.wav``) with the file's rate, length, channel count and, where the output
    format holds it, sample format.

    The file is read, resampled to the model's rate (:class:`~spectral_restore.audio_io.StreamResampler`),
    restored (:meth:`AudioRestorer.stream`), resampled back and written block by block, so
    memory does not grow with its length; the result equals restoring the whole file
    at once. The output is written under a temporary name in ``out_dir`` and renamed
    when complete, so a failure leaves no partial file. Samples the restoration pushes
    beyond full scale are clipped for integer formats and counted in
    ``FileResult.clipped_samples``. ``plot`` also writes ``<name>.png``, the input's
    and the restored first channel's spectrograms (it keeps both first channels in memory).

    Args:
        restorer: AudioRestorer.
        path: str or os.PathLike. The input file.
        out_dir: str or os.PathLike. The output folder (created).
        plot: bool. Also write the spectrogram PNG. Defaults to False.
        block_seconds: float. Seconds of the input read at a time. Defaults to
            ``DEFAULT_BLOCK_SECONDS``.
    """
    if not block_seconds or not block_seconds > 0:
        raise ValueError(f"`block_seconds` must be > 0. Received: {block_seconds!r}")
    path = os.fspath(path)
    output = output_path(path, os.fspath(out_dir))
    partial = os.path.join(os.path.dirname(output), ".partial-" + os.path.basename(output))
    result = FileResult(source=path)
    shown = ([], [])
    with AudioReader(path) as reader:
        rate, channels = reader.sample_rate, reader.channels
        subtype = _output_subtype(reader.subtype, output)
        clips = (
            subtype is None
            or subtype.startswith("PCM")
            or subtype in ("ULAW", "ALAW", "VORBIS", "OPUS")
        )
        to_model = StreamResampler(rate, restorer.sample_rate, channels)
        chunks = restorer.stream(channels)
        back = StreamResampler(restorer.sample_rate, rate, channels)
        read = 0
        try:
            with AudioWriter(partial, rate, channels, subtype=subtype) as writer:
                for block, last in reader.blocks(max(1, int(round(block_seconds * rate)))):
                    read += block.shape[1]
                    restored = back(chunks(to_model(block, last), last), last)[
                        :, : read - writer.frames
                    ]
                    if last:
                        restored = np.pad(
                            restored, [(0, 0), (0, read - writer.frames - restored.shape[1])]
                        )
                    if clips:
                        result.clipped_samples += int(np.count_nonzero(np.abs(restored) > 1.0))
                        restored = np.clip(restored, -1.0, 1.0)
                    writer.write(restored)
                    if plot:
                        shown[0].append(block[0])
                        shown[1].append(restored[0])
            os.replace(partial, output)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    if plot:
        from spectral_restore.plotting import plot_spectrograms

        plot_spectrograms(
            [("input", np.concatenate(shown[0])), ("restored", np.concatenate(shown[1]))],
            rate,
            os.path.splitext(output)[0] + ".png",
            title=os.path.basename(path),
        )
    result.output, result.sample_rate, result.channels = output, rate, channels
    result.seconds = round(read / rate, 3)
    return result


def restore_files(
    model, paths, out_dir, progress=True, plot=False, block_seconds=DEFAULT_BLOCK_SECONDS
):
    """Restores every file of ``paths`` into ``out_dir``; a file that fails is
    reported in its :class:`FileResult` (``error``) and the others go on.

    Args:
        model: AudioRestorer, or what :class:`AudioRestorer` loads.
        paths: list of str. Input audio files (any format soundfile reads).
        out_dir: str. Output folder (created). Two inputs with the same file
            name would overwrite each other: that is a ``ValueError`` up front.
        progress: bool. Show a progress bar. Defaults to True.
        plot: bool. Also write a spectrogram PNG per file. Defaults to False.
        block_seconds: float. Seconds of each input read at a time (see
            :func:`restore_file`). Defaults to ``DEFAULT_BLOCK_SECONDS``.

    Returns:
        list of FileResult, in the order of ``paths``.
    """
    from tqdm.auto import tqdm

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("No input files given")
    outputs = {}
    for path in paths:
        outputs.setdefault(output_path(path, out_dir), []).append(path)
    clashes = {output: group for output, group in outputs.items() if len(group) > 1}
    if clashes:
        raise ValueError(f"Inputs would overwrite each other in {out_dir}: {clashes}")
    restorer = model if isinstance(model, AudioRestorer) else AudioRestorer(model)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for path in tqdm(paths, desc="restoring", unit="file", disable=not progress):
        try:
            results.append(
                restore_file(restorer, path, out_dir, plot=plot, block_seconds=block_seconds)
            )
        except (OSError, ValueError, RuntimeError) as err:
            results.append(FileResult(source=path, error=f"{type(err).__name__}: {err}"))
    return results


__all__ = [
    "AudioRestorer",
    "FileResult",
    "restore_file",
    "restore_files",
    "ChunkedRestoration",
    "restore_in_chunks",
    "crossfade_window",
    "chunking",
    "model_metadata",
    "load_keras_model",
]
