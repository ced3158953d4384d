"""Does AudioEmbeddingLoss grow with the damage? Spearman rank correlation per utterance.

Speech: the corpus of benchmarks/pesq_surrogate.py (the CMU ARCTIC utterance shipped
by pysptk, 6 espeak-ng and 4 flite voices; 4 s at 16 kHz). Each utterance gets three
kinds of damage at twelve growing strengths:
- noise: white noise at SNR 30 to -5 dB in equal steps (3.2 dB);
- clipping: hard clipping at 50 % to 2 % of the peak, geometric steps;
- band limit: 8th-order Butterworth low-pass (zero phase) at 6 kHz to 1 kHz, geometric steps.
For each network configuration, utterance and kind: Spearman rho between strength
and loss value (1 = the loss rises at every step). Reported: mean and minimum rho
over the utterances, per kind. OpenL3 runs where its official weights are given
(``--openl3-weights FILE_OR_FOLDER``); they cannot be downloaded here.

Run: python benchmarks/embedding_monotonicity.py [--openl3-weights PATH]
Writes benchmarks/results/embedding_monotonicity.json and .png, prints Markdown.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from scipy import signal, stats
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from pesq_surrogate import RATE, speech_corpus  # noqa: E402

from spectral_restore.losses import AudioEmbeddingLoss  # noqa: E402

LEVELS = {
    "noise": tuple(np.round(np.linspace(30, -5, 12), 2).tolist()),
    "clipping": tuple(np.round(np.geomspace(0.5, 0.02, 12), 4).tolist()),
    "band_limit": tuple(np.round(np.geomspace(6000, 1000, 12)).tolist()),
}
# Rank of the damage: 0 mildest ... 11 strongest (the levels above fall as damage grows).
STRENGTH = np.arange(12)
CONFIGS = {
    "musicnn MTT, l1 (default)": lambda: AudioEmbeddingLoss("musicnn", reduction="none"),
    "musicnn MTT, l2": lambda: AudioEmbeddingLoss("musicnn", distance="l2", reduction="none"),
    "musicnn MTT, cosine": lambda: AudioEmbeddingLoss(
        "musicnn", distance="cosine", reduction="none"
    ),
    "musicnn MSD, l1": lambda: AudioEmbeddingLoss(
        "musicnn", embedding_options={"model": "MSD_musicnn"}, reduction="none"
    ),
    "vgg MTT, l1": lambda: AudioEmbeddingLoss(
        "musicnn", embedding_options={"model": "MTT_vgg"}, reduction="none"
    ),
}


def damaged(kind, x, level, rng):
    if kind == "noise":
        noise = rng.standard_normal(x.shape)
        return x + noise * np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (level / 10))
    if kind == "clipping":
        limit = level * np.max(np.abs(x))
        return np.clip(x, -limit, limit)
    sos = signal.butter(8, level, fs=RATE, output="sos")
    return signal.sosfiltfilt(sos, x)


def measure(loss, clips, seed=0):
    rng = np.random.default_rng(seed)
    rows = {kind: [] for kind in LEVELS}
    for _, x in clips:
        for kind, levels in LEVELS.items():
            batch = np.stack([damaged(kind, x, level, rng) for level in levels]).astype("float32")
            clean = np.repeat(x[None], len(levels), axis=0)
            rows[kind].append(np.asarray(loss(clean, batch), dtype=np.float64))
    return {kind: np.stack(values) for kind, values in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--openl3-weights", default=None, help="official OpenL3 weight file or folder"
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    configs = dict(CONFIGS)
    if args.openl3_weights:
        for repr_ in ("mel128", "mel256"):
            configs[f"openl3 {repr_} music, l1"] = lambda r=repr_: AudioEmbeddingLoss(
                "openl3",
                embedding_options={"input_repr": r, "weights": args.openl3_weights},
                reduction="none",
            )
    clips = speech_corpus()
    results = {}
    for name, factory in tqdm(configs.items(), desc="networks"):
        values = measure(factory(), clips)
        results[name] = {
            kind: {
                "rho_mean": float(
                    np.mean([stats.spearmanr(STRENGTH, v).statistic for v in per_clip])
                ),
                "rho_min": float(
                    np.min([stats.spearmanr(STRENGTH, v).statistic for v in per_clip])
                ),
                "mean_curve": per_clip.mean(axis=0).tolist(),
            }
            for kind, per_clip in values.items()
        }
    timings = speed()
    os.makedirs(args.out, exist_ok=True)
    report = {
        "seconds_fwd_bwd_16x4s": timings,
        "utterances": [name for name, _ in clips],
        "levels": LEVELS,
        "results": results,
        "openl3": "run"
        if args.openl3_weights
        else "not run: official weights not available offline",
    }
    with open(os.path.join(args.out, "embedding_monotonicity.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    plot(results, os.path.join(args.out, "embedding_monotonicity.png"))
    print(
        f"{len(clips)} utterances; Spearman rho of loss vs damage strength, mean / min over utterances\n"
    )
    print("| network, distance | noise | clipping | band limit |")
    print("|---|---|---|---|")
    for name, per_kind in results.items():
        cells = [f"{per_kind[k]['rho_mean']:.3f} / {per_kind[k]['rho_min']:.3f}" for k in LEVELS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "\nForward + backward, 16 x 4 s, CPU: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
    )
    if not args.openl3_weights:
        print(
            "\nOpenL3: not run (pass --openl3-weights; the official files cannot be downloaded here)"
        )


def speed(repeats=3):
    """Forward + backward seconds on 16 x 4 s (graph mode, after a warm-up), against
    MultiResolutionSTFTLoss in the same run."""
    import time

    import tensorflow as tf

    from spectral_restore.losses import MultiResolutionSTFTLoss

    rng = np.random.default_rng(1)
    clean = tf.constant(rng.normal(scale=0.1, size=(16, 4 * RATE)).astype("float32"))
    noisy = tf.Variable(clean + 0.01 * rng.normal(size=clean.shape).astype("float32"))
    timings = {}
    for name, loss in (
        ("musicnn MTT, l1", AudioEmbeddingLoss("musicnn")),
        ("vgg MTT, l1", AudioEmbeddingLoss("musicnn", embedding_options={"model": "MTT_vgg"})),
        ("MultiResolutionSTFTLoss", MultiResolutionSTFTLoss()),
    ):

        @tf.function
        def step(loss=loss):
            with tf.GradientTape() as tape:
                value = loss(clean, noisy)
            return value, tape.gradient(value, noisy)

        step()
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        timings[name] = (time.perf_counter() - start) / repeats
    return timings


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(LEVELS), figsize=(4 * len(LEVELS), 3.4))
    for axis, kind in zip(axes, LEVELS):
        for name, per_kind in results.items():
            curve = np.asarray(per_kind[kind]["mean_curve"])
            axis.plot(range(len(curve)), curve / max(curve[-1], 1e-12), marker="o", label=name)
        shown = range(0, len(LEVELS[kind]), 2)
        axis.set_xticks(shown, [f"{LEVELS[kind][i]:.2f}".rstrip("0").rstrip(".") for i in shown])
        axis.set_title(kind)
        axis.set_xlabel(
            {"noise": "SNR (dB)", "clipping": "clip level (x peak)", "band_limit": "cutoff (Hz)"}[
                kind
            ]
        )
    axes[0].set_ylabel("loss / loss at strongest damage")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
