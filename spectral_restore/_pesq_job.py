"""Reference PESQ jobs, in this process or as a worker process's main loop.

:class:`spectral_restore.metrics.PesqWorkers` starts this file as a script
(``python _pesq_job.py``): it imports neither Keras nor the package, so a worker
costs tens of megabytes plus the files it scores, and no multiprocessing start
method or main-module guard is involved. The worker reads pickled jobs from stdin
and writes pickled results to what was its stdout; its stdout proper goes to stderr,
so messages printed by the C code cannot corrupt the results. When the ``pesq``
package crashes, the worker dies and the parent sees which job it was running.
"""

import math
import os
import pickle
import sys


def run(job):
    """``job = (clean, degraded, rate, mode)`` at the rate PESQ takes; returns
    ``(score, None)`` or ``(NaN, error class name)``."""
    from pesq import pesq

    clean, degraded, rate, mode = job
    try:
        return float(pesq(rate, clean, degraded, mode)), None
    except Exception as err:  # noqa: BLE001 - every failure becomes NaN plus a reason
        return math.nan, type(err).__name__


def serve(jobs, results, score=run):
    """Answers every pickled job on ``jobs`` with its pickled ``score(job)`` on ``results``."""
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:
            return
        pickle.dump(score(job), results)
        results.flush()


def main(score=run):
    """The worker: jobs on stdin, results on the original stdout, prints to stderr."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers, score)


if __name__ == "__main__":
    main()
