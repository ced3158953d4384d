"""How closely PESQLoss.mos tracks the reference `pesq` package, and how fast it is.

Pairs: real speech (the CMU ARCTIC utterance shipped by pysptk) and synthesized
speech (espeak-ng and flite voices speaking Harvard sentences), 4 s at 16 kHz,
each damaged by one of: noise (white, pink, brown, babble; SNR uniform in
-5..30 dB), clipping (hard and soft), band-limiting (low-pass, telephone band,
band-pass), reverb (RT60 0.2-1.2 s), dropouts (packet loss, 2-12 per second)
and codec-like damage (strength 0.1-1). For each pair: the reference wide-band
(P.862.2) and narrow-band (P.862 + P.862.1) MOS-LQO and the surrogate's.
Reported overall and per damage type: Pearson r, Spearman rho, mean absolute error.

Speed: one forward pass of the surrogate on a batch of 16 x 4 s (graph mode,
after a warm-up), forward + backward, and the reference `pesq` on the same 16
pairs (one process, and `pesq_batch` over 2 processes).

Both alignments are measured: the default one delay per example searched in the
graph, and ``delay_search="utterance"`` (P.862's own utterance alignment, on the host).

Run: python benchmarks/pesq_surrogate.py [--per-type 36]
Writes benchmarks/results/pesq_surrogate.json and pesq_surrogate.png, prints Markdown.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import soundfile as sf
import tensorflow as tf
from pesq import pesq, pesq_batch
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from spectral_restore.data import artifacts  # noqa: E402
from spectral_restore.data.speech import FLITE_VOICES, HARVARD_SENTENCES, synthesize  # noqa: E402
from spectral_restore.losses import PESQLoss  # noqa: E402

RATE = 16000
SAMPLES = 4 * RATE
SENTENCES = HARVARD_SENTENCES[:6]
ESPEAK_VOICES = ("en-us", "en-us+f3", "en-gb+m3", "en-us+m7", "de+f2", "fr+m2")
TYPES = ("noise", "clipping", "band_limit", "reverb", "dropouts", "codec")


def arctic_utterance():
    spec = importlib.util.find_spec("pysptk")
    path = os.path.join(
        spec.submodule_search_locations[0], "example_audio_data", "arctic_a0007.wav"
    )
    samples, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    return samples


def fit_length(x):
    """4 s: longer speech is cut, shorter is padded with silence at the end."""
    x = x[:SAMPLES]
    return np.pad(x, (0, SAMPLES - len(x))).astype(np.float32)


def speech_corpus():
    clips = [("arctic", fit_length(arctic_utterance()))]
    for i, voice in enumerate(ESPEAK_VOICES):
        text = SENTENCES[i % len(SENTENCES)] + " " + SENTENCES[(i + 1) % len(SENTENCES)]
        clips.append((f"espeak-ng:{voice}", fit_length(synthesize(text, voice=voice))))
    for i, voice in enumerate(FLITE_VOICES):
        text = SENTENCES[(i + 2) % len(SENTENCES)] + " " + SENTENCES[(i + 3) % len(SENTENCES)]
        clips.append((f"flite:{voice}", fit_length(synthesize(text, voice=voice, engine="flite"))))
    for _, x in clips:
        x *= 0.5 / max(np.max(np.abs(x)), 1e-9)
    return clips


def damage(kind, x, rng, others):
    """One damaged copy of ``x`` and a description of the damage (babble talkers come from ``others``)."""
    wave = x[None]
    seed = [int(rng.integers(1 << 30)), int(rng.integers(1 << 30))]
    if kind == "noise":
        snr = float(rng.uniform(-5, 30))
        color = rng.choice(["white", "pink", "brown", "babble"])
        if color == "babble":
            out = artifacts.add_babble(np.stack([x, *others[:4]]), seed, snr)[:1]
        else:
            out = artifacts.add_noise(
                wave, seed, snr, color={"white": 0.0, "pink": 1.0, "brown": 2.0}[color]
            )
        return out, f"{color} {snr:.1f} dB"
    if kind == "clipping":
        if rng.random() < 0.5:
            level = float(rng.uniform(0.02, 0.4))
            return artifacts.hard_clip(wave, level * np.max(np.abs(x))), f"hard {level:.2f} of peak"
        drive = float(rng.uniform(3, 30))
        return artifacts.soft_clip(wave, drive), f"soft {drive:.0f} dB"
    if kind == "band_limit":
        choice = rng.integers(3)
        if choice == 0:
            cutoff = float(rng.uniform(1000, 6000))
            return artifacts.lowpass(wave, cutoff, RATE), f"low-pass {cutoff:.0f} Hz"
        if choice == 1:
            return artifacts.telephone(wave, RATE), "telephone 300-3400 Hz"
        low, high = float(rng.uniform(100, 800)), float(rng.uniform(2500, 7000))
        return artifacts.band_limit(wave, low, high, RATE), f"band {low:.0f}-{high:.0f} Hz"
    if kind == "reverb":
        rt60 = float(rng.uniform(0.2, 1.2))
        return artifacts.reverb(wave, seed, rt60, RATE), f"RT60 {rt60:.2f} s"
    if kind == "dropouts":
        rate = float(rng.uniform(2, 12))
        return artifacts.dropouts(wave, seed, rate, RATE), f"{rate:.1f} drops/s"
    strength = float(rng.uniform(0.1, 1.0))
    return artifacts.codec(wave, strength, RATE), f"strength {strength:.2f}"


def make_pairs(per_type, seed=0):
    rng = np.random.default_rng(seed)
    corpus = speech_corpus()
    pairs = []
    for kind in TYPES:
        for i in range(per_type):
            source, clean = corpus[i % len(corpus)]
            others = [c for j, (_, c) in enumerate(corpus) if j != i % len(corpus)]
            degraded, detail = damage(kind, clean, rng, others)
            pairs.append(
                {
                    "type": kind,
                    "source": source,
                    "detail": detail,
                    "clean": clean,
                    "degraded": np.asarray(degraded)[0].astype(np.float32),
                }
            )
    return pairs


def correlation_table(ref, ours, types):
    from scipy import stats

    rows = {}
    for name in ("all",) + TYPES:
        keep = np.ones(len(ref), bool) if name == "all" else types == name
        r, o = ref[keep], ours[keep]
        rows[name] = {
            "n": int(keep.sum()),
            "pearson_r": float(stats.pearsonr(r, o)[0]),
            "spearman_rho": float(stats.spearmanr(r, o)[0]),
            "mae": float(np.mean(np.abs(r - o))),
            "max_abs_error": float(np.max(np.abs(r - o))),
            "reference_range": [float(r.min()), float(r.max())],
        }
    return rows


def surrogate_scores(loss, clean, degraded, batch=16):
    mos = tf.function(loss.mos)
    out = [
        np.asarray(mos(clean[i : i + batch], degraded[i : i + batch]))
        for i in range(0, len(clean), batch)
    ]
    return np.concatenate(out)


def timings(loss, clean, degraded, repeats):
    mos = tf.function(loss.mos)

    @tf.function
    def value_and_gradient(c, d):
        with tf.GradientTape() as tape:
            tape.watch(d)
            value = tf.reduce_mean(loss(c, d))
        return value, tape.gradient(value, d)

    c, d = tf.constant(clean), tf.constant(degraded)
    mos(c, d), value_and_gradient(c, d)
    result = {}
    for label, fn in (
        ("surrogate forward", lambda: mos(c, d).numpy()),
        ("surrogate forward + backward", lambda: value_and_gradient(c, d)[1].numpy()),
        ("pesq, 1 process", lambda: [pesq(RATE, a, b, "wb") for a, b in zip(clean, degraded)]),
        ("pesq_batch, 2 processes", lambda: pesq_batch(RATE, clean, degraded, "wb", n_processor=2)),
    ):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        result[label] = float(np.median(times))
    return result


def scatter_plot(ref, ours, types, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for kind in TYPES:
        keep = types == kind
        ax.scatter(ref[keep], ours[keep], s=12, label=kind, alpha=0.8)
    ax.plot([1, 4.7], [1, 4.7], color="black", lw=0.8)
    ax.set_xlabel("reference pesq (P.862.2 MOS-LQO)")
    ax.set_ylabel("PESQLoss.mos")
    ax.set_title("Differentiable PESQ vs the reference, wide band")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-type", type=int, default=36, help="pairs per damage type (default 36: 216 pairs)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pairs = make_pairs(args.per_type)
    clean = np.stack([p["clean"] for p in pairs])
    degraded = np.stack([p["degraded"] for p in pairs])
    types = np.array([p["type"] for p in pairs])
    results = {
        "pairs": len(pairs),
        "seconds_per_pair": SAMPLES / RATE,
        "modes": {},
        "utterance_alignment": {},
    }
    for mode in ("wb", "nb"):
        ref = np.array(
            [
                pesq(RATE, p["clean"], p["degraded"], mode)
                for p in tqdm(pairs, desc=f"reference pesq {mode}", file=sys.stdout)
            ]
        )
        ours = surrogate_scores(PESQLoss(mode=mode), clean, degraded)
        results["modes"][mode] = {"table": correlation_table(ref, ours, types)}
        # The same pairs with P.862's own per-utterance alignment (delay_search="utterance").
        aligned = surrogate_scores(PESQLoss(mode=mode, delay_search="utterance"), clean, degraded)
        results["utterance_alignment"][mode] = {"table": correlation_table(ref, aligned, types)}
        if mode == "wb":
            worst = np.argsort(-np.abs(ref - ours))[:10]
            results["modes"][mode]["largest_errors"] = [
                {
                    "type": pairs[i]["type"],
                    "source": pairs[i]["source"],
                    "damage": pairs[i]["detail"],
                    "reference": float(ref[i]),
                    "surrogate": float(ours[i]),
                }
                for i in worst
            ]
            scatter_plot(ref, ours, types, os.path.join(HERE, "results", "pesq_surrogate.png"))
    results["timing_16x4s"] = timings(PESQLoss(), clean[:16], degraded[:16], args.repeats)
    utterance_timing = timings(PESQLoss(delay_search="utterance"), clean[:16], degraded[:16], 1)
    results["timing_16x4s"]["surrogate forward, utterance alignment"] = utterance_timing[
        "surrogate forward"
    ]
    with open(os.path.join(HERE, "results", "pesq_surrogate.json"), "w") as f:
        json.dump(results, f, indent=2)
    blocks = [(f"{mode}, one delay per example", block) for mode, block in results["modes"].items()]
    blocks += [
        (f"{mode}, P.862 utterance alignment", block)
        for mode, block in results["utterance_alignment"].items()
    ]
    for title, block in blocks:
        print(f"\n{title}: {len(pairs)} pairs\n")
        print("| damage | n | Pearson r | Spearman rho | MAE | max error |")
        print("|---|---|---|---|---|---|")
        for name, row in block["table"].items():
            print(
                f"| {name} | {row['n']} | {row['pearson_r']:.4f} | {row['spearman_rho']:.4f} | "
                f"{row['mae']:.4f} | {row['max_abs_error']:.3f} |"
            )
    print("\n| 16 x 4 s, CPU | seconds |\n|---|---|")
    for label, seconds in results["timing_16x4s"].items():
        print(f"| {label} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
