"""The mappings of a raw P.862 score to MOS-LQO: the one place their constants live.

Formula: ``MOS-LQO = 0.999 + 4 / (1 + exp(-a * raw + b))`` with ``(a, b)`` =
``(1.4945, 4.6607)`` narrow band (ITU-T P.862.1) and ``(1.3669, 3.8224)`` wide band
(ITU-T P.862.2); the raw score of identical signals is 4.5.
"""

import math

from keras import ops

MODES = ("wb", "nb")
# (a, b) of each mapping, as the Recommendations give them.
MOS_MAPPING = {"nb": (1.4945, 4.6607), "wb": (1.3669, 3.8224)}
MOS_LQO_FLOOR = 0.999
MOS_LQO_RANGE = 4.0
BEST_RAW_SCORE = 4.5


def mos_lqo(raw, mode):
    """MOS-LQO of raw P.862 scores (a tensor or an array), in ``keras.ops``."""
    slope, offset = MOS_MAPPING[mode]
    return MOS_LQO_FLOOR + MOS_LQO_RANGE / (1.0 + ops.exp(-slope * raw + offset))


def best_mos(mode):
    """MOS-LQO of identical signals, the mapping of ``BEST_RAW_SCORE`` (about 4.644
    wide band, 4.549 narrow band), as a float.

    Example:
    >>> round(best_mos("wb"), 3), round(best_mos("nb"), 3)
    (4.644, 4.549)
    """
    slope, offset = MOS_MAPPING[mode]
    return MOS_LQO_FLOOR + MOS_LQO_RANGE / (1.0 + math.exp(-slope * BEST_RAW_SCORE + offset))


def raw_score(mos, mode):
    """The raw P.862 score whose MOS-LQO is ``mos`` (a float): the inverse mapping;
    NaN for NaN.

    Example:
    >>> round(raw_score(best_mos("nb"), "nb"), 10)
    4.5
    """
    if not math.isfinite(mos):
        return math.nan
    slope, offset = MOS_MAPPING[mode]
    return (offset - math.log(MOS_LQO_RANGE / (mos - MOS_LQO_FLOOR) - 1.0)) / slope


def normalised_mos(mos, mode):
    """``(MOS-LQO - 1) / (best_mos(mode) - 1)``: 1 for identical signals, about 0 at
    the bottom of the scale (a tensor, an array or a float)."""
    return (mos - 1.0) / (best_mos(mode) - 1.0)


def mos_lqo_from_normalised(score, mode):
    """The inverse of :func:`normalised_mos`: ``1 + score * (best_mos(mode) - 1)``."""
    return 1.0 + score * (best_mos(mode) - 1.0)
