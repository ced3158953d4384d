"""DatasetBuilderTestCase for audio_folder_pairs, on the dummy folder beside the builder."""

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.audio_folder_pairs import audio_folder_pairs_dataset_builder


class AudioFolderPairsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = audio_folder_pairs_dataset_builder.Builder
    # dummy_data: 3 clean files (one at 48 kHz, one corrupt), 2 damaged copies.
    SPLITS = {"train": 3}
    SKIP_CHECKSUMS = True


def test_pairs_are_matched_resampled_and_corrupt_files_counted(tmp_path):
    builder = audio_folder_pairs_dataset_builder.Builder(data_dir=str(tmp_path))
    dummy = AudioFolderPairsTest.dummy_data
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(dummy))
    )
    examples = {e["path"].decode(): e for e in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(examples) == ["a.wav", "b.flac", "sub/c.wav"]
    assert examples["a.wav"]["has_damaged"] and examples["sub/c.wav"]["has_damaged"]
    assert not examples["b.flac"]["has_damaged"] and examples["b.flac"]["damaged"].size == 0
    # c.wav is stored at 48 kHz, 0.5 s: resampled to 8000 samples.
    assert len(examples["sub/c.wav"]["audio"]) == 8000
    assert [p for p, _ in builder.skipped] == [str(dummy / "clean" / "broken.wav")]
    a = examples["a.wav"]
    assert np.corrcoef(a["audio"].astype(float), a["damaged"].astype(float))[0, 1] > 0.5
