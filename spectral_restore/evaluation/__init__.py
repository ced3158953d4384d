"""Whole-utterance evaluation as speech-enhancement papers report it.

:func:`score_pairs` scores (clean, estimate) pairs of any length with PESQ-WB/NB,
STOI/ESTOI, the composite measures CSIG/CBAK/COVL
(:mod:`spectral_restore.evaluation.composite`), SI-SDR, LSD and, where the optional
``speechmos`` is installed, DNSMOS P.835 (:mod:`spectral_restore.evaluation.dnsmos`).
"""

from spectral_restore.evaluation.scoring import (
    LABELS,
    METRICS,
    Evaluation,
    score_conditions,
    score_pairs,
)

__all__ = ["score_pairs", "score_conditions", "Evaluation", "METRICS", "LABELS"]
