"""TFDS dataset builders of spectral-restore; importing this package registers them."""

from tfds_builders.audio_folder_pairs.audio_folder_pairs_dataset_builder import (
    Builder as AudioFolderPairs,
)
from tfds_builders.synthetic_speech.synthetic_speech_dataset_builder import (
    Builder as SyntheticSpeech,
)
from tfds_builders.voicebank_demand.voicebank_demand_dataset_builder import (
    Builder as VoicebankDemand,
)

__all__ = ["AudioFolderPairs", "SyntheticSpeech", "VoicebankDemand"]
