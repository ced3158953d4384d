"""Restoring audio files with a trained model: ``spectral-restore restore``.

A model is a ``.keras`` file or a SavedModel folder written by
:func:`spectral_restore.export.export_saved_model`; both restore through the
same chunked, crossfaded function, so memory stays bounded on long files.
Each file is read at its own rate and channel count, resampled to the model's
rate, restored channel by channel (the channels form the batch), resampled back
and written with its original rate, length, channel count and, where the output
format allows it, its original sample format.
"""

import dataclasses
import json
import os

import numpy as np

from spectral_restore.audio_io import WRITE_FORMATS, read_audio, resample, write_audio


class Restorer:
    """A loaded restoration model: ``restorer(waveform)`` restores ``[batch, samples]``
    float32 audio at ``restorer.sample_rate``.

    Args:
        model: str, os.PathLike or keras.Model. A ``.keras`` file, a SavedModel
            export folder, or a model in memory.
        chunk_seconds, overlap_seconds: float. Chunking for Keras models (an export
            carries its own). Defaults to those of :mod:`spectral_restore.export`.
    """

    def __init__(self, model, chunk_seconds=None, overlap_seconds=None):
        import keras
        import tensorflow as tf

        from spectral_restore import export

        chunking = {
            "chunk_seconds": chunk_seconds or export.DEFAULT_CHUNK_SECONDS,
            "overlap_seconds": overlap_seconds or export.DEFAULT_OVERLAP_SECONDS,
        }
        if not isinstance(model, keras.Model) and os.path.isdir(os.fspath(model)):
            path = os.fspath(model)
            self.metadata = export.read_metadata(path)
            self._function = tf.saved_model.load(path).signatures["serving_default"]
            self.source = path
        else:
            server = export.RestorationServer(export.load_keras_model(model), **chunking)
            self.metadata = json.loads(server.metadata_text)
            self._server = server  # a tf.function method holds its object only weakly
            self._function = server.restore
            self.source = model if not isinstance(model, keras.Model) else model.name
        self.sample_rate = int(self.metadata["sample_rate"])

    def __call__(self, waveform):
        import tensorflow as tf

        waveform = np.asarray(waveform)
        if waveform.ndim != 2:
            raise ValueError(f"Restorer takes waveforms [batch, samples]; received shape {waveform.shape}")
        if not np.issubdtype(waveform.dtype, np.floating):
            raise TypeError(f"Restorer takes float waveforms in [-1, 1]; received dtype {waveform.dtype}")
        return self._function(waveform=tf.constant(waveform, tf.float32))["restored"].numpy()


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


__all__ = ["Restorer", "FileResult", "restore_file", "restore_files"]
