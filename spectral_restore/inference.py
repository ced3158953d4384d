"""Restoring audio files with a trained model: ``spectral-restore restore``.

A model is a ``.keras`` file (any Keras backend) or a SavedModel folder written by
:func:`spectral_restore.export.export_saved_model` (needs TensorFlow). Both restore
long inputs chunk by chunk with the same crossfade (:func:`restore_in_chunks` on
the host for Keras models; the export carries the same in TensorFlow ops), so
memory stays bounded on long files. Each file is read at its own rate and channel
count, resampled to the model's rate, restored channel by channel (the channels
form the batch), resampled back and written with its original rate, length,
channel count and, where the output format allows it, its original sample format.
"""

import dataclasses
import os

import numpy as np

from spectral_restore import __version__
from spectral_restore.audio_io import WRITE_FORMATS, read_audio, resample, write_audio
from spectral_restore.backend import require_tensorflow

EXPORT_FORMAT = 1
DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_OVERLAP_SECONDS = 0.5


def crossfade_window(chunk, overlap):
    """The chunk weight ``w`` of :func:`restore_in_chunks`: ``[chunk]`` float32,
    ``sin^2`` ramps of ``overlap`` samples at both ends (never exactly 0, so the
    normalising sum is positive at the edges too)."""
    ramp = np.sin(np.pi * (np.arange(overlap) + 0.5) / (2 * overlap)) ** 2
    window = np.ones(chunk)
    window[:overlap] = ramp
    window[chunk - overlap :] = ramp[::-1]
    return window.astype(np.float32)


def chunking(sample_rate, chunk_seconds=DEFAULT_CHUNK_SECONDS, overlap_seconds=DEFAULT_OVERLAP_SECONDS):
    """``(chunk, overlap)`` in samples, after checking the durations."""
    if not chunk_seconds or chunk_seconds <= 0:
        raise ValueError(f"`chunk_seconds` must be > 0. Received: {chunk_seconds!r}")
    if overlap_seconds is None or overlap_seconds <= 0 or overlap_seconds >= chunk_seconds / 2:
        raise ValueError(
            f"`overlap_seconds` must be in (0, chunk_seconds / 2) = (0, {chunk_seconds / 2}). "
            f"Received: {overlap_seconds!r}"
        )
    return int(round(chunk_seconds * sample_rate)), max(1, int(round(overlap_seconds * sample_rate)))


def restore_in_chunks(restore, waveform, chunk, overlap):
    """Applies ``restore`` to ``waveform`` ``[batch, samples]`` in crossfaded chunks.

    Formula: with chunk length L, overlap O and hop H = L - O, chunk k covers samples
    ``[kH, kH + L)`` (the input zero-padded at the end to whole chunks) and is
    weighted by ``w`` (1 in the middle, ``sin^2`` ramps of O samples at both ends,
    ``sin^2 + cos^2 = 1`` across each overlap); the output is
    ``y[n] = sum_k w[n - kH] f(x_k)[n - kH] / sum_k w[n - kH]``. Inputs of at most
    L samples are restored whole.

    Args:
        restore: callable. ``[batch, L]`` float32 numpy -> same shape.
        waveform: float32 array ``[batch, samples]``.
        chunk, overlap: int. L and O in samples, ``0 < O < L / 2``.

    Example:
    >>> x = np.random.default_rng(0).standard_normal((2, 1000)).astype("float32")
    >>> y = restore_in_chunks(lambda piece: 2 * piece, x, chunk=300, overlap=50)
    >>> bool(np.allclose(y, 2 * x, atol=1e-6))
    True
    """
    length = waveform.shape[1]
    if length <= chunk:
        return np.asarray(restore(waveform), np.float32)
    hop = chunk - overlap
    count = (length - overlap + hop - 1) // hop
    padded = np.pad(waveform, [(0, 0), (0, overlap + count * hop - length)])
    window = crossfade_window(chunk, overlap)
    total = np.zeros(padded.shape, np.float64)
    norm = np.zeros(padded.shape[1], np.float64)
    for start in range(0, count * hop, hop):
        total[:, start : start + chunk] += window * np.asarray(restore(padded[:, start : start + chunk]), np.float64)
        norm[start : start + chunk] += window
    return (total[:, :length] / norm[:length]).astype(np.float32)


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


class Restorer:
    """A loaded restoration model: ``restorer(waveform)`` restores ``[batch, samples]``
    float32 audio at ``restorer.sample_rate``.

    Args:
        model: str, os.PathLike or keras.Model. A ``.keras`` file, a SavedModel
            export folder (needs TensorFlow), or a model in memory.
        chunk_seconds, overlap_seconds: float or None. Chunking for Keras models (an
            export carries its own). Defaults to ``DEFAULT_CHUNK_SECONDS`` and
            ``DEFAULT_OVERLAP_SECONDS``.
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

            from spectral_restore import export

            path = os.fspath(model)
            self.metadata = export.read_metadata(path)
            signature = tf.saved_model.load(path).signatures["serving_default"]
            self._function = lambda wave: signature(waveform=tf.constant(wave, tf.float32))["restored"].numpy()
            self.source = path
        else:
            network = load_keras_model(model)
            rate = int(getattr(network, "sample_rate", 16000))
            chunk, overlap = chunking(rate, chunk_seconds or DEFAULT_CHUNK_SECONDS,
                                      overlap_seconds or DEFAULT_OVERLAP_SECONDS)
            self.metadata = model_metadata(network, chunk, overlap)
            if pad_seconds is not None and not pad_seconds > 0:
                raise ValueError(f"`pad_seconds` must be > 0 or None. Received: {pad_seconds!r}")
            multiple = None if pad_seconds is None else max(1, int(round(pad_seconds * rate)))

            def function(wave):
                length = wave.shape[1]
                padded = length if multiple is None or length > chunk else min(chunk, -(-length // multiple) * multiple)
                wave = np.pad(wave, [(0, 0), (0, padded - length)])
                return restore_in_chunks(network.predict_on_batch, wave, chunk, overlap)[:, :length]

            self._function = function
            self.source = model if not isinstance(model, keras.Model) else model.name
        self.sample_rate = int(self.metadata["sample_rate"])

    def __call__(self, waveform):
        waveform = np.asarray(waveform)
        if waveform.ndim != 2:
            raise ValueError(f"Restorer takes waveforms [batch, samples]; received shape {waveform.shape}")
        if not np.issubdtype(waveform.dtype, np.floating):
            raise TypeError(f"Restorer takes float waveforms in [-1, 1]; received dtype {waveform.dtype}")
        return self._function(waveform.astype(np.float32))


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


def _output_path(path, out_dir):
    """Same name in ``out_dir``; formats the project cannot write become ``.wav``."""
    stem, extension = os.path.splitext(os.path.basename(path))
    extension = extension.lower() if extension.lower() in WRITE_FORMATS else ".wav"
    return os.path.join(out_dir, stem + extension)


def _output_subtype(path, output):
    """The input's sample format when the output format can hold it, else None (the default)."""
    import soundfile as sf

    try:
        subtype = sf.info(path).subtype
    except (RuntimeError, sf.LibsndfileError):
        return None
    return subtype if sf.check_format(WRITE_FORMATS[os.path.splitext(output)[1]], subtype) else None


def restore_file(restorer, path, out_dir, plot=False):
    """Restores ``path`` into ``out_dir`` (same name; formats the project cannot write
    become ``.wav``). Samples the restoration pushes beyond full scale are clipped
    for integer formats and counted in ``FileResult.clipped_samples``. ``plot``
    also writes ``<name>.png``, the input's and the restored first channel's spectrograms."""
    path = os.fspath(path)
    result = FileResult(source=path)
    samples, rate = read_audio(path, mono=False)
    channels, length = samples.shape
    at_model_rate = np.asarray(resample(samples, rate, restorer.sample_rate), np.float32)
    restored = restorer(at_model_rate)
    restored = np.asarray(resample(restored, restorer.sample_rate, rate), np.float32)
    restored = np.pad(restored, [(0, 0), (0, max(0, length - restored.shape[1]))])[:, :length]
    output = _output_path(path, out_dir)
    subtype = _output_subtype(path, output)
    if subtype is None or subtype.startswith("PCM") or subtype in ("ULAW", "ALAW", "VORBIS", "OPUS"):
        result.clipped_samples = int(np.count_nonzero(np.abs(restored) > 1.0))
        restored = np.clip(restored, -1.0, 1.0)
    write_audio(output, restored[0] if channels == 1 else restored, rate, subtype=subtype)
    if plot:
        from spectral_restore.plotting import plot_spectrograms

        plot_spectrograms([("input", samples[0]), ("restored", restored[0])], rate,
                          os.path.splitext(output)[0] + ".png", title=os.path.basename(path))
    result.output, result.sample_rate, result.channels = output, rate, channels
    result.seconds = round(length / rate, 3)
    return result


def restore_files(model, paths, out_dir, progress=True, plot=False):
    """Restores every file of ``paths`` into ``out_dir``; a file that fails is
    reported in its :class:`FileResult` (``error``) and the others go on.

    Args:
        model: Restorer, or what :class:`Restorer` loads.
        paths: list of str. Input audio files (any format soundfile reads).
        out_dir: str. Output folder (created). Two inputs with the same file
            name would overwrite each other: that is a ``ValueError`` up front.
        progress: bool. Show a progress bar. Defaults to True.
        plot: bool. Also write a spectrogram PNG per file. Defaults to False.

    Returns:
        list of FileResult, in the order of ``paths``.
    """
    from tqdm.auto import tqdm

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("No input files given")
    outputs = {}
    for path in paths:
        outputs.setdefault(_output_path(path, out_dir), []).append(path)
    clashes = {output: group for output, group in outputs.items() if len(group) > 1}
    if clashes:
        raise ValueError(f"Inputs would overwrite each other in {out_dir}: {clashes}")
    restorer = model if isinstance(model, Restorer) else Restorer(model)
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for path in tqdm(paths, desc="restoring", unit="file", disable=not progress):
        try:
            results.append(restore_file(restorer, path, out_dir, plot=plot))
        except (OSError, ValueError, RuntimeError) as err:
            results.append(FileResult(source=path, error=f"{type(err).__name__}: {err}"))
    return results


__all__ = [
    "Restorer", "FileResult", "restore_file", "restore_files", "restore_in_chunks", "crossfade_window",
    "chunking", "model_metadata", "load_keras_model",
]
