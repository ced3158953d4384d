"""A PESQ worker (as spectral_restore/_pesq_job.py) that stands in for the pesq
package's crash on some long files: tests/test_metrics.py starts it instead."""

import os
import signal

from spectral_restore import _pesq_job


def crash_on_marked_jobs(job):
    """Kills its process when the clean side starts with 0.123; else returns the length."""
    if job[0][0] == 0.123:
        os.kill(os.getpid(), signal.SIGSEGV)
    return float(len(job[0])), None


if __name__ == "__main__":
    _pesq_job.main(crash_on_marked_jobs)
