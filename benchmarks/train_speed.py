"""Training step time and examples/s of restoration architectures on this machine,
measured in one run, interleaved, so that the ratio between them is meaningful on a
shared CPU.

Each model is built through the registry, compiled with the loss of
``training/configs/small.yaml`` and Adam (``jit_compile="auto"``: XLA under JAX, none
under TensorFlow on a CPU), and warmed up; then ``--rounds`` rounds each time
``--steps`` ``train_on_batch`` steps of every model in turn. The median over rounds of
the wall-clock step time and of the process's CPU time per step (all threads) are
reported; on a CPU that other jobs share, the CPU time is the steadier measure of the
work a step takes. Run under another backend with ``KERAS_BACKEND=jax``.

Run: python benchmarks/train_speed.py [crn:small conformer:small conformer:small:channels=24 ...]
     [--batch 16] [--seconds 2] [--steps 3] [--rounds 3]
Writes benchmarks/results/train_speed_<backend>.json and prints a Markdown table.
"""

import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 16000


def parse_spec(spec):
    """``"conformer:small:channels=24,num_blocks=3"`` -> ("conformer", "small", {...})."""
    import yaml

    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"A model spec is architecture:preset[:key=value,...]; received {spec!r}")
    overrides = {}
    if len(parts) == 3:
        for item in parts[2].split(","):
            key, value = item.split("=", 1)
            overrides[key] = yaml.safe_load(value)
    return parts[0], parts[1], overrides


def measure(specs, batch, seconds, steps, rounds):
    import keras

    from spectral_restore.models import build_model
    from training.config import build_loss, load_config

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    clean = (0.1 * np.sin(2 * np.pi * rng.uniform(100, 400, (batch, 1)) * t)).astype(np.float32)
    noisy = (clean + 0.03 * rng.standard_normal(clean.shape)).astype(np.float32)
    loss_config = load_config("small.yaml")["loss"]
    models = {}
    for spec in specs:
        architecture, preset, overrides = parse_spec(spec)
        model = build_model(architecture, preset, **overrides)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss(loss_config), jit_compile="auto")
        for _ in range(2):
            model.train_on_batch(noisy, clean)
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        models[spec] = (model, trainable)
    wall = {spec: [] for spec in specs}
    cpu = {spec: [] for spec in specs}
    for _ in range(rounds):
        for spec, (model, _) in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                model.train_on_batch(noisy, clean)
            wall[spec].append((time.perf_counter() - start) / steps)
            cpu[spec].append((time.process_time() - start_cpu) / steps)
    results = {}
    for spec, (model, trainable) in models.items():
        step = float(np.median(wall[spec]))
        results[spec] = {"trainable_parameters": trainable, "step_seconds": round(step, 4),
                         "examples_per_second": round(batch / step, 2),
                         "cpu_seconds_per_step": round(float(np.median(cpu[spec])), 4),
                         "step_seconds_per_round": [round(x, 4) for x in wall[spec]]}
    first = results[specs[0]]
    for spec in specs:
        results[spec]["step_ratio_vs_first"] = round(results[spec]["step_seconds"] / first["step_seconds"], 3)
        results[spec]["cpu_ratio_vs_first"] = round(
            results[spec]["cpu_seconds_per_step"] / first["cpu_seconds_per_step"], 3)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=["crn:small", "conformer:small"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=None, help="JSON file; default results/train_speed_<backend>.json")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    backend = keras.backend.backend()
    results = {"backend": backend, "batch": args.batch, "seconds": args.seconds, "steps": args.steps,
               "rounds": args.rounds, "models": measure(args.specs, args.batch, args.seconds, args.steps, args.rounds)}
    output = args.output or os.path.join(HERE, "results", f"train_speed_{backend}.json")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"backend {backend}, batch {args.batch} x {args.seconds} s\n")
    print("| model | trainable parameters | step (s) | examples/s | step vs first | CPU s/step | CPU vs first |\n"
          "|---|---|---|---|---|---|---|")
    for spec, row in results["models"].items():
        print(f"| {spec} | {row['trainable_parameters']:,} | {row['step_seconds']:.3f} | "
              f"{row['examples_per_second']:.1f} | {row['step_ratio_vs_first']:.2f} | "
              f"{row['cpu_seconds_per_step']:.3f} | {row['cpu_ratio_vs_first']:.2f} |")


if __name__ == "__main__":
    main()
