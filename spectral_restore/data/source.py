"""Batches of (damaged, clean) training segments for any Keras backend.

:class:`AudioDataset` is a ``keras.utils.PyDataset``: it reads clean audio from
arrays, folders or lists of files, ``.npz`` files (:func:`save_npz`) and, where
TensorFlow is installed, prepared TFDS datasets; crops seeded random segments,
drops silent ones, normalises the level (:mod:`spectral_restore.data.levels`,
the rules of the ``tf.data`` pipeline) and batches them on the CPU with numpy.
Damage then happens inside the model on the accelerator (``damage="model"``, an
:class:`ArtifactLayer` at the model's input), or in the dataset (``"pipeline"``)
for evaluation.

Recorded pairs (:func:`is_pair_source`: two folders matched by relative path,
``{"damaged": DIR, "clean": DIR}``, or a TFDS dataset with a recorded damaged
field) are read as they are: both sides at the model's rate, one crop and one gain
for both, and no synthetic damage unless ``damage_pairs`` asks for it on top.

Batch ``i`` is a pure function of ``(seed, i)``: batches can be read in any
order, by several workers, and a resumed run (``skip_batches``) reads exactly
the batches the interrupted one had not yet seen. Example ``k`` of the stream is
clip ``order_e[k mod n]`` of epoch ``e = k // n`` (``order_e`` a seeded
permutation of the ``n`` clips, or the identity without ``shuffle``), cropped at
a seeded random start; a crop that is silent, or whose file cannot be read, is
replaced by a seeded random crop of a random clip. Unreadable files are counted
once in :class:`~spectral_restore.data.files.ReadStats` and not read again.
"""

from __future__ import annotations

import collections.abc
import functools
import os
import threading
from typing import Any

import keras
import numpy as np

from spectral_restore import spectral
from spectral_restore._typing import AudioSource
from spectral_restore.audio_io import check_sample_rate
from spectral_restore.backend import require_tensorflow
from spectral_restore.checks import check_choice
from spectral_restore.data import levels, speed
from spectral_restore.data.artifacts import ArtifactChain, RecordingFloor, check_floor
from spectral_restore.data.files import (
    AUDIO_EXTENSIONS,
    PAIR_TOLERANCE_SECONDS,
    FilePair,
    ReadStats,
    as_float32,
    check_pair_tolerance,
    list_audio_files,
    match_pairs,
    read_or_skip,
    read_pair_or_skip,
    split_folder,
)

OUTPUTS = ("waveform", "spectrogram")
DAMAGE_MODES = ("pipeline", "model", "none", "auto")
# Draws tried for one example before the source is declared silent or unreadable.
MAX_DRAWS = 64
# Stream names folded into the seed, so order, crops and damage never share draws.
_ORDER, _CROP, _REDRAW, _DAMAGE, _CACHE, _FLOOR, _SPEED = range(7)


def _rng(*entropy):
    return np.random.default_rng([int(value) for value in entropy])


def _batch_seed(*entropy):
    """A shape-[2] int32 seed for the keras.ops artifacts, from integers."""
    state = np.random.SeedSequence([int(value) for value in entropy]).generate_state(2, np.uint32)
    return (state >> 1).astype(np.int32)


@functools.lru_cache(maxsize=8)
def _epoch_order(seed, epoch, clips, shuffle):
    if not shuffle:
        return np.arange(clips)
    return _rng(seed, _ORDER, epoch).permutation(clips)


def save_npz(path, sample_rate, **splits):
    """Writes clips as a compact ``.npz`` source for :class:`AudioDataset`.

    Each split (``train=[...]``, ``test=[...]``: lists of 1-D arrays, float in
    [-1, 1] or integer PCM, or a ``[clips, samples]`` array) is stored as 16-bit PCM, concatenated
    (``<split>``) with its clip lengths (``<split>_lengths``); the file also holds
    ``sample_rate``.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "speech.npz")
    >>> save_npz(path, 16000, train=[np.zeros(100), np.ones(50) * 0.5])
    >>> [len(clip) for clip in load_npz(path, "train", 16000)]
    [100, 50]
    """
    sample_rate = check_sample_rate(sample_rate)
    if not splits:
        raise ValueError("save_npz needs at least one split, e.g. train=[clip, ...]")
    arrays = {"sample_rate": np.asarray(sample_rate)}
    for split, clips in splits.items():
        clips = [as_float32(clip, split).reshape(-1) for clip in clips]
        if not clips or not all(len(clip) for clip in clips):
            raise ValueError(f"Split {split!r} must hold at least one non-empty clip")
        # Scaled by 32768, the inverse of the reading rule, so float clips that came
        # from 16-bit PCM are stored exactly.
        arrays[split] = np.clip(np.round(np.concatenate(clips) * 32768.0), -32768, 32767).astype(
            np.int16
        )
        arrays[f"{split}_lengths"] = np.asarray([len(clip) for clip in clips], np.int64)
    np.savez_compressed(path, **arrays)


def load_npz(path, split, sample_rate):
    """The clips of ``split`` in an ``.npz`` file, as float32 arrays.

    The file holds ``<split>``: a ``[clips, samples]`` array, or the clips
    concatenated with ``<split>_lengths`` (as :func:`save_npz` writes them);
    integer PCM is scaled to [-1, 1). An optional ``sample_rate`` entry must equal
    ``sample_rate``.
    """
    path = os.fspath(path)
    with np.load(path) as data:
        if "sample_rate" in data and int(data["sample_rate"]) != int(sample_rate):
            raise ValueError(
                f"{path} holds audio at {int(data['sample_rate'])} Hz; {sample_rate} Hz was asked for"
            )
        if split not in data:
            raise ValueError(f"{path} has no split {split!r}; it holds {sorted(data.files)}")
        samples = as_float32(data[split], split)
        lengths = data[f"{split}_lengths"] if f"{split}_lengths" in data else None
    if lengths is None:
        if samples.ndim != 2:
            raise ValueError(
                f"{path}: {split!r} must be [clips, samples] or come with {split}_lengths; "
                f"received shape {samples.shape}"
            )
        return list(samples)
    if samples.ndim != 1 or int(np.sum(lengths)) != len(samples):
        raise ValueError(
            f"{path}: {split}_lengths sum to {int(np.sum(lengths))} but {split!r} has shape {samples.shape}"
        )
    return np.split(samples, np.cumsum(lengths)[:-1])


PAIR_SIDES = ("damaged", "clean")


def folder_pair(source):
    """``(damaged_dir, clean_dir)`` of a folder-pair source ``{"damaged": DIR,
    "clean": DIR}``, or None when ``source`` is not a mapping."""
    if not isinstance(source, collections.abc.Mapping):
        return None
    folders = [source.get(side) for side in PAIR_SIDES]
    if sorted(source) != sorted(PAIR_SIDES) or not all(
        isinstance(folder, (str, os.PathLike)) for folder in folders
    ):
        raise ValueError(
            f"A folder-pair source must be {{'damaged': DIR, 'clean': DIR}}; received {dict(source)!r}"
        )
    return tuple(os.fspath(folder) for folder in folders)


def check_stream_options(
    sample_rate, output, damage, segment_seconds, batch_size, pair_tolerance_seconds
):
    """The checks :class:`AudioDataset` and
    :func:`~spectral_restore.data.pipeline.make_dataset` share; returns the sample
    rate and the pair tolerance as they use them."""
    sample_rate = check_sample_rate(sample_rate)
    check_choice("output", output, OUTPUTS)
    check_choice("damage", damage, DAMAGE_MODES)
    if not segment_seconds or segment_seconds <= 0:
        raise ValueError(f"`segment_seconds` must be > 0. Received: {segment_seconds!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    return sample_rate, check_pair_tolerance(pair_tolerance_seconds, "pair_tolerance_seconds")


def is_pair_source(source, data_dir=None):
    """Whether ``source`` yields recorded ``(damaged, clean)`` pairs: a folder pair
    (:func:`folder_pair`) or ``"tfds:NAME"`` of a dataset with a recorded damaged
    field (``tfds:voicebank_demand/16k``, ``tfds:audio_folder_pairs``; asking needs
    TensorFlow)."""
    if folder_pair(source) is not None:
        return True
    if isinstance(source, str) and source.startswith("tfds:"):
        require_tensorflow("A TFDS source")
        from spectral_restore.data.tfds_sources import tfds_pair_field

        return tfds_pair_field(source[len("tfds:") :], data_dir) is not None
    return False


def folder_pairs(source, split, stats):
    """The :class:`FilePair` list of a folder-pair source (each side's ``split``
    subfolder where it has one); files without a partner are counted in ``stats``
    and reported in one line.

    Raises:
        ValueError: no pair matched.
    """
    damaged_dir, clean_dir = (split_folder(folder, split) for folder in folder_pair(source))
    pairs, problems = match_pairs(damaged_dir, clean_dir)
    stats.record_skips(problems, f"folder pairs {damaged_dir} | {clean_dir}: {len(pairs)} matched")
    if not pairs:
        raise ValueError(
            f"No file of {damaged_dir} has a partner of the same relative path in {clean_dir} "
            f"({len(problems)} unmatched audio files)"
        )
    return pairs


def _clips_of(
    source,
    sample_rate,
    split,
    data_dir,
    stats,
    manual_dir=None,
    tolerance_seconds=PAIR_TOLERANCE_SECONDS,
):
    """The clips of ``source`` and whether they are recorded pairs: in-memory float32
    arrays (``[samples]``, or ``[2, samples]`` for a pair) and file paths or
    :class:`FilePair` items (read lazily)."""
    if folder_pair(source) is not None:
        return folder_pairs(source, split, stats), True
    if isinstance(source, str) and source.startswith("tfds:"):
        require_tensorflow("A TFDS source")
        from spectral_restore.data.tfds_sources import tfds_pair_field, tfds_pairs, tfds_waveforms

        name = source[len("tfds:") :]
        if tfds_pair_field(name, data_dir) is None:
            return tfds_waveforms(name, split, data_dir, sample_rate, manual_dir), False
        pairs = tfds_pairs(name, split, data_dir, sample_rate, manual_dir, stats, tolerance_seconds)
        return [np.stack(pair) for pair in pairs], True
    return _single_clips_of(source, sample_rate, split), False


def _single_clips_of(source, sample_rate, split):
    """The clips of a source of single waveforms: arrays and file paths (read lazily)."""
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source).endswith(".npz"):
            return load_npz(source, split, sample_rate)
        folder = split_folder(source, split)
        paths = list_audio_files(folder)
        if not paths:
            raise ValueError(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
        return paths
    if isinstance(source, np.ndarray):
        source = source[None] if source.ndim == 1 else source
        if source.ndim != 2 or source.shape[1] == 0:
            raise ValueError(
                f"An array source must be [clips, samples]; received shape {source.shape}"
            )
        return list(as_float32(source, "source"))
    if isinstance(source, (list, tuple)) and source:
        if all(isinstance(item, (str, os.PathLike)) for item in source):
            return [os.fspath(item) for item in source]
        return [as_float32(item, "source").reshape(-1) for item in source]
    raise TypeError(
        "`source` must be an array, a list of arrays or files, a folder, an .npz file, 'tfds:NAME' or a folder "
        f"pair {{'damaged': DIR, 'clean': DIR}}; received {type(source).__name__}"
    )


class AudioDataset(keras.utils.PyDataset):
    """A ``keras.utils.PyDataset`` of ``(damaged, clean)`` batches, for every backend.

    The arguments mean what they mean for
    :func:`~spectral_restore.data.pipeline.make_dataset` (the ``tf.data``
    version), so one config drives both.

    Args:
        source: an array ``[clips, samples]`` or list of 1-D arrays; a folder
            (recursive; when it holds a subfolder named ``split``, that one) or
            list of audio files, resampled to ``sample_rate``; an ``.npz`` file
            (:func:`load_npz`); or ``"tfds:NAME"``, a prepared TFDS dataset's
            ``split`` (needs TensorFlow; read into memory). Recorded pairs: a
            folder pair ``{"damaged": DIR, "clean": DIR}`` (files matched by
            relative path without extension, :func:`~spectral_restore.data.files.match_pairs`;
            each side's ``split`` subfolder where it has one) or a TFDS dataset with
            a recorded damaged field (``"tfds:voicebank_demand/16k"``,
            ``"tfds:audio_folder_pairs"``): one crop and one level gain for both
            sides, the silence rule on the clean side.
        sample_rate: int. Both sides of a pair are resampled to it. Defaults to 16000.
        segment_seconds: float. Length of the random crops (shorter clips are
            zero-padded at the end). Defaults to 3.
        batch_size: int. Defaults to 16.
        chain: ArtifactChain, a chain name of ``artifacts.CHAINS`` or None. For
            ``damage="pipeline"``. Defaults to "default".
        damage_pairs, pair_tolerance_seconds: for recorded pairs, as in
            ``make_dataset``: whether ``damage`` also acts on top of the recorded
            damage (defaults to False: the pairs as recorded), and the largest
            length difference trimmed rather than skipped (defaults to 0.05 s).
        floor: RecordingFloor or None. Adds a recording's background to a share of
            clean segments before the damage, on both sides of the pair (recorded
            pairs have their own and get none). Defaults to None.
        speed_perturb: (low, high) or None. Each segment is read at a speed factor
            drawn uniformly from it and resampled to the segment's length
            (:mod:`~spectral_restore.data.speed`). Defaults to None.
        seed: int. Order, crops and damage all derive from it. Defaults to 0.
        output: str. "waveform" or "spectrogram" (``[batch, frames, bins, 2]``).
            Defaults to "waveform".
        stft_config: STFTConfig, dict or None. For "spectrogram". Defaults to None.
        level_db: float or None. RMS level of clean segments, dB re full scale;
            None keeps the level. Defaults to -25.
        shuffle: bool. A new seeded clip order every epoch. Defaults to True.
        repeat: bool. An endless stream (``num_batches`` is None); else one
            epoch is ``clips // batch_size`` batches. Defaults to False.
        cache: bool. Keep decoded files in memory. Defaults to False.
        damage: str. "pipeline" damages each batch here with ``chain`` (seeded by
            the batch index; on the backend's device); "model" and "none" yield
            ``(clean, clean)`` ("model": for an ``ArtifactLayer`` in the model);
            "auto" is "model". Defaults to "pipeline".
        return_record: bool. Also yield the chain's record (numpy arrays) as a
            third element. Defaults to False.
        skip_batches: int. Batch ``i`` is the stream's batch ``i + skip_batches``:
            a resumed run continues exactly. Defaults to 0.
        cache_batches: int. > 0: the first ``cache_batches`` batches are made
            once, kept in memory and cycled, reshuffled (seeded) on each cycle.
            Defaults to 0.
        split, data_dir: the TFDS split and data folder; ``split`` also picks an
            ``.npz`` entry and a folder's subfolder. Defaults to "train", None.
        manual_dir: str or None. Where a TFDS dataset's manual downloads are
            (VoiceBank+DEMAND's archives); None: TFDS's default
            (``<data_dir>/downloads/manual``). Defaults to None.
        stats: ReadStats or None. Receives the file-reading counts, unreadable
            files, files without a partner and pairs of too different lengths.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.

    Example:
    >>> clips = np.random.default_rng(0).standard_normal((8, 4000)).astype("float32")
    >>> data = AudioDataset(clips, segment_seconds=0.125, batch_size=4, damage="none")
    >>> damaged, clean = data[0]
    >>> damaged.shape, len(data)
    ((4, 2000), 2)
    """

    def __init__(
        self,
        source: AudioSource,
        *,
        sample_rate: int = 16000,
        segment_seconds: float = 3.0,
        batch_size: int = 16,
        chain: ArtifactChain | str | None = "default",
        damage_pairs: bool = False,
        pair_tolerance_seconds: float = PAIR_TOLERANCE_SECONDS,
        floor: RecordingFloor | None = None,
        speed_perturb: tuple[float, float] | None = None,
        seed: int = 0,
        output: str = "waveform",
        stft_config: spectral.STFTConfig | dict | None = None,
        level_db: float | None = -25.0,
        shuffle: bool = True,
        repeat: bool = False,
        cache: bool = False,
        damage: str = "pipeline",
        return_record: bool = False,
        skip_batches: int = 0,
        cache_batches: int = 0,
        split: str = "train",
        data_dir: str | None = None,
        manual_dir: str | None = None,
        stats: ReadStats | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sample_rate, self.pair_tolerance_seconds = check_stream_options(
            sample_rate, output, damage, segment_seconds, batch_size, pair_tolerance_seconds
        )
        for name, value in (("skip_batches", skip_batches), ("cache_batches", cache_batches)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0. Received: {value!r}")
        self.damage = "model" if damage == "auto" else damage
        self.stats = stats if stats is not None else ReadStats()
        self.clips, self.paired = _clips_of(
            source,
            self.sample_rate,
            split,
            data_dir,
            self.stats,
            manual_dir,
            self.pair_tolerance_seconds,
        )
        self.damage_pairs = bool(damage_pairs)
        # Only "pipeline" damages here (recorded pairs: only when asked to); the other
        # modes leave the chain to the model.
        damages_here = self.damage == "pipeline" and (self.damage_pairs or not self.paired)
        if damages_here and chain is None:
            raise ValueError(
                "damage='pipeline' needs an ArtifactChain (chain=None: use damage='none')"
            )
        if damages_here and isinstance(chain, str):
            chain = ArtifactChain(chain, sample_rate=self.sample_rate)
        self.chain = chain if damages_here else None
        self.floor = None if self.paired else check_floor(floor)
        self.speed_perturb = speed.check_speed_range(speed_perturb)
        self.output = output
        self.stft_config = spectral.as_stft_config(stft_config)
        self.length = int(round(segment_seconds * self.sample_rate))
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.level_db = None if level_db is None else float(level_db)
        self.shuffle, self.repeat, self.cache = bool(shuffle), bool(repeat), bool(cache)
        self.return_record = bool(return_record)
        self.skip_batches, self.cache_batches = int(skip_batches), int(cache_batches)
        if not self.repeat and len(self.clips) < self.batch_size:
            raise ValueError(
                f"The source has {len(self.clips)} clips, fewer than one batch of {self.batch_size} "
                "(repeat=True, or a smaller batch_size)"
            )
        self.epoch = 0
        self._lock = threading.Lock()
        self._decoded = {}
        self._unreadable = set()
        self._made = {}

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch: ``clips // batch_size``, or None for an endless stream."""
        return None if self.repeat else len(self.clips) // self.batch_size

    def __len__(self):
        if self.repeat:
            raise TypeError("An endless AudioDataset (repeat=True) has no length; see num_batches")
        return self.num_batches

    def on_epoch_end(self) -> None:
        """A finite dataset moves on to the next epoch's order and crops."""
        if not self.repeat:
            self.epoch += 1

    def _read(self, clip):
        """Samples of a file, ``[2, samples]`` of a :class:`FilePair`, or None (counted)."""
        if isinstance(clip, FilePair):
            pair = read_pair_or_skip(
                clip, self.sample_rate, self.stats, self.pair_tolerance_seconds
            )
            return None if pair is None else np.stack(pair)
        return read_or_skip(clip, self.sample_rate, self.stats)

    def _clip(self, index):
        """Samples of clip ``index`` (``[2, samples]`` for a recorded pair), or None
        when its files cannot be read or do not pair (counted in ``stats`` the first
        time, then not read again)."""
        clip = self.clips[index]
        if isinstance(clip, np.ndarray):
            return clip
        with self._lock:
            if clip in self._unreadable:
                return None
            if clip in self._decoded:
                return self._decoded[clip]
        samples = self._read(clip)
        with self._lock:
            if samples is None:
                self._unreadable.add(clip)
            elif self.cache:
                self._decoded[clip] = samples
        return samples

    def utterance(self, index: int) -> np.ndarray | None:
        """Clip ``index`` whole, at any length, levelled as the crops are (``level_db``;
        a recorded pair by one gain for both sides): float32 ``[samples]``, or
        ``[2, samples]`` (damaged, clean) for recorded pairs; None when its files
        cannot be read or do not pair (counted in ``stats``). For whole-utterance
        evaluation; training reads crops."""
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < len(self.clips)
        ):
            raise IndexError(f"Clip index must be in [0, {len(self.clips)}); received {index!r}")
        samples = self._clip(int(index))
        if samples is None:
            return None
        if self.level_db is not None and self.paired:
            samples = np.stack(levels.normalise_pair_level(samples[0], samples[1], self.level_db))
        elif self.level_db is not None:
            samples = levels.normalise_level(samples, self.level_db)
        return np.asarray(samples, np.float32)

    def _crop(self, samples, rng, length):
        """A ``length`` crop along the last axis: both sides of a pair at one start."""
        room = samples.shape[-1] - length
        if room < 0:
            return np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(0, -room)])
        start = int(rng.integers(0, room + 1))
        return samples[..., start : start + length]

    def _example(self, position):
        """Example ``position`` of the stream: a levelled, audible ``[length]`` crop
        (``[2, length]``, damaged and clean, for recorded pairs)."""
        clips = len(self.clips)
        epoch, offset = divmod(position, clips)
        index = int(_epoch_order(self.seed, epoch, clips, self.shuffle)[offset])
        rng = _rng(self.seed, _CROP, position)
        length = self.length
        if self.speed_perturb is not None:
            factor = _rng(self.seed, _SPEED, position).uniform(*self.speed_perturb)
            length = int(speed.source_length(self.length, factor))
        for draw in range(MAX_DRAWS):
            if draw:
                redraw = _rng(self.seed, _REDRAW, position, draw)
                index, rng = int(redraw.integers(0, clips)), redraw
            samples = self._clip(index)
            if samples is None:
                continue
            segment = self._crop(samples, rng, length)
            if length != self.length:
                segment = speed.resample(segment, length, self.length)
            if not levels.is_silent(segment[-1] if self.paired else segment):
                if self.level_db is not None and self.paired:
                    segment = np.stack(
                        levels.normalise_pair_level(segment[0], segment[1], self.level_db)
                    )
                elif self.level_db is not None:
                    segment = levels.normalise_level(segment, self.level_db)
                return segment.astype(np.float32)
        raise ValueError(
            f"No audible {self.length}-sample segment in {MAX_DRAWS} draws from the source "
            f"(segments below {levels.SILENCE_DB} dB RMS are silence; {self.stats.files_skipped} files unreadable)"
        )

    def _stream_batch(self, batch):
        """Batch ``batch`` of the stream, damaged as ``damage`` says (recorded pairs:
        their damaged side, with the chain on top only for ``damage_pairs``)."""
        start = batch * self.batch_size
        examples = np.stack([self._example(start + j) for j in range(self.batch_size)])
        if self.floor is not None:
            floor_seed = _batch_seed(self.seed, _FLOOR, batch)
            examples = keras.ops.convert_to_numpy(self.floor(examples, floor_seed))
        recorded, clean = (examples[:, 0], examples[:, 1]) if self.paired else (examples, examples)
        if self.chain is not None:
            damaged, record = self.chain(recorded, _batch_seed(self.seed, _DAMAGE, batch))
            damaged = keras.ops.convert_to_numpy(damaged)
            record = keras.tree.map_structure(keras.ops.convert_to_numpy, record)
        else:
            damaged, record = recorded, {}
        if self.output == "spectrogram":
            damaged, clean = (
                keras.ops.convert_to_numpy(
                    spectral.stack_complex(*spectral.stft(wave, self.stft_config))
                )
                for wave in (damaged, clean)
            )
        return (damaged, clean, record) if self.return_record else (damaged, clean)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise IndexError(f"AudioDataset batches are numbered 0, 1, ...; received {index!r}")
        if not self.repeat:
            if index >= self.num_batches:
                raise IndexError(f"Batch {index} of a {self.num_batches}-batch epoch")
            index += self.epoch * self.num_batches
        position = int(index) + self.skip_batches
        if not self.cache_batches:
            return self._stream_batch(position)
        cycle, offset = divmod(position, self.cache_batches)
        batch = int(_rng(self.seed, _CACHE, cycle).permutation(self.cache_batches)[offset])
        with self._lock:
            made = self._made.get(batch)
        if made is None:
            made = self._stream_batch(batch)
            with self._lock:
                made = self._made.setdefault(batch, made)
        return made


__all__ = [
    "AudioDataset",
    "save_npz",
    "load_npz",
    "folder_pair",
    "folder_pairs",
    "is_pair_source",
    "OUTPUTS",
    "DAMAGE_MODES",
    "PAIR_SIDES",
]
