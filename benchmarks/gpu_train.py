"""Training on a GPU under JAX, with nothing but small wheels and a compact speech file.

Made for a machine that has JAX and a GPU but no TensorFlow (and no internet): only
keras, namex, optree, soundfile (with cffi, pycparser) travel as wheels, and the
speech as one ``.npz``. Two steps:

1. Where TensorFlow and TFDS are installed (this repository's venv), write the speech::

       python benchmarks/gpu_train.py make-npz speech.npz

   (the ``synthetic_speech`` train split and its held-out voices, int16, about 30 MB).

2. On the GPU machine, train each named config for a few minutes through the
   project's own trainer (``training.train.run``: the JAX backend, ``AudioDataset``,
   damage on the accelerator inside the model), then score the held-out voices::

       KERAS_BACKEND=jax python benchmarks/gpu_train.py run --npz speech.npz --out OUT \\
           --minutes 2 --run crn_base training/configs/base.yaml model.preset=base \\
           --run conformer_base training/configs/base.yaml model.architecture=conformer

   Writes ``OUT/gpu_train.json``: device, per run the training examples/s, the
   median step time, steps, compile time, and the held-out PESQ-WB before and
   after restoration per damage type of the chain, plus a clean-input row (a
   restorer must do no harm). A run that fails is recorded with its error and the
   others go on.

PESQ-WB comes from the differentiable P.862 model (``spectral_restore.p862.model.mos``
with its in-graph delay search), which tracks the ``pesq`` package to a mean
absolute error of about 0.002 (0.01 on reverberant speech; benchmarks/README.md), so
no ``pesq`` build is needed on the GPU machine.
"""

import argparse
import functools
import json
import os
import platform
import sys
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def make_npz(path):
    """Writes the synthetic_speech train and test splits (TFDS, needs TensorFlow) to ``path``."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401 - registers the project's builders
    from spectral_restore.data.source import save_npz

    builder = tfds.builder("synthetic_speech")
    builder.download_and_prepare()
    splits = {}
    for split in ("train", "test"):
        splits[split] = [
            example["audio"] for example in tfds.as_numpy(builder.as_dataset(split=split))
        ]
    save_npz(path, builder.info.features["audio"].sample_rate, **splits)
    sizes = {split: len(clips) for split, clips in splits.items()}
    print(f"wrote {path}: {sizes} clips, {os.path.getsize(path) / 1e6:.1f} MB")


def held_out(npz, sample_rate, seconds, clips=None):
    """The first ``clips`` (None: all) of the test split, level-normalised as training does, zero-padded or cut
    to ``seconds`` so they batch: ``[clips, samples]`` float32."""
    from spectral_restore.data import levels
    from spectral_restore.data.source import load_npz

    length = int(round(seconds * sample_rate))
    padded = []
    for clip in load_npz(npz, "test", sample_rate)[:clips]:
        clip = levels.normalise_level(clip[:length], -25.0)
        padded.append(np.pad(clip, (0, length - len(clip))))
    return np.stack(padded).astype(np.float32)


def damaged_versions(clean, chain_name, sample_rate, seed):
    """``{damage type: damaged clips}``: each link of the chain alone, at a strength
    drawn from its range, seeds training never saw; ``"clean"`` is the input itself."""
    from keras import ops

    from spectral_restore.data.artifacts import CHAINS, ArtifactChain

    versions = {"clean": clean}
    for index, spec in enumerate(CHAINS[chain_name]):
        chain = ArtifactChain(
            [(spec.name, 1.0, spec.strength)], sample_rate=sample_rate, ensure_one=False
        )
        damaged, _ = chain(clean, np.array([seed, index], np.int32))
        versions[spec.name] = np.asarray(ops.convert_to_numpy(damaged), np.float32)
    return versions


@functools.lru_cache(maxsize=None)
def _compiled_pesq(sample_rate):
    import jax

    from spectral_restore.p862.model import mos

    return jax.jit(lambda clean, degraded: mos(clean, degraded, sample_rate, "wb"))


def surrogate_pesq(clean, degraded, sample_rate, batch=40):
    """Wide-band MOS-LQO of the differentiable P.862 model, per clip (compiled once per
    batch shape, so every damage type and run reuses it)."""
    score = _compiled_pesq(sample_rate)
    return np.concatenate(
        [
            np.asarray(score(clean[i : i + batch], degraded[i : i + batch]))
            for i in range(0, len(clean), batch)
        ]
    )


def step_timer(minutes):
    """A Keras callback that records the wall time of every training batch and stops
    training ``minutes`` after the first batch ended, so that every run gets the same
    training time whatever its compilation took."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            if self.ends[-1] - self.ends[0] >= minutes * 60.0:
                self.model.stop_training = True

    return StepTimer()


def timing(timer, batch_size, skip=5):
    """Median step time and examples/s after the first ``skip`` steps (compilation)."""
    ends = np.asarray(timer.ends)
    if len(ends) <= skip + 1:
        return {"steps_timed": 0}
    steps = np.diff(ends[skip:])
    return {
        "steps_timed": int(len(steps)),
        "step_ms_median": round(float(np.median(steps)) * 1000, 2),
        "examples_per_second": round(batch_size / float(np.median(steps)), 1),
        # Including validation passes and any other pause between steps.
        "examples_per_second_overall": round(
            batch_size * len(steps) / float(ends[-1] - ends[skip]), 1
        ),
    }


def split_run(spec, default_minutes):
    """``[NAME, CONFIG, KEY=VALUE..., minutes=M]`` -> name, config, overrides, minutes."""
    name, config_path, *rest = spec
    minutes = default_minutes
    overrides = []
    for item in rest:
        if item.startswith("minutes="):
            minutes = float(item[len("minutes=") :])
        else:
            overrides.append(item)
    return name, config_path, overrides, minutes


def train_and_score(name, config_path, overrides, minutes, args, versions, before, device):
    import keras

    from training.config import load_config
    from training.train import run

    out = os.path.join(args.out, name)
    overrides = [
        f"data.source={args.npz}",
        "data.train_split=train",
        "data.eval_split=test",
        f"training.output_dir={out}",
        "training.max_minutes=null",
        "training.pesq_batches=0",
        "training.audio_examples=0",
        *overrides,
    ]
    config = load_config(config_path, overrides)
    timer = step_timer(minutes)
    started = time.perf_counter()
    summary = run(config, callbacks=[timer])
    wall = time.perf_counter() - started
    model = keras.saving.load_model(summary["model"], compile=False)
    rate = config["model"]["sample_rate"]
    clean = versions["clean"]
    rows = {}
    for kind, damaged in versions.items():
        restored = np.concatenate(
            [
                np.asarray(model.predict_on_batch(damaged[i : i + 16]))
                for i in range(0, len(damaged), 16)
            ]
        )
        after = surrogate_pesq(clean, restored, rate)
        rows[kind] = {
            "before": round(float(np.mean(before[kind])), 3),
            "after": round(float(np.mean(after)), 3),
            "worse": int(np.sum(after < before[kind] - 0.05)),
        }
    return {
        "config": config_path,
        "overrides": overrides[7:],
        "train_minutes_after_first_step": minutes,
        "compile_and_first_step_seconds": round(timer.ends[0] - timer.started, 1),
        "device": device,
        "batch_size": config["data"]["batch_size"],
        "parameters": summary["parameters"],
        "steps": summary["steps"],
        "train_minutes": summary["minutes"],
        "wall_seconds": round(wall, 1),
        **timing(timer, config["data"]["batch_size"]),
        "pesq_wb": rows,
        "mean_gain_damaged": round(
            float(np.mean([r["after"] - r["before"] for k, r in rows.items() if k != "clean"])), 3
        ),
    }


def step_times(args):
    """Median training-step time of each ``ARCHITECTURE:PRESET[:key=value,...]`` (keys:
    the architecture's constructor arguments, e.g. ``conformer:base:remat=true``) at
    each batch size, on one fixed batch of speech (no damage, no data loading): the
    models' own cost."""
    import keras

    from spectral_restore.data.source import load_npz
    from spectral_restore.models import build_model
    from training.config import build_loss, load_config
    from training.train import precision_policy

    from train_speed import parse_spec

    config = load_config(args.config)
    rate = config["model"]["sample_rate"]
    length = int(round(args.seconds * rate))
    clips = [clip for clip in load_npz(args.npz, "train", rate) if len(clip) >= length]
    results = {"seconds": args.seconds, "precision": args.precision, "runs": {}}
    for spec in args.architecture:
        architecture, preset, overrides = parse_spec(spec)
        for batch in args.batch:
            name = f"{spec}@{batch}"
            try:
                keras.mixed_precision.set_global_policy(
                    precision_policy(args.precision) or "float32"
                )
                model = build_model(architecture, preset, sample_rate=rate, **overrides)
                model.compile(
                    optimizer=keras.optimizers.Adam(1e-4), loss=build_loss(config["loss"])
                )
                clean = np.stack([clip[:length] for clip in clips[:batch]]).astype(np.float32)
                damaged = clean + 0.05 * np.random.default_rng(0).standard_normal(
                    clean.shape
                ).astype(np.float32)
                started = time.perf_counter()
                model.train_on_batch(damaged, clean)
                first = time.perf_counter() - started
                steps = []
                for _ in range(args.steps):
                    started = time.perf_counter()
                    logs = model.train_on_batch(damaged, clean, return_dict=True)
                    float(logs["loss"])  # waits for the step
                    steps.append(time.perf_counter() - started)
                results["runs"][name] = {
                    "parameters": int(model.count_params()),
                    "compile_seconds": round(first, 1),
                    "step_ms_median": round(1000 * float(np.median(steps)), 2),
                    "examples_per_second": round(batch / float(np.median(steps)), 1),
                }
            except (
                Exception
            ):  # an out-of-memory batch size is a result, not the end of the benchmark
                results["runs"][name] = {"error": traceback.format_exc()[-600:]}
            print(name, results["runs"][name], flush=True)
            keras.backend.clear_session()
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "step_times.json"), "w") as f:
                json.dump(results, f, indent=2)
    keras.mixed_precision.set_global_policy("float32")


def markdown(results):
    lines = []
    for name, result in results["runs"].items():
        if "error" in result:
            lines.append(f"### {name}: failed\n```\n{result['error'][-800:]}\n```")
            continue
        lines.append(
            f"### {name}: {result['steps']} steps x {result['batch_size']}, "
            f"{result.get('examples_per_second')} examples/s, step {result.get('step_ms_median')} ms, "
            f"{result['parameters']:,} parameters"
        )
        lines.append("| damage | PESQ-WB before | after | clips worse by > 0.05 |")
        lines.append("|---|---|---|---|")
        for kind, row in result["pesq_wb"].items():
            lines.append(f"| {kind} | {row['before']:.2f} | {row['after']:.2f} | {row['worse']} |")
    return "\n".join(lines)


def run_all(args):
    import keras

    if keras.backend.backend() != "jax":
        sys.exit("gpu_train.py run: set KERAS_BACKEND=jax")
    import jax

    device = str(jax.devices()[0].device_kind if jax.devices() else "none")
    os.makedirs(args.out, exist_ok=True)
    clean = held_out(args.npz, 16000, args.eval_seconds, args.eval_clips)
    versions = damaged_versions(clean, args.chain, 16000, args.eval_seed)
    before = {kind: surrogate_pesq(clean, damaged, 16000) for kind, damaged in versions.items()}
    if args.save_audio:
        np.savez_compressed(os.path.join(args.out, "held_out.npz"), **versions)
    results = {
        "device": device,
        "platform": platform.platform(),
        "jax": jax.__version__,
        "keras": keras.__version__,
        "minutes_per_run": args.minutes,
        "held_out_clips": len(clean),
        "runs": {},
    }
    path = os.path.join(args.out, "gpu_train.json")
    for spec in args.run:
        name, config_path, overrides, minutes = split_run(spec, args.minutes)
        print(f"=== {name}: {config_path} {' '.join(overrides)}, {minutes} minutes", flush=True)
        try:
            results["runs"][name] = train_and_score(
                name, config_path, overrides, minutes, args, versions, before, device
            )
        except Exception:  # one failed run must not lose the others' numbers
            results["runs"][name] = {"error": traceback.format_exc()}
            print(results["runs"][name]["error"], flush=True)
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
    text = markdown(results)
    with open(os.path.join(args.out, "gpu_train.md"), "w") as f:
        f.write(text + "\n")
    print(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    npz = commands.add_parser(
        "make-npz", help="write the synthetic_speech splits to an .npz (needs TensorFlow)"
    )
    npz.add_argument("path")
    train = commands.add_parser("run", help="train and score each --run under JAX")
    train.add_argument("--npz", required=True)
    train.add_argument("--out", required=True)
    train.add_argument(
        "--minutes",
        type=float,
        default=2.0,
        help="training time per run, counted from the end of the first (compiled) step",
    )
    train.add_argument("--chain", default="default", help="damage types scored (artifacts.CHAINS)")
    train.add_argument("--eval-seed", type=int, default=7000)
    train.add_argument("--eval-seconds", type=float, default=3.5)
    train.add_argument(
        "--eval-clips", type=int, default=None, help="score only the first N held-out clips"
    )
    train.add_argument(
        "--save-audio",
        action="store_true",
        help="also write the held-out clips and their damaged versions to OUT/held_out.npz",
    )
    train.add_argument(
        "--run",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME CONFIG", "KEY=VALUE"),
        help="a run: its name, a config file, overrides and optionally minutes=M",
    )
    steps = commands.add_parser(
        "step-time", help="median training-step time per architecture and batch size"
    )
    steps.add_argument("--npz", required=True)
    steps.add_argument("--out", required=True)
    steps.add_argument(
        "--config",
        default=os.path.join(ROOT, "training", "configs", "base.yaml"),
        help="the loss terms of this config",
    )
    steps.add_argument(
        "--architecture",
        action="append",
        required=True,
        help="ARCHITECTURE:PRESET[:key=value,...], e.g. crn:base or conformer:base:remat=true",
    )
    steps.add_argument("--batch", type=int, action="append", required=True)
    steps.add_argument("--seconds", type=float, default=2.0)
    steps.add_argument("--steps", type=int, default=20)
    steps.add_argument("--precision", default="bfloat16", help="training.mixed_precision value")
    args = parser.parse_args(argv)
    if args.command == "make-npz":
        make_npz(args.path)
    elif args.command == "step-time":
        step_times(args)
    else:
        for spec in args.run:
            if len(spec) < 2:
                parser.error(f"--run needs a name and a config file; received {spec}")
        run_all(args)


if __name__ == "__main__":
    main()
