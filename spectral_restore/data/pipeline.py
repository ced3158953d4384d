"""``tf.data`` pipelines of (damaged, clean) pairs.

:func:`make_dataset` reads clean audio from an in-memory array, a folder or
list of files, a TFDS dataset or any ``tf.data.Dataset`` of waveforms; crops
random segments, normalises their level, batches them and damages each batch
with a seeded :class:`~spectral_restore.data.artifacts.ArtifactChain`.
Unreadable files are skipped and counted in :class:`ReadStats`, never fatal.
"""

import dataclasses
import logging
import os
import threading

import numpy as np
import tensorflow as tf

from spectral_restore import spectral
from spectral_restore.audio_io import AudioReadError, check_sample_rate, read_audio
from spectral_restore.data.artifacts import ArtifactChain

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
OUTPUTS = ("waveform", "spectrogram")
DAMAGE_MODES = ("pipeline", "model", "none", "auto")
# Segments quieter than this (RMS, dB re full scale) are silence, not speech.
SILENCE_DB = -60.0

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ReadStats:
    """What reading a file source did: files read, files skipped and why,
    segments dropped as silent. Updated while the dataset is iterated."""

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


def list_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Audio files under ``folder`` (recursive, sorted), by extension. Uses
    ``tf.io.gfile``, so any filesystem TensorFlow reads works."""
    folder = os.fspath(folder)
    if not tf.io.gfile.isdir(folder):
        raise FileNotFoundError(f"Audio folder not found: {folder}")
    found = []
    for root, _, files in tf.io.gfile.walk(folder):
        for name in files:
            if name.lower().endswith(extensions):
                found.append(os.path.join(root, name))
    return sorted(found)


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


def source_dataset(source, sample_rate=16000, split="train", data_dir=None, stats=None):
    """A dataset of float32 mono waveforms ``[samples]`` from ``source``:
    an array ``[clips, samples]`` or list of 1-D arrays; a folder or list of
    audio files (resampled to ``sample_rate``; unreadable ones skipped and counted
    in ``stats``); ``"tfds:NAME"`` (``split`` of a TFDS dataset); or a
    ``tf.data.Dataset`` of waveforms or ``{"audio": ...}`` dicts."""
    stats = stats if stats is not None else ReadStats()
    if isinstance(source, tf.data.Dataset):
        return _as_waveforms(source)
    if isinstance(source, str) and source.startswith("tfds:"):
        return _as_waveforms(_tfds_dataset(source[len("tfds:") :], split, data_dir, sample_rate))
    if isinstance(source, (str, os.PathLike)):
        paths = list_audio_files(source)
        if not paths:
            raise ValueError(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) under {os.fspath(source)}")
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


def normalise_level(wave, level_db, peak=0.99):
    """Scales to ``level_db`` dB RMS re full scale, then down if the peak would
    exceed ``peak`` (so clipping artifacts have headroom to act on)."""
    rms = tf.sqrt(tf.reduce_mean(tf.square(wave)) + 1e-12)
    wave = wave * (10.0 ** (level_db / 20.0) / rms)
    top = tf.reduce_max(tf.abs(wave))
    return wave * tf.minimum(1.0, peak / tf.maximum(top, 1e-12))


def _rms_db(wave):
    return 10.0 * tf.math.log(tf.reduce_mean(tf.square(wave)) + 1e-12) / tf.math.log(10.0)


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

    Silent segments (below -60 dB RMS) are dropped: a pair of silences teaches
    nothing.
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
    dataset = dataset.filter(lambda wave: _rms_db(wave) > SILENCE_DB)
    if level_db is not None:
        dataset = dataset.map(lambda wave: normalise_level(wave, float(level_db)), num_parallel_calls=tf.data.AUTOTUNE)
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
