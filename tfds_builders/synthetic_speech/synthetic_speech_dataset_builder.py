"""synthetic_speech: clean 16 kHz speech synthesized offline.

Sentences from the Harvard lists (IEEE Recommended Practice for Speech Quality
Measurements, 1969) are spoken by espeak-ng voices (several languages and voice
variants) and flite voices. Splits are by voice: the test voices never occur in
training, so evaluation measures generalisation to unseen speakers.
Nothing is downloaded; espeak-ng and flite must be installed
(``apt-get install espeak-ng flite``).
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from spectral_restore.audio_io import to_pcm16
from spectral_restore.data.speech import HARVARD_SENTENCES, synthesize

SAMPLE_RATE = 16000

TRAIN_VOICES = (
    ("espeak-ng", "en-us"),
    ("espeak-ng", "en-us+f3"),
    ("espeak-ng", "en-gb+m3"),
    ("espeak-ng", "en-gb-scotland+f2"),
    ("espeak-ng", "en-us+m7"),
    ("espeak-ng", "de+f4"),
    ("espeak-ng", "fr-fr+m2"),
    ("espeak-ng", "es+f1"),
    ("espeak-ng", "it+m4"),
    ("espeak-ng", "nl+f5"),
    ("espeak-ng", "pl+m1"),
    ("espeak-ng", "sv+f2"),
    ("flite", "slt"),
    ("flite", "awb"),
    ("flite", "kal16"),
)
TEST_VOICES = (
    ("espeak-ng", "en-us+f5"),
    ("espeak-ng", "en-gb-x-rp+m5"),
    ("espeak-ng", "pt-br+f3"),
    ("flite", "rms"),
)


@dataclasses.dataclass
class SyntheticSpeechConfig(tfds.core.BuilderConfig):
    """How many voices per split and sentences per voice to synthesize."""

    train_voices: int = len(TRAIN_VOICES)
    test_voices: int = len(TEST_VOICES)
    sentences: int = len(HARVARD_SENTENCES)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for synthetic_speech."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 20 Harvard sentences, 15 train and 4 test voices."}
    BUILDER_CONFIGS = [
        SyntheticSpeechConfig(
            name="default", description="All voices and sentences (380 utterances)."
        ),
        SyntheticSpeechConfig(
            name="tiny",
            description="3 train voices, 2 test voices, 3 sentences: for tests and CI.",
            train_voices=3,
            test_voices=2,
            sentences=3,
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": tfds.features.Audio(dtype=np.int16, sample_rate=SAMPLE_RATE),
                    "text": tfds.features.Text(),
                    "voice": tfds.features.Text(),
                    "engine": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
            homepage="https://github.com/espeak-ng/espeak-ng",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        config = self.builder_config
        texts = HARVARD_SENTENCES[: config.sentences]
        return {
            "train": self._generate_examples(TRAIN_VOICES[: config.train_voices], texts),
            "test": self._generate_examples(TEST_VOICES[: config.test_voices], texts),
        }

    def _generate_examples(self, voices, texts):
        for engine, voice in voices:
            for index, text in enumerate(texts):
                samples = synthesize(text, voice=voice, engine=engine, sample_rate=SAMPLE_RATE)
                pcm = to_pcm16(samples)
                key = f"{engine}_{voice}_{index:03d}"
                yield key, {"audio": pcm, "text": text, "voice": voice, "engine": engine}
