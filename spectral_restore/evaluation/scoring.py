"""Scores of whole (clean, estimate) utterance pairs, as speech-enhancement papers report them."""

import collections
import dataclasses
import math
import os

import numpy as np

from spectral_restore import metrics as _metrics
from spectral_restore.evaluation import composite as _composite
from spectral_restore.evaluation import dnsmos as _dnsmos

METRICS = (
    "pesq_wb",
    "pesq_nb",
    "stoi",
    "estoi",
    "csig",
    "cbak",
    "covl",
    "si_sdr",
    "lsd",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
)
# Available on request: the measures behind CSIG/CBAK/COVL.
COMPOSITE_PARTS = ("llr", "wss", "segsnr")
LABELS = {
    "pesq_wb": "PESQ-WB",
    "pesq_nb": "PESQ-NB",
    "stoi": "STOI",
    "estoi": "ESTOI",
    "csig": "CSIG",
    "cbak": "CBAK",
    "covl": "COVL",
    "si_sdr": "SI-SDR (dB)",
    "lsd": "LSD (dB)",
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
    "llr": "LLR",
    "wss": "WSS",
    "segsnr": "segSNR (dB)",
}
_COMPOSITE = ("csig", "cbak", "covl") + COMPOSITE_PARTS
_DNSMOS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
_STOI_TOO_SHORT = "fewer than 30 STOI frames of speech"
_COMPOSITE_TOO_SHORT = "shorter than one 30 ms frame plus a hop"


@dataclasses.dataclass
class Evaluation:
    """Per-file scores of :func:`score_pairs`, their means and what failed.

    Attributes:
        metrics: tuple of the metric names scored (skipped ones left out).
        files: list of dicts, one per pair in input order: "name", "samples"
            (the length scored), "trimmed" (samples cut from the longer side),
            and one float per metric (NaN where it failed).
        failures: dict metric -> {reason: count} of the NaN values.
        skipped: dict metric -> why it was not computed at all.
    """

    metrics: tuple
    files: list
    failures: dict
    skipped: dict

    def values(self, metric):
        return np.array([row[metric] for row in self.files], dtype=np.float64)

    def means(self):
        """Mean of each metric over the files where it is finite (NaN if none)."""
        out = {}
        for metric in self.metrics:
            valid = self.values(metric)[np.isfinite(self.values(metric))]
            out[metric] = float(valid.mean()) if valid.size else math.nan
        return out

    def counts(self):
        """Files with a finite value, per metric."""
        return {metric: int(np.isfinite(self.values(metric)).sum()) for metric in self.metrics}

    def as_dict(self):
        """Plain JSON-ready data (NaN written as None)."""

        def clean(value):
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "metrics": list(self.metrics),
            "files_scored": len(self.files),
            "means": {k: clean(v) for k, v in self.means().items()},
            "counts": self.counts(),
            "failures": self.failures,
            "skipped": self.skipped,
            "files": [{k: clean(v) for k, v in row.items()} for row in self.files],
        }


def _check_metrics(requested):
    if requested is None:
        return METRICS
    if isinstance(requested, str):
        raise TypeError(f"`metrics` must be a list of names, not a string. Received: {requested!r}")
    unknown = [name for name in requested if name not in METRICS + COMPOSITE_PARTS]
    if unknown:
        raise ValueError(f"Unknown metrics {unknown}; known: {list(METRICS + COMPOSITE_PARTS)}")
    return tuple(dict.fromkeys(requested))


def _as_waveform(x, name, index):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"`{name}[{index}]` must be a 1-D waveform; received shape {x.shape}")
    return x


class _Scorer:
    """Scores one pair at a time; PESQ runs in worker processes meanwhile."""

    def __init__(self, wanted, sample_rate, workers):
        self.wanted, self.rate, self.workers = wanted, int(sample_rate), workers
        self.composite_rate = _composite.composite_rate(sample_rate)
        composite_mode = "wb" if self.composite_rate == 16000 else "nb"
        needs_composite = any(m in wanted for m in _COMPOSITE)
        self.pesq_modes = [
            mode
            for mode in ("wb", "nb")
            if f"pesq_{mode}" in wanted or (needs_composite and mode == composite_mode)
        ]
        self.composite_mode = composite_mode if needs_composite else None

    def submit(self, clean, estimate):
        return {
            mode: self.workers.submit(clean, estimate, self.rate, mode) for mode in self.pesq_modes
        }

    def local(self, clean, estimate):
        """Everything but PESQ, in this process: (values, reasons for NaN)."""
        values, reasons = {}, {}
        for metric, extended in (("stoi", False), ("estoi", True)):
            if metric in self.wanted:
                values[metric] = float(
                    _metrics.stoi(clean, estimate, self.rate, extended=extended)[0]
                )
                reasons[metric] = _STOI_TOO_SHORT
        if "si_sdr" in self.wanted:
            values["si_sdr"] = float(_metrics.si_sdr(clean, estimate)[0])
        if "lsd" in self.wanted:
            values["lsd"] = float(_metrics.log_spectral_distance(clean, estimate)[0])
        if self.composite_mode:
            reasons.update({metric: _COMPOSITE_TOO_SHORT for metric in _COMPOSITE})
            c, e, rate = _composite.prepare_pair(clean, estimate, self.rate)
            values.update(_composite.frame_measures(c, e, rate))
        if any(m in self.wanted for m in _DNSMOS):
            try:
                rating = _dnsmos.dnsmos(estimate, self.rate)
            except Exception as err:  # noqa: BLE001 - the file's DNSMOS is NaN, counted by reason
                rating, reason = {}, type(err).__name__
                reasons.update({f"dnsmos_{k}": reason for k in ("sig", "bak", "ovrl")})
            values.update({f"dnsmos_{k}": rating.get(k, math.nan) for k in ("sig", "bak", "ovrl")})
        return values, reasons

    def finish(self, values, reasons, handles):
        results = {mode: self.workers.results([handle])[0] for mode, handle in handles.items()}
        for mode, (score, reason) in results.items():
            values[f"pesq_{mode}"] = score
            reasons[f"pesq_{mode}"] = reason
        if self.composite_mode:
            score, reason = results[self.composite_mode]
            pesq = _composite.composite_pesq(score, self.composite_rate)
            values.update(
                _composite.composite_scores(pesq, values["llr"], values["wss"], values["segsnr"])
            )
            if reason:
                reasons.update(
                    {
                        metric: f"pesq_{self.composite_mode}: {reason}"
                        for metric in ("csig", "cbak", "covl")
                    }
                )
        return values, reasons


def score_pairs(
    clean, estimates, sample_rate, metrics=None, names=None, processes=None, progress=True
):
    """Scores every (clean, estimate) pair whole, at any length, dropping none.

    Metrics (names as keys): "pesq_wb", "pesq_nb" (reference ``pesq`` package,
    P.862.2 / P.862.1 MOS-LQO), "stoi", "estoi" (equal to ``pystoi``), "csig",
    "cbak", "covl" (Hu & Loizou 2008, :mod:`spectral_restore.evaluation.composite`),
    "si_sdr", "lsd" (dB), "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl" (DNSMOS P.835 on
    the estimate alone, through the optional ``speechmos``: skipped, with the
    reason in ``skipped``, when it is not installed); on request also "llr",
    "wss", "segsnr". A pair whose sides differ in length is scored on the shorter
    length (the trimmed count is recorded, as papers' scripts do). A value a metric
    cannot give (PESQ on silence or under 0.25 s, STOI with under 30 frames of
    speech, a crashed PESQ process) is NaN, left out of the mean and counted by
    reason. PESQ runs in ``processes`` worker processes while the rest is computed
    here, a few pairs ahead, so memory stays bounded by a few pairs.

    Args:
        clean, estimates: sequences of 1-D float arrays (references, outputs).
        sample_rate: int. Rate of all of them.
        metrics: list of names or None (all of ``METRICS``).
        names: list of str or None (``"0"``, ``"1"``, ...), one per pair.
        processes: int or None. PESQ worker processes (None: one per CPU).
        progress: bool. A tqdm progress bar over the pairs. Defaults to True.

    Returns:
        :class:`Evaluation`.
    """
    clean, estimates = list(clean), list(estimates)
    if len(clean) != len(estimates):
        raise ValueError(f"{len(clean)} clean files but {len(estimates)} estimates")
    names = [str(i) for i in range(len(clean))] if names is None else [str(name) for name in names]
    if len(names) != len(clean):
        raise ValueError(f"{len(names)} names for {len(clean)} pairs")
    items = ((name, c, {"estimate": e}) for name, c, e in zip(names, clean, estimates))
    return score_conditions(
        items,
        sample_rate,
        ("estimate",),
        metrics=metrics,
        processes=processes,
        progress=progress,
        total=len(clean),
    )["estimate"]


def score_conditions(
    items, sample_rate, conditions, metrics=None, processes=None, progress=True, total=None
):
    """Scores several estimates of each clean utterance (the damaged input and its
    restoration, say) in one streaming pass: :func:`score_pairs`, for any iterable.

    Items are read one at a time (a generator may restore each file as it is
    asked for it), so memory holds a few utterances whatever the number of files.

    Args:
        items: iterable of ``(name, clean, {condition: estimate})``, 1-D float arrays
            of any length (each estimate is scored on its common length with clean).
        sample_rate: int. Rate of all of them.
        conditions: sequence of str. The keys every item's dict must have.
        metrics, processes, progress: as for :func:`score_pairs`.
        total: int or None. Number of items, for the progress bar.

    Returns:
        dict condition -> :class:`Evaluation`, the files in item order.
    """
    from tqdm import tqdm

    wanted = _check_metrics(metrics)
    conditions = tuple(conditions)
    if not conditions or len(set(conditions)) != len(conditions):
        raise ValueError(
            f"`conditions` must be distinct names, at least one. Received: {conditions!r}"
        )
    skipped = {}
    reason = _dnsmos.dnsmos_unavailable_reason() if any(m in wanted for m in _DNSMOS) else None
    if reason:
        skipped = {m: reason for m in wanted if m in _DNSMOS}
        wanted = tuple(m for m in wanted if m not in _DNSMOS)
    processes = int(processes or os.cpu_count() or 1)
    ahead = max(2, processes)
    files = {condition: [] for condition in conditions}
    failures = {condition: {m: {} for m in wanted} for condition in conditions}
    with (
        _metrics.PesqWorkers(processes) as workers,
        tqdm(total=total, disable=not progress, unit="file", desc="scoring") as bar,
    ):
        scorer = _Scorer(wanted, sample_rate, workers)
        pending = collections.deque()

        def finish(condition, row, values, reasons, handles):
            """The row with its PESQ and what depends on it (the job's arrays are then released)."""
            values, reasons = scorer.finish(values, reasons, handles)
            for metric in wanted:
                row[metric] = float(values[metric])
                if not math.isfinite(row[metric]):
                    why = reasons.get(metric) or "not finite"
                    failures[condition][metric][why] = failures[condition][metric].get(why, 0) + 1
            return row

        def record(rows):
            for condition, row in rows.items():
                files[condition].append(row if isinstance(row, dict) else finish(condition, *row))
            bar.update()

        for index, (name, clean, estimates) in enumerate(items):
            if set(estimates) != set(conditions):
                raise ValueError(
                    f"Item {index} ({name}) has estimates {sorted(estimates)}; expected {list(conditions)}"
                )
            clean = _as_waveform(clean, "clean", index)
            rows = {}
            for condition in conditions:
                estimate = _as_waveform(estimates[condition], condition, index)
                length = min(len(clean), len(estimate))
                row = {
                    "name": str(name),
                    "samples": length,
                    "trimmed": abs(len(clean) - len(estimate)),
                }
                c, e = clean[:length], estimate[:length]
                handles = scorer.submit(c, e)  # PESQ runs in the workers while the rest runs here
                job = (row, *scorer.local(c, e), handles)
                # A long pair's PESQ runs alone in a worker of its own (about a gigabyte for
                # 10 minutes): waiting for it before the next condition keeps one such pair
                # in memory at a time, and costs no time, as those jobs run one by one anyway.
                long = length > _metrics.PESQ_IN_PROCESS_SECONDS * scorer.rate
                rows[condition] = finish(condition, *job) if long else job
            pending.append(rows)
            while len(pending) >= ahead:
                record(pending.popleft())
        while pending:
            record(pending.popleft())
    return {
        condition: Evaluation(
            wanted, files[condition], {m: f for m, f in failures[condition].items() if f}, skipped
        )
        for condition in conditions
    }
