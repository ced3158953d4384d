"""``tf.data`` pipelines of (damaged, clean) pairs.

:func:`make_dataset` reads clean audio from an in-memory array, a folder or
list of files, a TFDS dataset or any ``tf.data.Dataset`` of waveforms; crops
random segments, normalises their level, batches them and damages each batch
with a seeded :class:`~spectral_restore.data.artifacts.ArtifactChain`.
Unreadable files are skipped and counted in :class:`ReadStats`, never fatal.
TensorFlow only; :class:`~spectral_restore.data.source.AudioDataset` is the same
source for every Keras backend.
"""

import os

import numpy as np

from spectral_restore import spectral
from spectral_restore.audio_io import check_sample_rate
from spectral_restore.backend import host_tensorflow, require_tensorflow
from spectral_restore.data import levels
from spectral_restore.data.artifacts import ArtifactChain
from spectral_restore.data.files import (  # noqa: F401 - noise_pool_from_folder: also importable from here
    AUDIO_EXTENSIONS,
    ReadStats,
    list_audio_files,
    noise_pool_from_folder,
    read_or_skip,
    split_folder,
)
from spectral_restore.data.source import DAMAGE_MODES, OUTPUTS

require_tensorflow("The tf.data pipeline (spectral_restore.data.pipeline)")
import tensorflow as tf  # noqa: E402 - after the check that names what is missing
import tensorflow.experimental.numpy as tnp  # noqa: E402


def _file_dataset(paths, sample_rate, stats):
    paths = [os.fspath(p) for p in paths]

    def generate():
        for path in paths:
            samples = read_or_skip(path, sample_rate, stats)
            if samples is not None:
                yield samples

    return tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec([None], tf.float32))


def _tfds_dataset(name, split, data_dir, sample_rate):
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401 - registers the project's builders with TFDS

    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
    rate = builder.info.features["audio"].sample_rate if "audio" in builder.info.features else None
    if rate is not None and rate != sample_rate:
        raise ValueError(f"TFDS dataset {name} is at {rate} Hz; make_dataset was asked for {sample_rate} Hz")
    return builder.as_dataset(split=split)


def _as_waveforms(dataset):
    """Maps TFDS-style dicts (``{"audio": ...}``) and integer PCM to float32 waveforms."""
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "audio" not in spec:
            raise ValueError(f"Dataset elements are dicts without an 'audio' key: {sorted(spec)}")
        dataset = dataset.map(lambda item: item["audio"], num_parallel_calls=tf.data.AUTOTUNE)
        spec = dataset.element_spec
    if spec.dtype.is_integer:
        scale = float(-spec.dtype.min)
        dataset = dataset.map(lambda x: tf.cast(x, tf.float32) / scale)
    elif spec.dtype != tf.float32:
        dataset = dataset.map(lambda x: tf.cast(x, tf.float32))
    if spec.shape.rank == 2:
        dataset = dataset.map(lambda x: tf.reduce_mean(x, axis=-1))
    return dataset


def tfds_waveforms(name, split="train", data_dir=None, sample_rate=16000):
    """Every waveform of a TFDS dataset's ``split``, as float32 numpy arrays in
    memory: the TFDS reader of :class:`~spectral_restore.data.source.AudioDataset`."""
    host_tensorflow("A TFDS source")
    dataset = _as_waveforms(_tfds_dataset(name, split, data_dir, sample_rate))
    return list(dataset.as_numpy_iterator())


def source_dataset(source, sample_rate=16000, split="train", data_dir=None, stats=None):
    """A dataset of float32 mono waveforms ``[samples]`` from ``source``:
    an array ``[clips, samples]`` or list of 1-D arrays; a folder (its ``split``
    subfolder when it has one) or list of audio files (resampled to ``sample_rate``; unreadable ones skipped and counted
    in ``stats``); ``"tfds:NAME"`` (``split`` of a TFDS dataset); or a
    ``tf.data.Dataset`` of waveforms or ``{"audio": ...}`` dicts."""
    stats = stats if stats is not None else ReadStats()
    if isinstance(source, tf.data.Dataset):
        return _as_waveforms(source)
    if isinstance(source, str) and source.startswith("tfds:"):
        return _as_waveforms(_tfds_dataset(source[len("tfds:") :], split, data_dir, sample_rate))
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
            raise ValueError(f"An array source must be [clips, samples]; received shape {source.shape}")
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
    """A random ``length``-sample crop (stateless, seeded); shorter input is
    zero-padded at the end first."""
    wave = tf.pad(wave, [[0, tf.maximum(length - tf.shape(wave)[0], 0)]])
    room = tf.shape(wave)[0] - length + 1
    start = tf.random.stateless_uniform([], seed, 0, room, dtype=tf.int32, alg="philox")
    return wave[start : start + length]


def make_dataset(
    source,
    *,
    sample_rate=16000,
    segment_seconds=3.0,
    batch_size=16,
    chain="default",
    seed=0,
    output="waveform",
    stft_config=None,
    level_db=-25.0,
    shuffle=True,
    shuffle_buffer=256,
    repeat=False,
    cache=False,
    damage="pipeline",
    return_record=False,
    skip_batches=0,
    split="train",
    data_dir=None,
    stats=None,
):
    """A batched, prefetched ``tf.data.Dataset`` of ``(damaged, clean)`` pairs.

    Args:
        source: see :func:`source_dataset`.
        sample_rate: int. Defaults to 16000.
        segment_seconds: float. Length of the random crops. Defaults to 3.
        batch_size: int. Defaults to 16 (the last partial batch is dropped so
            shapes are static).
        chain: ArtifactChain, a chain name of ``artifacts.CHAINS`` ("default",
            "denoise") or None. Defaults to "default".
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
        split, data_dir: for "tfds:NAME" sources.
        stats: ReadStats or None. Receives the file-reading counts.

    Silent segments (``levels.SILENCE_DB``, -60 dB RMS) are dropped: a pair of
    silences teaches nothing. Level rules: :mod:`spectral_restore.data.levels`.
    """
    sample_rate = check_sample_rate(sample_rate)
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {OUTPUTS}. Received: {output!r}")
    if damage not in DAMAGE_MODES:
        raise ValueError(f"`damage` must be one of {DAMAGE_MODES}. Received: {damage!r}")
    if not segment_seconds or segment_seconds <= 0:
        raise ValueError(f"`segment_seconds` must be > 0. Received: {segment_seconds!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    if damage == "auto":
        damage = "model" if tf.config.list_physical_devices("GPU") else "pipeline"
    if isinstance(chain, str):
        chain = ArtifactChain(chain, sample_rate=sample_rate)
    if damage == "pipeline" and chain is None:
        raise ValueError("damage='pipeline' needs an ArtifactChain (chain=None: use damage='none')")
    stft_config = spectral.as_stft_config(stft_config)
    length = int(round(segment_seconds * sample_rate))
    base_seed = tf.constant([int(seed), 0x5EED], tf.int64)

    dataset = source_dataset(source, sample_rate, split=split, data_dir=data_dir, stats=stats)
    if cache:
        dataset = dataset.cache()
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=int(seed), reshuffle_each_iteration=True)
    dataset = dataset.enumerate()

    def crop(index, wave):
        item_seed = tf.random.experimental.stateless_fold_in(base_seed, index, alg="philox")
        segment = crop_or_pad(wave, length, item_seed)
        return segment

    dataset = dataset.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.filter(lambda wave: tf.logical_not(levels.is_silent(wave, xp=tnp)))
    if level_db is not None:
        dataset = dataset.map(lambda wave: levels.normalise_level(wave, float(level_db), xp=tnp),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=True).enumerate()
    if skip_batches:
        dataset = dataset.skip(int(skip_batches))
    damage_seed = tf.constant([int(seed), 0xDA3A6E], tf.int64)

    def pair(index, clean):
        clean = tf.ensure_shape(clean, [batch_size, length])
        if damage == "pipeline":
            batch_seed = tf.random.experimental.stateless_fold_in(damage_seed, index, alg="philox")
            damaged, record = chain(clean, batch_seed)
        else:
            damaged, record = clean, {}
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
