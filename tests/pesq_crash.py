"""A stand-in for the pesq package's crash on some long files, for worker processes
to import without Keras (tests/test_metrics.py patches it in)."""

import os
import signal


def crash_on_marked_jobs(job):
    """Kills its process when the clean side starts with 0.123; else returns the length."""
    if job[0][0] == 0.123:
        os.kill(os.getpid(), signal.SIGSEGV)
    return float(len(job[0])), None
