"""DatasetBuilderTestCase for voicebank_demand on dummy archives shaped like the real ones."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.voicebank_demand import voicebank_demand_dataset_builder


class VoicebankDemandTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = voicebank_demand_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["16k"]
    # dummy_data: the four zip archives with 3 training and 2 test utterances at 48 kHz.
    SPLITS = {"train": 3, "test": 2}
    SKIP_CHECKSUMS = True


def test_resampled_pairs_and_speakers(tmp_path):
    builder = voicebank_demand_dataset_builder.Builder(config="16k", data_dir=str(tmp_path))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(VoicebankDemandTest.dummy_data))
    )
    train = {e["id"].decode(): e for e in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(train) == ["p226_001", "p226_002", "p287_001"]
    assert {e["speaker"].decode() for e in train.values()} == {"p226", "p287"}
    example = train["p226_001"]
    # 0.25 s at 48 kHz becomes 4000 samples at 16 kHz, clean and noisy aligned.
    assert len(example["audio"]) == len(example["noisy"]) == 4000
    assert np.corrcoef(example["audio"].astype(float), example["noisy"].astype(float))[0, 1] > 0.5


def test_missing_archives_say_what_to_download(tmp_path):
    builder = voicebank_demand_dataset_builder.Builder(
        config="16k", data_dir=str(tmp_path / "data")
    )
    (tmp_path / "manual").mkdir()
    with pytest.raises(Exception, match="clean_trainset_28spk_wav"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))
        )
