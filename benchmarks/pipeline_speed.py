"""Examples per second of the data pipeline (default artifact chain) against the
training step rate of the `small` model, measured in one run on this machine.

The pipeline must never be the bottleneck: its rate should be at least 3x what a
training step consumes. Also reports how the pipeline's cost grows with clip
length and batch size.

Run: python benchmarks/pipeline_speed.py [--batches 12]
Writes benchmarks/results/pipeline_speed.json and prints Markdown tables.
"""

import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 16000


def speech_clips(count=48, seconds=6.0):
    from spectral_restore.data.speech import synthesize

    voices = ["en-us", "en-us+f3", "en-gb+m3", "de+f4"]
    texts = [
        "The birch canoe slid on the smooth planks.",
        "Glue the sheet to the dark blue background.",
        "Rice is often served in round bowls.",
        "The juice of lemons makes fine punch.",
    ]
    clips = []
    for i in range(count):
        wave = synthesize(texts[i % 4], voice=voices[(i // 4) % 4])
        wave = np.tile(wave, int(np.ceil(seconds * RATE / len(wave))))[: int(seconds * RATE)]
        clips.append(np.roll(wave, 997 * i))
    return np.stack(clips).astype(np.float32)


def pipeline_rate(clips, seconds, batch_size, batches):
    from spectral_restore.data.pipeline import make_dataset

    dataset = make_dataset(
        clips, segment_seconds=seconds, batch_size=batch_size, repeat=True, seed=1
    )
    iterator = iter(dataset)
    next(iterator)  # tracing
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def training_rate(seconds, batch_size, steps):
    import keras

    from spectral_restore.models import build_model
    from training.config import build_loss, load_config

    model = build_model("crn", "small")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=build_loss(load_config("small.yaml")["loss"])
    )
    x = (
        np.random.default_rng(0)
        .standard_normal((batch_size * (steps + 2), int(seconds * RATE)))
        .astype(np.float32)
        * 0.05
    )
    model.fit(x[: 2 * batch_size], x[: 2 * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x[2 * batch_size :], x[2 * batch_size :], batch_size=batch_size, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    clips = speech_clips()
    results = {"pipeline_3s_b16": pipeline_rate(clips, 3.0, 16, args.batches)}
    results["train_small_3s_b16"] = training_rate(3.0, 16, args.batches)
    results["ratio"] = results["pipeline_3s_b16"] / results["train_small_3s_b16"]
    results["scaling"] = {
        f"{seconds}s_b{batch}": pipeline_rate(clips, seconds, batch, max(4, args.batches // 2))
        for seconds, batch in [(1.0, 16), (5.0, 16), (3.0, 4), (3.0, 32)]
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "pipeline_speed.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("| what | examples/s |\n|---|---|")
    print(f"| pipeline, default chain, 3 s clips, batch 16 | {results['pipeline_3s_b16']:.1f} |")
    print(
        f"| training step of `small`, 3 s clips, batch 16 | {results['train_small_3s_b16']:.1f} |"
    )
    print(f"| ratio (pipeline / training) | {results['ratio']:.1f}x |")
    print("\n| clip length, batch | pipeline examples/s |\n|---|---|")
    for key, value in results["scaling"].items():
        print(f"| {key} | {value:.1f} |")


if __name__ == "__main__":
    main()
