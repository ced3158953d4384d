"""Reading TFDS datasets: clean waveforms and recorded (damaged, clean) pairs.

A dataset is looked up by name through TFDS (``tfds.builder``), so its builder
must be registered first: the project's builders register when ``tfds_builders``
is imported (the training entry points do it; a dataset already prepared in
``data_dir`` is read without its builder). TensorFlow only; the ``tf.data``
pipeline (:mod:`~spectral_restore.data.pipeline`) and the backend-neutral
:class:`~spectral_restore.data.source.AudioDataset` both read TFDS through here.
"""

import os

import numpy as np

from spectral_restore.audio_io import resample_numpy
from spectral_restore.backend import host_tensorflow, require_tensorflow
from spectral_restore.data.files import PAIR_TOLERANCE_SECONDS, ReadStats, as_float32, check_pair

require_tensorflow("The TFDS readers (spectral_restore.data.tfds_sources)")
import tensorflow as tf  # noqa: E402 - after the check that names what is missing

# Fields of a TFDS dataset that hold the recorded damaged side of its "audio":
# voicebank_demand's "noisy", audio_folder_pairs' "damaged".
TFDS_DAMAGED_FIELDS = ("noisy", "damaged")


def tfds_builder(name, data_dir=None):
    """The TFDS builder of dataset ``name`` (registered, or prepared in ``data_dir``).

    Raises:
        ValueError: TFDS knows no dataset of that name.
    """
    import tensorflow_datasets as tfds

    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        # TFDS's own message lists every dataset it knows; this one says how to fix it.
        raise ValueError(
            f"TFDS has no dataset {name!r}: import the module that registers its builder first "
            "(the project's builders: `import tfds_builders`), or prepare it in `data_dir`"
        ) from None


def tfds_dataset(name, split, data_dir, sample_rate=None, manual_dir=None):
    """The prepared ``split`` of TFDS dataset ``name`` and its builder; with
    ``sample_rate``, a dataset at another rate is an error."""
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir)
    download_config = (
        None
        if manual_dir is None
        else tfds.download.DownloadConfig(manual_dir=os.path.expanduser(os.fspath(manual_dir)))
    )
    builder.download_and_prepare(download_config=download_config)
    rate = builder.info.features["audio"].sample_rate if "audio" in builder.info.features else None
    if sample_rate is not None and rate is not None and rate != sample_rate:
        raise ValueError(
            f"TFDS dataset {name} is at {rate} Hz; make_dataset was asked for {sample_rate} Hz"
        )
    return builder.as_dataset(split=split), builder


def tfds_pair_field(name, data_dir=None):
    """The field of TFDS dataset ``name`` that holds the recorded damaged side of
    its ``"audio"`` (one of ``TFDS_DAMAGED_FIELDS``), or None: a dataset of clean
    audio only. Reads the builder's description; prepares nothing."""
    host_tensorflow("A TFDS source")
    features = tfds_builder(name, data_dir).info.features
    if "audio" not in features:
        return None
    return next((field for field in TFDS_DAMAGED_FIELDS if field in features), None)


def _mono(samples, name):
    samples = as_float32(samples, name)
    return samples.mean(axis=-1) if samples.ndim == 2 else samples


def tfds_pairs(
    name,
    split="train",
    data_dir=None,
    sample_rate=16000,
    manual_dir=None,
    stats=None,
    tolerance_seconds=PAIR_TOLERANCE_SECONDS,
):
    """The recorded ``(damaged, clean)`` pairs of a TFDS dataset's ``split``, as
    float32 numpy arrays at ``sample_rate`` (resampled on the host when the dataset
    is at another rate), one by one.

    An example without its damaged side (``has_damaged`` false in
    ``audio_folder_pairs``) and a pair whose lengths differ by more than
    ``tolerance_seconds`` (:func:`~spectral_restore.data.files.check_pair`) are
    skipped and counted in ``stats`` under ``"NAME/SPLIT/<id or path>"``.

    Raises:
        ValueError: the dataset has no recorded damaged field.
    """
    host_tensorflow("A TFDS source")
    stats = stats if stats is not None else ReadStats()
    field = tfds_pair_field(name, data_dir)
    if field is None:
        raise ValueError(
            f"TFDS dataset {name} holds no recorded damaged audio (none of {TFDS_DAMAGED_FIELDS})"
        )
    dataset, builder = tfds_dataset(name, split, data_dir, manual_dir=manual_dir)
    rate = builder.info.features["audio"].sample_rate
    for index, item in enumerate(dataset.as_numpy_iterator()):
        label = item.get("path", item.get("id", index))
        label = f"{name}/{split}/{label.decode() if isinstance(label, bytes) else label}"
        if not item.get("has_damaged", True):
            stats.record_skip(label, f"no {field} partner")
            continue
        damaged, clean = _mono(item[field], field), _mono(item["audio"], "audio")
        if rate != sample_rate:
            damaged, clean = (
                resample_numpy(side, rate, sample_rate).astype(np.float32)
                for side in (damaged, clean)
            )
        pair = check_pair(label, damaged, clean, sample_rate, stats, tolerance_seconds)
        if pair is not None:
            yield pair


def waveform_dataset(dataset):
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


def tfds_waveforms(name, split="train", data_dir=None, sample_rate=16000, manual_dir=None):
    """Every waveform of a TFDS dataset's ``split``, as float32 numpy arrays in
    memory: the TFDS reader of :class:`~spectral_restore.data.source.AudioDataset`."""
    host_tensorflow("A TFDS source")
    dataset = waveform_dataset(tfds_dataset(name, split, data_dir, sample_rate, manual_dir)[0])
    return list(dataset.as_numpy_iterator())
