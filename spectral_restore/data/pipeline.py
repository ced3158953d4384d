"""``tf.data`` pipelines of (damaged, clean) pairs.

:func:`make_dataset` reads clean audio from an in-memory array, a folder or
list of files, a TFDS dataset or any ``tf.data.Dataset`` of waveforms; crops
random segments, normalises their level, batches them and damages each batch
with a seeded :class:`~spectral_restore.data.artifacts.ArtifactChain`. Recorded
pairs (two folders matched by relative path, or a TFDS dataset with a recorded
damaged field) keep their recorded damage: one crop and one gain for both sides,
the chain only on top when asked for.
Unreadable files are skipped and counted in :class:`ReadStats`, never fatal.
TensorFlow only; :class:`~spectral_restore.data.source.AudioDataset` is the same
source for every Keras backend.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from spectral_restore import spectral
from spectral_restore._typing import AudioSource
from spectral_restore.backend import require_tensorflow
from spectral_restore.data import levels, speed
from spectral_restore.data.artifacts import ArtifactChain, RecordingFloor, check_floor
from spectral_restore.data.files import (
    AUDIO_EXTENSIONS,
    PAIR_TOLERANCE_SECONDS,
    ReadStats,
    list_audio_files,
    read_or_skip,
    read_pair_or_skip,
    split_folder,
)
from spectral_restore.data.source import check_stream_options, folder_pair, folder_pairs

require_tensorflow("The tf.data pipeline (spectral_restore.data.pipeline)")
import tensorflow as tf  # noqa: E402 - after the check that names what is missing
import tensorflow.experimental.numpy as tnp  # noqa: E402

from spectral_restore.data.tfds_sources import (  # noqa: E402 - it needs TensorFlow too
    tfds_dataset,
    tfds_pair_field,
    tfds_pairs,
    waveform_dataset,
)

PAIR_SPEC = tf.TensorSpec([2, None], tf.float32)


def _file_dataset(paths, sample_rate, stats):
    paths = [os.fspath(p) for p in paths]

    def generate():
        for path in paths:
            samples = read_or_skip(path, sample_rate, stats)
            if samples is not None:
                yield samples

    return tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec([None], tf.float32)
    )


def _file_pair_dataset(pairs, sample_rate, stats, tolerance_seconds):
    """``[2, samples]`` (damaged, clean) of each readable :class:`FilePair`."""

    def generate():
        for pair in pairs:
            samples = read_pair_or_skip(pair, sample_rate, stats, tolerance_seconds)
            if samples is not None:
                yield np.stack(samples)

    return tf.data.Dataset.from_generator(generate, output_signature=PAIR_SPEC)


def pair_dataset(
    source,
    sample_rate=16000,
    split="train",
    data_dir=None,
    manual_dir=None,
    stats=None,
    tolerance_seconds=PAIR_TOLERANCE_SECONDS,
):
    """A dataset of recorded pairs ``[2, samples]`` (damaged, clean; float32 at
    ``sample_rate``) from a folder pair ``{"damaged": DIR, "clean": DIR}`` or a TFDS
    dataset with a recorded damaged field (``"tfds:voicebank_demand/16k"``), or None
    when ``source`` is neither. Files without a partner, unreadable files and pairs
    whose lengths differ by more than ``tolerance_seconds`` are skipped and counted
    in ``stats``."""
    stats = stats if stats is not None else ReadStats()
    if folder_pair(source) is not None:
        return _file_pair_dataset(
            folder_pairs(source, split, stats), sample_rate, stats, tolerance_seconds
        )
    if (
        isinstance(source, str)
        and source.startswith("tfds:")
        and tfds_pair_field(source[len("tfds:") :], data_dir)
    ):
        # Prepared here, so that a missing manual download is an error now rather than
        # one wrapped in a tf.data error at the first batch.
        tfds_dataset(source[len("tfds:") :], split, data_dir, manual_dir=manual_dir)
        pairs = functools.partial(
            tfds_pairs,
            source[len("tfds:") :],
            split,
            data_dir,
            sample_rate,
            manual_dir,
            stats,
            tolerance_seconds,
        )
        return tf.data.Dataset.from_generator(
            lambda: (np.stack(pair) for pair in pairs()), output_signature=PAIR_SPEC
        )
    return None


def source_dataset(
    source, sample_rate=16000, split="train", data_dir=None, stats=None, manual_dir=None
):
    """A dataset of float32 mono waveforms ``[samples]`` from ``source``:
    an array ``[clips, samples]`` or list of 1-D arrays; a folder (its ``split``
    subfolder when it has one) or list of audio files (resampled to ``sample_rate``; unreadable ones skipped and counted
    in ``stats``); ``"tfds:NAME"`` (``split`` of a TFDS dataset, its clean ``"audio"``); or a
    ``tf.data.Dataset`` of waveforms or ``{"audio": ...}`` dicts."""
    stats = stats if stats is not None else ReadStats()
    if isinstance(source, tf.data.Dataset):
        return waveform_dataset(source)
    if isinstance(source, str) and source.startswith("tfds:"):
        return waveform_dataset(
            tfds_dataset(source[len("tfds:") :], split, data_dir, sample_rate, manual_dir)[0]
        )
    if isinstance(source, (str, os.PathLike)):
        folder = split_folder(source, split)
        paths = list_audio_files(folder)
        if not paths:
            raise ValueError(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
        return _file_dataset(paths, sample_rate, stats)
    if isinstance(source, np.ndarray):
        if source.ndim == 1:
            source = source[None]
        if source.ndim != 2 or source.shape[1] == 0:
            raise ValueError(
                f"An array source must be [clips, samples]; received shape {source.shape}"
            )
        return tf.data.Dataset.from_tensor_slices(source.astype(np.float32))
    if isinstance(source, (list, tuple)) and source:
        if all(isinstance(item, (str, os.PathLike)) for item in source):
            return _file_dataset(source, sample_rate, stats)
        arrays = [np.asarray(item, np.float32).reshape(-1) for item in source]
        return tf.data.Dataset.from_generator(
            lambda: iter(arrays), output_signature=tf.TensorSpec([None], tf.float32)
        )
    raise TypeError(
        "`source` must be an array, a list of arrays or files, a folder, 'tfds:NAME' or a tf.data.Dataset; "
        f"received {type(source).__name__}"
    )


def crop_or_pad(wave, length, seed):
    """A random ``length``-sample crop along the last axis (stateless, seeded): the
    rows of a stacked pair ``[2, samples]`` share one start. Shorter input is
    zero-padded at the end first."""
    padding = [[0, 0]] * (wave.shape.rank - 1) + [[0, tf.maximum(length - tf.shape(wave)[-1], 0)]]
    wave = tf.pad(wave, padding)
    room = tf.shape(wave)[-1] - length + 1
    start = tf.random.stateless_uniform([], seed, 0, room, dtype=tf.int32, alg="philox")
    return wave[..., start : start + length]


def make_dataset(
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
    shuffle_buffer: int = 256,
    repeat: bool = False,
    cache: bool = False,
    damage: str = "pipeline",
    return_record: bool = False,
    skip_batches: int = 0,
    split: str = "train",
    data_dir: str | None = None,
    manual_dir: str | None = None,
    stats: ReadStats | None = None,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(damaged, clean)`` pairs.

    Args:
        source: see :func:`source_dataset`; or recorded pairs (:func:`pair_dataset`):
            a folder pair ``{"damaged": DIR, "clean": DIR}`` (files matched by
            relative path without extension; each side's ``split`` subfolder
            where it has one) or a TFDS dataset with a recorded damaged field
            (``"tfds:voicebank_demand/16k"``, ``"tfds:audio_folder_pairs"``). A
            pair gets one crop and one level gain for both sides; the silence rule
            looks at its clean side.
        sample_rate: int. Both sides of a pair are resampled to it. Defaults to 16000.
        segment_seconds: float. Length of the random crops. Defaults to 3.
        batch_size: int. Defaults to 16 (the last partial batch is dropped so
            shapes are static).
        chain: ArtifactChain, a chain name of ``artifacts.CHAINS`` ("default",
            "denoise") or None. Defaults to "default".
        damage_pairs: bool. With recorded pairs, also apply ``damage`` on top of
            the recorded damage; False yields the recorded pairs as they are (no
            chain here, whatever ``damage`` says). Defaults to False.
        pair_tolerance_seconds: float. A pair whose sides differ in length by more
            is skipped and counted; a smaller difference is trimmed off the longer
            side's end. Defaults to ``PAIR_TOLERANCE_SECONDS`` (0.05 s).
        floor: RecordingFloor or None. Adds a recording's background to a share of
            clean segments before the damage, on both sides of the pair (recorded
            pairs have their own and get none). Defaults to None.
        speed_perturb: (low, high) or None. Each segment's speed factor is drawn
            uniformly from it: ``round(length * factor)`` samples are read and
            resampled to the segment's length (:mod:`~spectral_restore.data.speed`),
            faster and higher-pitched above 1, both sides of a pair alike. None
            reads the segments as they are. Defaults to None.
        seed: int. Crops, shuffling and damage are all derived from it: the same
            seed gives the same pairs. Defaults to 0.
        output: str. "waveform" (``[batch, samples]``) or "spectrogram"
            (``[batch, frames, bins, 2]`` with ``stft_config``). Defaults to "waveform".
        stft_config: STFTConfig, dict or None. For "spectrogram". Defaults to None.
        level_db: float or None. RMS level of clean segments, dB re full scale;
            None keeps the level. Defaults to -25.
        shuffle, shuffle_buffer, repeat, cache: the usual tf.data knobs.
        damage: str. "pipeline" damages batches in ``tf.data``; "model" yields
            ``(clean, clean)`` for an :class:`ArtifactLayer` at the model's input,
            so the damage runs on the accelerator inside ``train_step``; "none"
            yields clean pairs; "auto" is "model" when a GPU is visible.
            Defaults to "pipeline".
        return_record: bool. Also yield the chain's record (which artifacts, how
            strong) as a third element. Defaults to False.
        skip_batches: int. Leave out the first batches of the stream (their damage is
            not computed): a resumed run continues with exactly the batches it
            had not yet seen. Defaults to 0.
        split, data_dir: for "tfds:NAME" sources (``split`` also picks a folder's
            subfolder).
        manual_dir: str or None. Where a TFDS dataset's manual downloads are
            (VoiceBank+DEMAND's archives); None: TFDS's default
            (``<data_dir>/downloads/manual``). Defaults to None.
        stats: ReadStats or None. Receives the file-reading counts, unreadable
            files, files without a partner and pairs of too different lengths.

    Silent segments (``levels.SILENCE_DB``, -60 dB RMS) are dropped: a pair of
    silences teaches nothing. Level rules: :mod:`spectral_restore.data.levels`.
    """
    sample_rate, pair_tolerance_seconds = check_stream_options(
        sample_rate, output, damage, segment_seconds, batch_size, pair_tolerance_seconds
    )
    if damage == "auto":
        damage = "model" if tf.config.list_physical_devices("GPU") else "pipeline"
    stats = stats if stats is not None else ReadStats()
    floor = check_floor(floor)
    speed_perturb = speed.check_speed_range(speed_perturb)
    dataset = pair_dataset(
        source, sample_rate, split, data_dir, manual_dir, stats, pair_tolerance_seconds
    )
    paired = dataset is not None
    if not paired:
        dataset = source_dataset(
            source, sample_rate, split=split, data_dir=data_dir, stats=stats, manual_dir=manual_dir
        )
    # Recorded pairs keep their damage; the chain acts on top only when asked to.
    damages_here = damage == "pipeline" and (damage_pairs or not paired)
    if isinstance(chain, str):
        chain = ArtifactChain(chain, sample_rate=sample_rate)
    if damages_here and chain is None:
        raise ValueError("damage='pipeline' needs an ArtifactChain (chain=None: use damage='none')")
    stft_config = spectral.as_stft_config(stft_config)
    length = int(round(segment_seconds * sample_rate))
    base_seed = tf.constant([int(seed), 0x5EED], tf.int64)
    speed_seed = tf.constant([int(seed), 0x59EED], tf.int64)
    if cache:
        dataset = dataset.cache()
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=int(seed), reshuffle_each_iteration=True)
    dataset = dataset.enumerate()

    def crop(index, wave):
        item_seed = tf.random.experimental.stateless_fold_in(base_seed, index, alg="philox")
        if speed_perturb is None:
            return crop_or_pad(wave, length, item_seed)
        factor = tf.random.stateless_uniform(
            [],
            tf.random.experimental.stateless_fold_in(speed_seed, index, alg="philox"),
            *speed_perturb,
            alg="philox",
        )
        samples = speed.source_length(length, factor, xp=tnp)
        segment = crop_or_pad(wave, samples, item_seed)
        return speed.resample(segment, samples, length, xp=tnp, fft=speed.tf_fft())

    def clean_side(wave):
        return wave[1] if paired else wave

    def level(wave):
        if paired:
            return tf.stack(levels.normalise_pair_level(wave[0], wave[1], float(level_db), xp=tnp))
        return levels.normalise_level(wave, float(level_db), xp=tnp)

    dataset = dataset.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.filter(
        lambda wave: tf.logical_not(levels.is_silent(clean_side(wave), xp=tnp))
    )
    if level_db is not None:
        dataset = dataset.map(level, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=True).enumerate()
    if skip_batches:
        dataset = dataset.skip(int(skip_batches))
    damage_seed = tf.constant([int(seed), 0xDA3A6E], tf.int64)
    floor_seed = tf.constant([int(seed), 0xF1004], tf.int64)

    def pair(index, batch):
        if paired:
            batch = tf.ensure_shape(batch, [batch_size, 2, length])
            recorded, clean = batch[:, 0], batch[:, 1]
        else:
            recorded = clean = tf.ensure_shape(batch, [batch_size, length])
            if floor is not None:
                batch_floor_seed = tf.random.experimental.stateless_fold_in(
                    floor_seed, index, alg="philox"
                )
                recorded = clean = floor(clean, batch_floor_seed)
        if damages_here:
            batch_seed = tf.random.experimental.stateless_fold_in(damage_seed, index, alg="philox")
            damaged, record = chain(recorded, batch_seed)
        else:
            damaged, record = recorded, {}
        if output == "spectrogram":
            damaged = spectral.stack_complex(*spectral.stft(damaged, stft_config))
            clean = spectral.stack_complex(*spectral.stft(clean, stft_config))
        if return_record:
            return damaged, clean, record
        return damaged, clean

    dataset = dataset.map(pair, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Under multi-worker training, shard by element (a generator or TFDS source has no files to split).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
