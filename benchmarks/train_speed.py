"""Training step time and examples/s of restoration architectures on this machine,
measured in one run, interleaved, so that the ratio between them is meaningful on a
shared CPU; with ``--backends``, under several Keras backends side by side.

Each model is built through the registry, compiled with the loss of
``training/configs/small.yaml`` and Adam (``jit_compile="auto"``: XLA under JAX, none
under TensorFlow on a CPU), and warmed up; then ``--rounds`` rounds each time
``--steps`` ``train_on_batch`` steps of every model in turn. The median over rounds of
the wall-clock step time and of the process's CPU time per step (all threads) are
reported; on a CPU that other jobs share, the CPU time is the steadier measure of the
work a step takes. Run under another backend with ``KERAS_BACKEND=jax``.

``--backends tensorflow jax`` starts one worker process per backend, each building and
warming up every model, then runs the rounds in turn across the workers (one worker
steps while the others wait), and adds each backend's time relative to the first.

A spec's ``transpose=keras`` builds the CRN with ``keras.layers.Conv2DTranspose`` in its
decoder, as before 2026-11-28, instead of the polyphase layer
(``spectral_restore.models.layers.Conv2DTranspose``) that computes the same thing.

Run: python benchmarks/train_speed.py [crn:small conformer:small conformer:small:channels=24 ...]
     [--batch 16] [--seconds 2] [--steps 3] [--rounds 3] [--backends tensorflow jax]
Writes benchmarks/results/train_speed_<backend>.json (train_speed_backends.json with
``--backends``) and prints a Markdown table.
"""

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from unittest import mock

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


def decoder_layer(transpose):
    """A context in which the CRN is built with the named transposed convolution."""
    import keras

    from spectral_restore.models import restorer

    if transpose == "polyphase":
        return contextlib.nullcontext()
    if transpose == "keras":
        return mock.patch.object(restorer, "Conv2DTranspose", keras.layers.Conv2DTranspose)
    raise ValueError(
        f"`transpose` must be 'polyphase' or 'keras'. Received: transpose={transpose!r}"
    )


def batch_of(batch, seconds):
    """Noisy and clean sine batches ``[batch, seconds * 16000]``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    clean = (0.1 * np.sin(2 * np.pi * rng.uniform(100, 400, (batch, 1)) * t)).astype(np.float32)
    noisy = (clean + 0.03 * rng.standard_normal(clean.shape)).astype(np.float32)
    return noisy, clean


def build(specs, noisy, clean):
    """``{spec: (compiled model warmed up by two steps, trainable parameter count)}``."""
    import keras

    from spectral_restore.models import build_model
    from training.config import build_loss, load_config

    loss_config = load_config("small.yaml")["loss"]
    models = {}
    for spec in specs:
        architecture, preset, overrides = parse_spec(spec)
        with decoder_layer(overrides.pop("transpose", "polyphase")):
            model = build_model(architecture, preset, **overrides)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss=build_loss(loss_config), jit_compile="auto"
        )
        for _ in range(2):
            model.train_on_batch(noisy, clean)
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        models[spec] = (model, trainable)
    return models


def time_round(models, noisy, clean, steps):
    """``{spec: (wall seconds, CPU seconds) per step}`` of ``steps`` steps of each model in turn."""
    times = {}
    for spec, (model, _) in models.items():
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            model.train_on_batch(noisy, clean)
        times[spec] = (
            (time.perf_counter() - start) / steps,
            (time.process_time() - start_cpu) / steps,
        )
    return times


def summarize(trainable, rounds, batch):
    """Per model: medians over ``rounds`` (a list of ``time_round`` results) and ratios to the first model."""
    results = {}
    for spec, count in trainable.items():
        wall = [r[spec][0] for r in rounds]
        step = float(np.median(wall))
        results[spec] = {
            "trainable_parameters": count,
            "step_seconds": round(step, 4),
            "examples_per_second": round(batch / step, 2),
            "cpu_seconds_per_step": round(float(np.median([r[spec][1] for r in rounds])), 4),
            "step_seconds_per_round": [round(x, 4) for x in wall],
        }
    first = next(iter(results.values()))
    for row in results.values():
        row["step_ratio_vs_first"] = round(row["step_seconds"] / first["step_seconds"], 3)
        row["cpu_ratio_vs_first"] = round(
            row["cpu_seconds_per_step"] / first["cpu_seconds_per_step"], 3
        )
    return results


def measure(specs, batch, seconds, steps, rounds):
    noisy, clean = batch_of(batch, seconds)
    models = build(specs, noisy, clean)
    timed = [time_round(models, noisy, clean, steps) for _ in range(rounds)]
    return summarize({spec: count for spec, (_, count) in models.items()}, timed, batch)


def worker(specs, batch, seconds, steps):
    """Builds the models under this process's backend, then times one round per
    ``round`` line on stdin; answers one JSON line per request on stdout."""
    import keras

    noisy, clean = batch_of(batch, seconds)
    models = build(specs, noisy, clean)
    backend = keras.backend.backend()
    answer = {
        "backend": backend,
        "version": importlib.import_module(backend).__version__,
        "trainable": {spec: count for spec, (_, count) in models.items()},
    }
    print(json.dumps(answer), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        print(json.dumps(time_round(models, noisy, clean, steps)), flush=True)


def measure_backends(backends, specs, batch, seconds, steps, rounds):
    """``({backend: summarize(...)}, {backend: version})`` from one worker process per
    backend, rounds interleaved."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        *specs,
        "--batch",
        str(batch),
        "--seconds",
        str(seconds),
        "--steps",
        str(steps),
        "--worker",
    ]
    workers, ready = {}, {}
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend)
        workers[backend] = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        # Built one after the other: compiling and tracing would disturb another worker's timing.
        ready[backend] = json.loads(workers[backend].stdout.readline())
    timed = {backend: [] for backend in backends}
    for _ in range(rounds):
        for backend, process in workers.items():
            process.stdin.write("round\n")
            process.stdin.flush()
            timed[backend].append(json.loads(process.stdout.readline()))
    for process in workers.values():
        process.stdin.close()
        if process.wait() != 0:
            raise RuntimeError(f"a benchmark worker exited with status {process.returncode}")
    results = {
        backend: summarize(ready[backend]["trainable"], timed[backend], batch)
        for backend in backends
    }
    first = results[backends[0]]
    for rows in results.values():
        for spec, row in rows.items():
            row["step_ratio_vs_first_backend"] = round(
                row["step_seconds"] / first[spec]["step_seconds"], 3
            )
            row["cpu_ratio_vs_first_backend"] = round(
                row["cpu_seconds_per_step"] / first[spec]["cpu_seconds_per_step"], 3
            )
    return results, {backend: ready[backend]["version"] for backend in backends}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=["crn:small", "conformer:small"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help="Keras backends to compare side by side, one worker process each",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--output", default=None, help="JSON file; default results/train_speed_<backend>.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.worker:
        worker(args.specs, args.batch, args.seconds, args.steps)
        return
    settings = {
        "batch": args.batch,
        "seconds": args.seconds,
        "steps": args.steps,
        "rounds": args.rounds,
    }
    if args.backends:
        models, versions = measure_backends(
            args.backends, args.specs, args.batch, args.seconds, args.steps, args.rounds
        )
        results = {"backends": versions, **settings, "models": models}
        name = "backends"
    else:
        import keras

        name = keras.backend.backend()
        models = {name: measure(args.specs, args.batch, args.seconds, args.steps, args.rounds)}
        results = {"backend": name, **settings, "models": models[name]}
    output = args.output or os.path.join(HERE, "results", f"train_speed_{name}.json")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"batch {args.batch} x {args.seconds} s\n")
    print(
        "| backend | model | trainable parameters | step (s) | examples/s | step vs first | CPU s/step | "
        "CPU vs first |"
        + (" step vs first backend | CPU vs first backend |" if args.backends else "")
        + "\n|---|---|---|---|---|---|---|---|"
        + ("---|---|" if args.backends else "")
    )
    for backend, rows in models.items():
        for spec, row in rows.items():
            line = (
                f"| {backend} | {spec} | {row['trainable_parameters']:,} | {row['step_seconds']:.3f} | "
                f"{row['examples_per_second']:.1f} | {row['step_ratio_vs_first']:.2f} | "
                f"{row['cpu_seconds_per_step']:.3f} | {row['cpu_ratio_vs_first']:.2f} |"
            )
            if args.backends:
                line += f" {row['step_ratio_vs_first_backend']:.2f} | {row['cpu_ratio_vs_first_backend']:.2f} |"
            print(line)


if __name__ == "__main__":
    main()
