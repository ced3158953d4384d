"""Finding and reading audio files for training data, on any Keras backend.

Unreadable files are skipped and counted in :class:`ReadStats`, never fatal and
never silent. Recorded pairs (a damaged recording and its clean reference) come
from two folders matched by relative path (:func:`match_pairs`) and are read
together (:func:`read_pair_or_skip`); a file without a partner, or a pair whose
lengths differ by more than a tolerance, is skipped and counted the same way.
Local paths need nothing but the standard library; remote paths (``gs://...``,
``s3://...``: any ``scheme://``) are walked with ``tf.io.gfile`` and therefore
need TensorFlow.
"""

import collections
import dataclasses
import logging
import os
import threading

import numpy as np

from spectral_restore.audio_io import AudioReadError, is_remote_path, read_audio
from spectral_restore.backend import require_tensorflow

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
# Largest length difference of a recorded pair that is trimmed away (the longer side
# loses its end) rather than skipped: a few frames of encoder padding, or the one
# sample two resampled sides can differ by; anything longer is not the same take.
PAIR_TOLERANCE_SECONDS = 0.05
# Names a summary line lists before "and N more".
SUMMARY_NAMES = 5

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ReadStats:
    """What reading a file source did: files read, files skipped and why (each
    skipped file and reason counted once, however often a stream meets it).
    Updated while a dataset is iterated (thread-safe)."""

    files_read: int = 0
    files_skipped: int = 0
    skipped: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._seen = set()

    def record_ok(self):
        with self._lock:
            self.files_read += 1

    def _add(self, problems):
        """Counts the ``(path, reason)`` of ``problems`` not counted before (a stream
        that passes over its source again meets the same files again); returns them."""
        with self._lock:
            new = [problem for problem in dict.fromkeys(problems) if problem not in self._seen]
            self._seen.update(new)
            self.files_skipped += len(new)
            self.skipped.extend(new)
        return new

    def record_skip(self, path, reason):
        """Counts ``path`` as skipped for ``reason`` (once) and logs it."""
        if self._add([(str(path), str(reason))]):
            logger.warning("skipping audio: %s", _describe(str(path), str(reason)))

    def record_skips(self, problems, what):
        """Counts every ``(path, reason)`` of ``problems`` as skipped (once) and logs
        them in one line that begins with ``what`` (a folder of thousands of unmatched
        files would otherwise flood the log)."""
        problems = self._add([(str(path), str(reason)) for path, reason in problems])
        if not problems:
            return
        listed = "; ".join(f"{path} ({reason})" for path, reason in problems[:SUMMARY_NAMES])
        more = (
            f"; and {len(problems) - SUMMARY_NAMES} more" if len(problems) > SUMMARY_NAMES else ""
        )
        logger.warning("%s: %d files skipped: %s%s", what, len(problems), listed, more)

    def messages(self):
        """One ``"path: reason"`` line per skip (the reason alone where it names the path)."""
        return [_describe(path, reason) for path, reason in self.skipped]

    def summary(self):
        lines = [f"{self.files_read} files read, {self.files_skipped} skipped"]
        lines += [f"  {message}" for message in self.messages()]
        return "\n".join(lines)


def as_float32(array, name):
    """Integer PCM scaled to [-1, 1) (by ``-dtype.min``), floats cast to float32."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"`{name}` must hold float or integer PCM samples; received dtype {array.dtype}"
        )
    return array.astype(np.float32)


def _describe(path, reason):
    return reason if path in reason else f"{path}: {reason}"


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


FilePair = collections.namedtuple("FilePair", ["name", "damaged", "clean"])
FilePair.__doc__ = """A recorded pair: ``name`` (relative path without extension), ``damaged`` and ``clean`` paths."""


def _by_stem(folder, extensions):
    """``{relative path without extension: [paths]}`` of the audio files under ``folder``."""
    stems = {}
    for path in list_audio_files(folder, extensions):
        stem = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "/")
        stems.setdefault(stem, []).append(path)
    return stems


def match_pairs(damaged_dir, clean_dir, extensions=AUDIO_EXTENSIONS):
    """Pairs the audio files of two folders by relative path without extension.

    ``damaged_dir/a/b.flac`` pairs with ``clean_dir/a/b.wav``: the formats may
    differ, the sub-paths and names may not. A file with no partner, and the files
    of a name that is ambiguous on one side (``b.wav`` beside ``b.flac``), are
    problems, never silently left out.

    Args:
        damaged_dir: str or os.PathLike. The damaged recordings (local, or a
            ``scheme://`` URL with TensorFlow).
        clean_dir: str or os.PathLike. Their clean references.
        extensions: tuple of str. Audio extensions (lower case, with the dot).
            Defaults to ``AUDIO_EXTENSIONS``.

    Returns:
        ``(pairs, problems)``: ``pairs`` a list of :class:`FilePair` sorted by name;
        ``problems`` a list of ``(path, reason)``, as :meth:`ReadStats.record_skips`
        takes them.

    Raises:
        FileNotFoundError: either folder does not exist.

    Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for path in ("damaged/x.flac", "damaged/y.wav", "clean/x.wav"):
    ...     (root / path).parent.mkdir(exist_ok=True)
    ...     (root / path).touch()
    >>> pairs, problems = match_pairs(root / "damaged", root / "clean")
    >>> [pair.name for pair in pairs], [reason for _, reason in problems]
    (['x'], ['no clean partner'])
    """
    damaged_dir, clean_dir = os.fspath(damaged_dir), os.fspath(clean_dir)
    sides = {"damaged": _by_stem(damaged_dir, extensions), "clean": _by_stem(clean_dir, extensions)}
    pairs, problems = [], []
    for side, other in (("damaged", "clean"), ("clean", "damaged")):
        for stem, paths in sides[side].items():
            if len(paths) > 1:
                problems += [
                    (path, f"ambiguous: {len(paths)} {side} files named {stem}.*") for path in paths
                ]
            elif stem not in sides[other]:
                problems.append((paths[0], f"no {other} partner"))
    for stem in sorted(sides["damaged"].keys() & sides["clean"].keys()):
        damaged, clean = sides["damaged"][stem], sides["clean"][stem]
        if len(damaged) == 1 and len(clean) == 1:
            pairs.append(FilePair(stem, damaged[0], clean[0]))
        elif len(damaged) == 1:
            problems.append(
                (damaged[0], f"clean partner ambiguous ({len(clean)} files named {stem}.*)")
            )
        elif len(clean) == 1:
            problems.append(
                (clean[0], f"damaged partner ambiguous ({len(damaged)} files named {stem}.*)")
            )
    return pairs, sorted(problems)


def check_pair_tolerance(seconds, name="tolerance_seconds"):
    """``seconds`` as a float, or ``ValueError`` naming ``name`` unless it is a number >= 0."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float, np.integer, np.floating))
        or seconds < 0
    ):
        raise ValueError(f"`{name}` must be a number of seconds >= 0. Received: {seconds!r}")
    return float(seconds)


def check_pair(name, damaged, clean, sample_rate, stats, tolerance_seconds=PAIR_TOLERANCE_SECONDS):
    """A recorded pair trimmed to its shorter side, or None (counted in ``stats``
    under ``name``) when the lengths differ by more than ``tolerance_seconds``.

    Formula: skipped when ``|len(damaged) - len(clean)| / sample_rate > tolerance_seconds``;
    otherwise both keep their first ``min(len(damaged), len(clean))`` samples. No
    time alignment is done: the two recordings must start together.

    Args:
        name: str. What the skip is recorded under (a path or a pair's name).
        damaged, clean: 1-D float arrays at ``sample_rate``.
        sample_rate: int. Hz.
        stats: ReadStats. Receives the skip.
        tolerance_seconds: float. Defaults to ``PAIR_TOLERANCE_SECONDS`` (0.05 s).
    """
    tolerance_seconds = check_pair_tolerance(tolerance_seconds)
    difference = abs(len(damaged) - len(clean)) / float(sample_rate)
    if difference > tolerance_seconds:
        stats.record_skip(
            name,
            f"lengths differ by {difference:.3f} s (damaged {len(damaged) / sample_rate:.3f} s, "
            f"clean {len(clean) / sample_rate:.3f} s; tolerance {tolerance_seconds} s)",
        )
        return None
    length = min(len(damaged), len(clean))
    return damaged[:length], clean[:length]


def read_pair_or_skip(pair, sample_rate, stats, tolerance_seconds=PAIR_TOLERANCE_SECONDS):
    """``(damaged, clean)`` samples of a :class:`FilePair`, both resampled to
    ``sample_rate`` and checked by :func:`check_pair`; None when either file cannot
    be read or the lengths differ too much (counted in ``stats`` either way)."""
    damaged = read_or_skip(pair.damaged, sample_rate, stats)
    clean = read_or_skip(pair.clean, sample_rate, stats)
    if damaged is None or clean is None:
        return None
    return check_pair(pair.damaged, damaged, clean, sample_rate, stats, tolerance_seconds)


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
    "AUDIO_EXTENSIONS",
    "PAIR_TOLERANCE_SECONDS",
    "ReadStats",
    "FilePair",
    "list_audio_files",
    "split_folder",
    "read_or_skip",
    "match_pairs",
    "check_pair_tolerance",
    "check_pair",
    "read_pair_or_skip",
    "noise_pool_from_folder",
    "as_float32",
]
