"""DatasetBuilderTestCase for synthetic_speech (needs espeak-ng and flite)."""

import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.synthetic_speech import synthetic_speech_dataset_builder

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng and flite are needed (tests/run_tests.sh installs them)",
)


class SyntheticSpeechTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = synthetic_speech_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
    SPLITS = {"train": 9, "test": 6}
    SKIP_CHECKSUMS = True


def test_voices_of_train_and_test_are_disjoint_and_audio_is_speech(tmp_path):
    builder = synthetic_speech_dataset_builder.Builder(config="tiny", data_dir=str(tmp_path))
    builder.download_and_prepare()
    voices = {}
    for split in ("train", "test"):
        examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
        voices[split] = {(e["engine"].decode(), e["voice"].decode()) for e in examples}
        for example in examples:
            audio = example["audio"].astype(np.float32) / 32768.0
            assert 0.5 < len(audio) / 16000 < 6.0
            assert np.sqrt(np.mean(audio**2)) > 0.01
    assert voices["train"] and voices["test"] and not voices["train"] & voices["test"]
    assert {engine for engine, _ in voices["test"]} <= {"espeak-ng", "flite"}
