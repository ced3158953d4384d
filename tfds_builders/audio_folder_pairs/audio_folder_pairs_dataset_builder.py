"""audio_folder_pairs: any folder of clean audio, optionally with damaged copies.

Layout of the manual directory (``--manual_dir`` / ``DownloadConfig(manual_dir=...)``)::

    clean/<any/sub/path>/<name>.(wav|flac|ogg|...)     required
    damaged/<same/sub/path>/<name>.<any audio ext>      optional, matched by path without extension

or the same under ``train/`` and ``test/`` for explicit splits (otherwise all
files form the ``train`` split). Audio is resampled to 16 kHz mono. Unreadable
files are skipped, logged and counted (see the builder's ``skipped`` list after
preparation); a clean file whose damaged copy is missing or unreadable is kept
with an empty ``damaged`` waveform and ``has_damaged=False``.
"""

import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from spectral_restore.audio_io import to_pcm16
from spectral_restore.data.files import list_audio_files, read_or_skip
from tfds_builders.skipped_files import SkippedFilesMixin

SAMPLE_RATE = 16000
logger = logging.getLogger(__name__)


class Builder(SkippedFilesMixin, tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for audio_folder_pairs."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put your audio in the manual directory as clean/... (and optionally damaged/...
    with the same relative paths), or as train/clean, train/damaged, test/clean,
    test/damaged. Any format soundfile reads; any sample rate (resampled to 16 kHz).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": tfds.features.Audio(dtype=np.int16, sample_rate=SAMPLE_RATE),
                    "damaged": tfds.features.Audio(dtype=np.int16, sample_rate=SAMPLE_RATE),
                    "has_damaged": np.bool_,
                    "path": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        if tf.io.gfile.isdir(os.path.join(root, "train", "clean")):
            splits = {
                name: os.path.join(root, name)
                for name in ("train", "test")
                if tf.io.gfile.isdir(os.path.join(root, name, "clean"))
            }
        elif tf.io.gfile.isdir(os.path.join(root, "clean")):
            splits = {"train": root}
        else:
            raise FileNotFoundError(
                f"No clean/ (or train/clean/) folder under {root}. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return {name: self._generate_examples(folder) for name, folder in splits.items()}

    def _read(self, path):
        return read_or_skip(path, SAMPLE_RATE, self.stats)

    def _generate_examples(self, folder):
        clean_root = os.path.join(folder, "clean")
        damaged_root = os.path.join(folder, "damaged")
        damaged_by_stem = {}
        if tf.io.gfile.isdir(damaged_root):
            for path in list_audio_files(damaged_root):
                damaged_by_stem[os.path.splitext(os.path.relpath(path, damaged_root))[0]] = path
        for path in list_audio_files(clean_root):
            relative = os.path.relpath(path, clean_root)
            clean = self._read(path)
            if clean is None:
                continue
            damaged_path = damaged_by_stem.get(os.path.splitext(relative)[0])
            damaged = self._read(damaged_path) if damaged_path else None
            yield (
                relative,
                {
                    "audio": to_pcm16(clean),
                    "damaged": to_pcm16(damaged)
                    if damaged is not None
                    else np.zeros([0], np.int16),
                    "has_damaged": damaged is not None,
                    "path": relative,
                },
            )
        if self.skipped:
            logger.warning(
                "audio_folder_pairs: %d unreadable files skipped so far", len(self.skipped)
            )
