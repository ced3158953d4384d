"""voicebank_demand: noisy speech database of Valentini-Botinhao et al. (2016/2017).

28 speakers of the VoiceBank corpus mixed with DEMAND noises for training
(11,572 utterances), and 2 unseen speakers with other noises for testing (824
utterances), at 48 kHz; the ``16k`` config resamples to 16 kHz (the usual
benchmark setting), ``48k`` keeps the original rate.

The data cannot be downloaded automatically here; see MANUAL_DOWNLOAD_INSTRUCTIONS.
"""

import os

import numpy as np
import tensorflow_datasets as tfds

from spectral_restore.audio_io import to_pcm16
from spectral_restore.data.files import list_audio_files, read_or_skip
from tfds_builders.skipped_files import SkippedFilesMixin

ARCHIVES = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
}


class Builder(SkippedFilesMixin, tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for voicebank_demand."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="16k", description="Resampled to 16 kHz."),
        tfds.core.BuilderConfig(name="48k", description="Original 48 kHz."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download these four archives of "Noisy speech database for training speech
    enhancement algorithms and TTS models" (Valentini-Botinhao, University of
    Edinburgh DataShare, doi:10.7488/ds/2117):
        clean_trainset_28spk_wav.zip, noisy_trainset_28spk_wav.zip,
        clean_testset_wav.zip, noisy_testset_wav.zip
    and put them (or their extracted folders of the same names) in the manual
    directory, by default ~/tensorflow_datasets/downloads/manual/, or pass
    `download_config=tfds.download.DownloadConfig(manual_dir=...)`.
    """

    @property
    def sample_rate(self):
        return 16000 if self.builder_config.name == "16k" else 48000

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": tfds.features.Audio(dtype=np.int16, sample_rate=self.sample_rate),
                    "noisy": tfds.features.Audio(dtype=np.int16, sample_rate=self.sample_rate),
                    "speaker": tfds.features.Text(),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("noisy", "audio"),
            homepage="https://datashare.ed.ac.uk/handle/10283/2791",
        )

    def _folder(self, dl_manager, name):
        manual = dl_manager.manual_dir
        extracted = manual / name
        if extracted.is_dir():
            return os.fspath(extracted)
        archive = manual / f"{name}.zip"
        if archive.exists():
            return os.fspath(dl_manager.extract(archive))
        raise FileNotFoundError(
            f"voicebank_demand: neither {archive} nor the folder {extracted} exists.\n"
            f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(
                self._folder(dl_manager, clean), self._folder(dl_manager, noisy)
            )
            for split, (clean, noisy) in ARCHIVES.items()
        }

    def _read(self, path):
        return read_or_skip(path, self.sample_rate, self.stats)

    def _generate_examples(self, clean_folder, noisy_folder):
        noisy_by_name = {os.path.basename(p): p for p in list_audio_files(noisy_folder)}
        for clean_path in list_audio_files(clean_folder):
            name = os.path.basename(clean_path)
            if name not in noisy_by_name:
                self.stats.record_skip(clean_path, "no noisy file of the same name")
                continue
            clean = self._read(clean_path)
            noisy = self._read(noisy_by_name[name])
            if clean is None or noisy is None:
                continue
            length = min(len(clean), len(noisy))
            utterance = os.path.splitext(name)[0]
            yield (
                utterance,
                {
                    "audio": to_pcm16(clean[:length]),
                    "noisy": to_pcm16(noisy[:length]),
                    "speaker": utterance.split("_")[0],
                    "id": utterance,
                },
            )
