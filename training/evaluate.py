"""`spectral-restore evaluate`: PESQ-WB/NB, STOI, SI-SDR and LSD before and after
restoration, overall and per artifact type, on held-out data with unseen damage seeds."""

import json
import os

import numpy as np

from spectral_restore import metrics

METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "lsd")
LABELS = {"pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "si_sdr": "SI-SDR (dB)", "lsd": "LSD (dB)"}


def evaluation_batches(config, repeat):
    """Pass ``repeat`` over the evaluation split: ``(damaged, clean, record)`` numpy
    batches, damaged with seeds ``eval_seed + repeat`` (``tf.data`` under TensorFlow,
    :class:`~spectral_restore.data.source.AudioDataset` under the other backends);
    recorded pairs keep their recorded damage, with the chain on top only for
    ``data.damage_pairs``."""
    from spectral_restore import backend

    data = config["data"]
    options = dict(
        split=data["eval_split"], seed=data["eval_seed"] + repeat, data_dir=data["data_dir"],
        sample_rate=config["model"]["sample_rate"], segment_seconds=data["segment_seconds"],
        batch_size=data["batch_size"], chain=data["chain"], shuffle=False, return_record=True,
        manual_dir=data["manual_dir"], damage_pairs=data["damage_pairs"],
        pair_tolerance_seconds=data["pair_tolerance_seconds"],
    )
    if backend.name() != "tensorflow":
        from spectral_restore.data.source import AudioDataset

        return iter(AudioDataset(data["source"], **options))
    from spectral_restore.data.pipeline import make_dataset

    return make_dataset(data["source"], **options).as_numpy_iterator()


def collect(model, config, max_batches=None):
    """Runs the model over the evaluation split: damaged, restored, clean arrays and
    the artifacts applied to each example."""
    damaged, restored, clean, applied = [], [], [], []
    for repeat in range(int(config["data"]["eval_repeats"])):
        for index, (noisy, target, record) in enumerate(evaluation_batches(config, repeat)):
            if max_batches is not None and index >= max_batches:
                break
            damaged.append(noisy)
            restored.append(np.asarray(model.predict_on_batch(noisy)))
            clean.append(target)
            applied.append({name: value["applied"] for name, value in record.items()})
    names = sorted(applied[0]) if applied else []
    return (
        np.concatenate(damaged), np.concatenate(restored), np.concatenate(clean),
        {name: np.concatenate([a[name] for a in applied]) for name in names},
    )


def score(reference, estimate, rate):
    return {
        "pesq_wb": metrics.pesq_score(reference, estimate, rate, "wb").scores,
        "pesq_nb": metrics.pesq_score(reference, estimate, rate, "nb").scores,
        "stoi": metrics.stoi(reference, estimate, rate),
        "si_sdr": metrics.si_sdr(reference, estimate),
        "lsd": metrics.log_spectral_distance(reference, estimate),
    }


def summarise(before, after, applied):
    groups = {"all": np.ones(len(before["pesq_wb"]), bool)}
    groups.update({name: mask for name, mask in applied.items() if mask.any()})
    table = {}
    for group, mask in groups.items():
        row = {"examples": int(mask.sum())}
        for metric in METRICS:
            row[metric] = {
                "before": float(np.nanmean(before[metric][mask])),
                "after": float(np.nanmean(after[metric][mask])),
                "failed": int(np.sum(~np.isfinite(after[metric][mask]))),
            }
        table[group] = row
    return table


def markdown(table):
    header = "| damage | n | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 2)]
    for group, row in table.items():
        cells = [f"{row[m]['before']:.2f} -> {row[m]['after']:.2f}" for m in METRICS]
        lines.append(f"| {group} | {row['examples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table)
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(max(8, 0.7 * len(groups)), 2.4 * len(METRICS)), constrained_layout=True)
    x = np.arange(len(groups))
    for axis, metric in zip(axes, METRICS):
        axis.bar(x - 0.2, [table[g][metric]["before"] for g in groups], 0.4, label="damaged", color="#bbbbbb")
        axis.bar(x + 0.2, [table[g][metric]["after"] for g in groups], 0.4, label="restored", color="#3b7dd8")
        axis.set_ylabel(LABELS[metric])
        axis.set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    axes[0].legend(loc="upper right")
    axes[0].set_title("before and after restoration, per artifact in the damage chain")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate(model, config, output_dir, max_batches=None):
    """Writes evaluation.json, evaluation.md and evaluation.png to ``output_dir``."""
    if isinstance(model, (str, os.PathLike)):
        from spectral_restore.inference import load_keras_model

        model = load_keras_model(model)
    os.makedirs(output_dir, exist_ok=True)
    rate = config["model"]["sample_rate"]
    damaged, restored, clean, applied = collect(model, config, max_batches)
    before, after = score(clean, damaged, rate), score(clean, restored, rate)
    table = summarise(before, after, applied)
    text = markdown(table)
    with open(os.path.join(output_dir, "evaluation.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(output_dir, "evaluation.md"), "w") as f:
        f.write(text + "\n")
    plot(table, os.path.join(output_dir, "evaluation.png"))
    return table, text
