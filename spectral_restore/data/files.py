"""Finding and reading audio files for training data, on any Keras backend.

Unreadable files are skipped and counted in :class:`ReadStats`, never fatal and
never silent. Local paths need nothing but the standard library; remote paths
(``gs://...``, ``s3://...``: any ``scheme://``) are walked with ``tf.io.gfile``
and therefore need TensorFlow.
"""

import dataclasses
import logging
import os
import threading

import numpy as np

from spectral_restore.audio_io import AudioReadError, is_remote_path, read_audio
from spectral_restore.backend import require_tensorflow

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ReadStats:
    """What reading a file source did: files read, files skipped and why.
    Updated while a dataset is iterated (thread-safe)."""

    files_read: int = 0
    files_skipped: int = 0
    skipped: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()

    def record_ok(self):
        with self._lock:
            self.files_read += 1

    def record_skip(self, path, reason):
        with self._lock:
            self.files_skipped += 1
            self.skipped.append((str(path), str(reason)))
        logger.warning("skipping unreadable audio: %s", reason if str(path) in str(reason) else f"{path}: {reason}")

    def summary(self):
        lines = [f"{self.files_read} files read, {self.files_skipped} skipped"]
        lines += [f"  {reason if path in reason else path + ': ' + reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def _gfile(path):
    require_tensorflow(f"Reading the remote path {path}")
    import tensorflow as tf

    return tf.io.gfile


def _isdir(path):
    return _gfile(path).isdir(path) if is_remote_path(path) else os.path.isdir(path)


def _walk(folder):
    if not _isdir(folder):
        raise FileNotFoundError(f"Audio folder not found: {folder}")
    return _gfile(folder).walk(folder) if is_remote_path(folder) else os.walk(folder)


def list_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Audio files under ``folder`` (recursive, sorted), by extension (case-insensitive).

    Args:
        folder: str or os.PathLike. A local folder, or a ``scheme://`` URL that
            ``tf.io.gfile`` reads (needs TensorFlow).
        extensions: tuple of str. Lower-case extensions with the dot. Defaults to
            ``AUDIO_EXTENSIONS``.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
    """
    folder = os.fspath(folder)
    found = []
    for root, _, files in _walk(folder):
        for name in files:
            if name.lower().endswith(tuple(extensions)):
                found.append(os.path.join(root, name))
    return sorted(found)


def split_folder(folder, split):
    """``folder/split`` when ``folder`` holds a subfolder named ``split`` (say
    ``train/`` and ``test/``), else ``folder`` itself: a folder source's splits."""
    folder = os.fspath(folder)
    candidate = os.path.join(folder, split) if split else folder
    return candidate if _isdir(candidate) else folder


def read_or_skip(path, sample_rate, stats):
    """Mono samples of ``path`` at ``sample_rate``, or None when the file cannot be
    read; either way the outcome is counted in ``stats``."""
    try:
        samples, _ = read_audio(path, sample_rate=sample_rate)
    except (AudioReadError, FileNotFoundError, OSError) as err:
        stats.record_skip(path, err)
        return None
    stats.record_ok()
    return samples


def match_pairs(damaged_dir, clean_dir, extensions=AUDIO_EXTENSIONS):
    """Audio files of two folders paired by relative path without the extension
    (``damaged/a/b.mp3`` with ``clean/a/b.wav``), as the ``audio_folder_pairs``
    builder pairs them.

    Args:
        damaged_dir, clean_dir: str or os.PathLike. Existing folders.
        extensions: tuple of str. As for :func:`list_audio_files`.

    Returns:
        ``(pairs, damaged_only, clean_only)``: ``pairs`` is a sorted list of
        ``(key, damaged_path, clean_path)``; the other two list the keys of files
        without a partner.

    Raises:
        ValueError: a folder does not exist, or two files of one folder share a key
            (``x.wav`` and ``x.flac``).
    """
    found = []
    for name, folder in (("damaged_dir", damaged_dir), ("clean_dir", clean_dir)):
        folder = os.fspath(folder)
        if not _isdir(folder):
            raise ValueError(f"`{name}` must be an existing folder. Received: {folder!r}")
        by_key = {}
        for path in list_audio_files(folder, extensions):
            key = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "/")
            if key in by_key:
                raise ValueError(f"Two files in {folder} pair as {key!r}: {by_key[key]} and {path}")
            by_key[key] = path
        found.append(by_key)
    damaged, clean = found
    pairs = [(key, damaged[key], clean[key]) for key in sorted(set(damaged) & set(clean))]
    return pairs, sorted(set(damaged) - set(clean)), sorted(set(clean) - set(damaged))


def noise_pool_from_folder(folder, sample_rate=16000, seconds=10.0, stats=None):
    """Noise recordings of ``folder`` as a ``[clips, samples]`` pool for
    ``ArtifactChain(noise_pool=...)`` and its "noise_file" link: each file resampled,
    looped or cut to ``seconds``; unreadable files skipped and counted in ``stats``."""
    stats = stats if stats is not None else ReadStats()
    length = int(round(seconds * sample_rate))
    clips = []
    for path in list_audio_files(folder):
        samples = read_or_skip(path, sample_rate, stats)
        if samples is not None:
            clips.append(np.tile(samples, -(-length // len(samples)))[:length])
    if not clips:
        raise ValueError(f"No readable noise recordings under {os.fspath(folder)}")
    return np.stack(clips).astype(np.float32)


__all__ = [
    "AUDIO_EXTENSIONS", "ReadStats", "list_audio_files", "split_folder", "read_or_skip", "match_pairs",
    "noise_pool_from_folder",
]
