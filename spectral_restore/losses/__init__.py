"""The loss library: every loss is a ``keras.losses.Loss`` written in ``keras.ops``."""

from spectral_restore.losses.combined import (
    FAMILIES,
    TERM_FACTORIES,
    CombinedLoss,
    TermMetric,
    register_term,
)
from spectral_restore.losses.embedding import AudioEmbeddingLoss
from spectral_restore.losses.perceptual import LoudnessWeightedLoss, PESQLoss
from spectral_restore.losses.phase import ComplexSTFTLoss, PhaseConsistencyLoss, anti_wrap
from spectral_restore.losses.reconstruction import (
    LogSpectrogramLoss,
    MultiResolutionSTFTLoss,
    SpectralConvergence,
    SpectrogramMSE,
    WaveformLoss,
)

__all__ = [
    "AudioEmbeddingLoss",
    "CombinedLoss",
    "ComplexSTFTLoss",
    "FAMILIES",
    "LogSpectrogramLoss",
    "LoudnessWeightedLoss",
    "MultiResolutionSTFTLoss",
    "PESQLoss",
    "PhaseConsistencyLoss",
    "SpectralConvergence",
    "SpectrogramMSE",
    "TERM_FACTORIES",
    "TermMetric",
    "WaveformLoss",
    "anti_wrap",
    "register_term",
]
