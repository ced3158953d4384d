"""Evaluation reports laid out as speech-enhancement papers lay out their tables.

:func:`write_report` turns the :class:`~spectral_restore.evaluation.Evaluation` of
each condition (the damaged input, its restoration) into ``evaluation.json`` (every
file's values, the means, what failed and why), ``evaluation.md`` (PESQ-WB, CSIG,
CBAK, COVL and STOI first, as the papers print them, then the other metrics; per
group of files where groups are given) and ``evaluation.png`` (the same means as
bars). On VoiceBank+DEMAND's test set the published numbers of well-known systems
stand beside this evaluation's (:data:`VOICEBANK_ANCHORS`).
"""

import json
import math
import os
import re

import numpy as np

from spectral_restore.evaluation.scoring import LABELS, Evaluation

# Column order of the papers' tables, then the rest of the metrics.
PAPER_METRICS = ("pesq_wb", "csig", "cbak", "covl", "stoi")
# Means on VoiceBank+DEMAND's 824 test utterances (speakers p232 and p257, 16 kHz),
# as published: (row label, source, {metric: value}). STOI is printed in percent
# by CMGAN and MP-SENet (96 %), here as a fraction; MetricGAN+ reports no STOI.
VOICEBANK_ANCHORS = (
    (
        "Noisy input (published)",
        "the unprocessed test set, as tabulated by MetricGAN+ (PESQ, CSIG, CBAK, COVL) and MP-SENet (STOI)",
        {"pesq_wb": 1.97, "csig": 3.35, "cbak": 2.44, "covl": 2.63, "stoi": 0.92},
    ),
    (
        "MetricGAN+",
        'S.-W. Fu et al., "MetricGAN+: An Improved Version of MetricGAN for Speech Enhancement", '
        "Interspeech 2021, arXiv:2104.03538",
        {"pesq_wb": 3.15, "csig": 4.14, "cbak": 3.16, "covl": 3.64},
    ),
    (
        "CMGAN",
        'R. Cao, S. Abdulatif, B. Yang, "CMGAN: Conformer-based Metric GAN for Speech Enhancement", '
        "Interspeech 2022, arXiv:2203.15149",
        {"pesq_wb": 3.41, "csig": 4.63, "cbak": 3.94, "covl": 4.12, "stoi": 0.96},
    ),
    (
        "MP-SENet",
        'Y.-X. Lu, Y. Ai, Z.-H. Ling, "MP-SENet: A Speech Enhancement Model with Parallel Denoising of '
        'Magnitude and Phase Spectra", Interspeech 2023, arXiv:2305.13686',
        {"pesq_wb": 3.50, "csig": 4.73, "cbak": 3.95, "covl": 4.22, "stoi": 0.96},
    ),
)
VOICEBANK_TEST_FILES = 824
# File names of VoiceBank+DEMAND's test speakers (p232_001.wav, ...).
_VOICEBANK_TEST_NAME = re.compile(r"^p(232|257)_\d{3}$")
_FRACTIONS = ("stoi", "estoi")


def is_voicebank_test(names):
    """True when every name's last path part is a VoiceBank+DEMAND test file name
    (``p232_001``, ``p257_434``, with or without an extension)."""
    names = [os.path.splitext(re.split(r"[\\/]", str(name))[-1])[0] for name in names]
    return bool(names) and all(_VOICEBANK_TEST_NAME.match(name) for name in names)


def _finite_or_none(value):
    return None if value is None or not math.isfinite(value) else float(value)


def summarise(evaluations, groups=None):
    """Means per group of files and condition.

    Args:
        evaluations: dict condition -> Evaluation, all over the same files in order.
        groups: dict name -> bool mask over those files, or None. "all" comes first,
            every file unless ``groups`` gives an "all" mask of its own; groups
            without a file are left out.

    Returns:
        ``{group: {"examples": n, condition: {metric: mean or None}, "failed":
        {condition: {metric: files without a value}}}}``.
    """
    first = next(iter(evaluations.values()))
    count = len(first.files)
    masks = {"all": np.ones(count, bool)}
    for name, mask in (groups or {}).items():
        mask = np.asarray(mask, bool)
        if mask.shape != (count,):
            raise ValueError(
                f"Group {name!r} has a mask of shape {mask.shape}; expected ({count},)"
            )
        masks[name] = mask
    table = {}
    for group, mask in masks.items():
        if not mask.any():
            continue
        row = {"examples": int(mask.sum()), "failed": {}}
        for condition, evaluation in evaluations.items():
            subset = Evaluation(
                evaluation.metrics,
                [f for f, keep in zip(evaluation.files, mask) if keep],
                {},
                evaluation.skipped,
            )
            row[condition] = {
                metric: _finite_or_none(value) for metric, value in subset.means().items()
            }
            row["failed"][condition] = {
                metric: row["examples"] - n for metric, n in subset.counts().items()
            }
        table[group] = row
    return table


def _columns(metrics):
    return [m for m in PAPER_METRICS if m in metrics] + [
        m for m in metrics if m not in PAPER_METRICS
    ]


def _cell(value, metric):
    if value is None:
        return "–"
    return f"{value:.3f}" if metric in _FRACTIONS else f"{value:.2f}"


def markdown(data):
    """``evaluation.md`` from the data :func:`write_report` writes as JSON."""
    conditions = list(data["conditions"])
    columns = _columns(data["metrics"])
    overall = data["groups"]["all"]
    lines = [f"# Evaluation: {data['title']}", ""]
    lines += [f"- {line}" for line in data["notes"]]
    lines += [
        "",
        "| | " + " | ".join(LABELS[m] for m in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, _, values in data.get("anchors") or ():
        lines.append(f"| {label} | " + " | ".join(_cell(values.get(m), m) for m in columns) + " |")
    for condition in conditions:
        lines.append(
            f"| **{condition}** (this evaluation, n={overall['examples']}) | "
            + " | ".join(_cell(overall[condition][m], m) for m in columns)
            + " |"
        )
    if data.get("anchors"):
        lines += [
            "",
            f"Published rows: means over VoiceBank+DEMAND's {VOICEBANK_TEST_FILES} test utterances.",
        ]
        lines += [f"- {label}: {source}" for label, source, _ in data["anchors"]]
    if len(data["groups"]) > 1:
        arrow = " -> ".join(conditions)
        lines += [
            "",
            f"## Per {data['group_label']} ({arrow})",
            "",
            f"| {data['group_label']} | n | " + " | ".join(LABELS[m] for m in columns) + " |",
            "|---|---:|" + "---:|" * len(columns),
        ]
        for group, row in data["groups"].items():
            cells = [" -> ".join(_cell(row[c][m], m) for c in conditions) for m in columns]
            lines.append(f"| {group} | {row['examples']} | " + " | ".join(cells) + " |")
    failures = [
        (c, m, reason, n)
        for c in conditions
        for m, reasons in data["conditions"][c]["failures"].items()
        for reason, n in reasons.items()
    ]
    if failures or data["skipped"]:
        lines += ["", "## Values a metric could not give (NaN, left out of the means)", ""]
        lines += [f"- {c} / {LABELS[m]}: {reason}: {n}" for c, m, reason, n in failures]
        lines += [f"- {LABELS[m]}: not computed: {reason}" for m, reason in data["skipped"].items()]
    for heading, entries in data.get("left_out", {}).items():
        if entries:
            shown = ", ".join(entries[:20]) + (
                f", ... ({len(entries) - 20} more)" if len(entries) > 20 else ""
            )
            lines += ["", f"## {heading}: {len(entries)}", "", shown]
    return "\n".join(lines) + "\n"


def plot(data, path):
    """``evaluation.png``: a bar chart per metric of the means, three to a row
    (published rows in grey; per group, the conditions side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(data["conditions"])
    columns = _columns(data["metrics"])
    groups = list(data["groups"])
    colours = ["#9e9e9e", "#3b7dd8", "#e07b39", "#4caf50"]
    if len(groups) > 1:
        labels = groups
        series = [
            (c, [data["groups"][g][c] for g in groups], colours[i % len(colours)])
            for i, c in enumerate(conditions)
        ]
    else:
        anchors = data.get("anchors") or ()
        labels = [label for label, _, _ in anchors] + conditions
        rows = [values for _, _, values in anchors] + [data["groups"]["all"][c] for c in conditions]
        shades = ["#cfcfcf"] * len(anchors) + [
            colours[1 + i % (len(colours) - 1)] for i in range(len(conditions))
        ]
        series = [(None, rows, shades)]
    per_row = min(3, len(columns))
    rows_of_plots = -(-len(columns) // per_row)
    width = max(3.2, 0.45 * len(labels) * len(series) + 1.0)
    fig, axes = plt.subplots(
        rows_of_plots,
        per_row,
        figsize=(width * per_row, 2.8 * rows_of_plots),
        constrained_layout=True,
        squeeze=False,
    )
    x = np.arange(len(labels))
    bar = 0.8 / len(series)
    for axis, metric in zip(axes.flat, columns):
        for k, (name, rows, colour) in enumerate(series):
            heights = np.array(
                [np.nan if row.get(metric) is None else row[metric] for row in rows], float
            )
            drawn = axis.bar(x - 0.4 + bar * (k + 0.5), heights, bar, color=colour, label=name)
            axis.bar_label(
                drawn,
                labels=[_cell(None if np.isnan(h) else h, metric) for h in heights],
                fontsize=6,
            )
        axis.set_title(LABELS[metric], fontsize=9)
        axis.set_xticks(x, labels, rotation=25, ha="right", fontsize=7)
        axis.margins(y=0.15)
    for axis in list(axes.flat)[len(columns) :]:
        axis.set_visible(False)
    if len(series) > 1:
        axes[0, 0].legend(loc="lower right", fontsize=7)
    fig.suptitle(data["title"], fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    output_dir,
    evaluations,
    title,
    notes=(),
    groups=None,
    group_label="group",
    anchors=None,
    extra=None,
    left_out=None,
):
    """Writes ``evaluation.json``, ``evaluation.md`` and ``evaluation.png`` to ``output_dir``.

    Args:
        output_dir: str. Created when missing.
        evaluations: dict condition -> Evaluation over the same files (from
            :func:`~spectral_restore.evaluation.score_conditions`).
        title: str. What was evaluated.
        notes: sequence of str. Lines printed under the title (settings, counts).
        groups: dict name -> bool mask over the files, or None: per-group means
            (a damage type, say) beside the overall ones.
        group_label: str. What a group is ("damage", ...). Defaults to "group".
        anchors: sequence of ``(label, source, {metric: value})`` published rows,
            or None. Defaults to None.
        extra: dict or None. More JSON-ready entries for ``evaluation.json``.
        left_out: dict heading -> list of str, or None: files not scored and why.

    Returns:
        ``(data, markdown_text)``: ``data`` is what ``evaluation.json`` holds.
    """
    if not evaluations:
        raise ValueError("write_report needs at least one condition's Evaluation")
    first = next(iter(evaluations.values()))
    data = {
        "title": title,
        "notes": list(notes),
        "metrics": list(first.metrics),
        "skipped": dict(first.skipped),
        "group_label": group_label,
        "groups": summarise(evaluations, groups),
        "anchors": [list(anchor) for anchor in anchors] if anchors else None,
        "left_out": {heading: list(entries) for heading, entries in (left_out or {}).items()},
        "conditions": {
            condition: evaluation.as_dict() for condition, evaluation in evaluations.items()
        },
        **(extra or {}),
    }
    text = markdown(data)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "evaluation.json"), "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    with open(os.path.join(output_dir, "evaluation.md"), "w") as f:
        f.write(text)
    plot(data, os.path.join(output_dir, "evaluation.png"))
    return data, text


__all__ = [
    "write_report",
    "summarise",
    "markdown",
    "plot",
    "is_voicebank_test",
    "VOICEBANK_ANCHORS",
    "PAPER_METRICS",
]
