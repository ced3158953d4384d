"""One reference PESQ computation, importable without Keras.

Worker processes start from a fresh interpreter (forkserver or spawn) and import
only this module, numpy and ``pesq``, so each costs tens of megabytes instead of a
copy of the parent's TensorFlow.
"""

import math


def run(job):
    """``job = (clean, degraded, rate, mode)`` at the rate PESQ takes; returns
    ``(score, None)`` or ``(NaN, error class name)``."""
    from pesq import pesq

    clean, degraded, rate, mode = job
    try:
        return float(pesq(rate, clean, degraded, mode)), None
    except Exception as err:  # noqa: BLE001 - every failure becomes NaN plus a reason
        return math.nan, type(err).__name__
