"""Peak memory and real-time factor of ``spectral-restore restore`` on long files.

For each length, a synthetic stereo 16-bit WAV (48 kHz unless ``--rate``) (two slowly swept tones and
noise, different in each channel) is written block by block into a temporary folder,
restored by the ``spectral-restore restore`` command in a fresh Python process, checked
(same rate, channel count and length) and deleted. Peak memory is the child process's
maximum resident set size (``getrusage(RUSAGE_CHILDREN)``, measured for each run in its
own wrapper process); RTF = wall time / audio duration.

The model is ``build_restorer("small")`` freshly built (untrained, seeded); with
``--model tiny`` a one-level CRN with 8 GRU units (the tests' tiny model); with
``--model identity`` a Keras model that returns its input, which measures what the
file pipeline itself costs (reading, resampling twice, crossfading, writing) at a
speed that lets an hour of audio go through on a loaded 2-core machine. The model
sees one chunk at a time whatever the file's length, so its share of memory does not
grow with the file either.
``--kinds savedmodel`` restores with its SavedModel export instead.
``--before`` runs the same command with another checkout on ``PYTHONPATH`` (the code
before block-wise restoring, e.g. ``/work/main``) for comparison.

Run: python benchmarks/restore_memory.py --minutes 5 15 60 [--model tiny] [--kinds keras savedmodel]
     [--before PATH --before-minutes 1] [--output FILE]
Writes benchmarks/results/restore_memory_<model>.json and prints a Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHANNELS = 2

# A wrapper process runs the command and reports the command's own peak RSS.
WRAPPER = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    code = subprocess.run(sys.argv[1:]).returncode
    print(json.dumps({"returncode": code, "wall_s": time.perf_counter() - start,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
""")


def write_test_file(path, minutes, rate, block_seconds=30):
    """A ``minutes``-long stereo PCM_16 WAV at ``rate``, written in blocks."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=CHANNELS, subtype="PCM_16") as f:
        for start in range(0, total, block_seconds * rate):
            t = np.arange(start, min(total, start + block_seconds * rate)) / rate
            sweep = 200 + 100 * np.sin(2 * np.pi * t / 60)
            left = 0.3 * np.sin(2 * np.pi * np.cumsum(sweep) / rate) + rng.normal(0, 0.03, t.size)
            right = 0.2 * np.sin(2 * np.pi * 3 * np.cumsum(sweep) / rate) + rng.normal(
                0, 0.03, t.size
            )
            f.write(np.stack([left, right], axis=1))
    return total


def build_models(folder, kinds, name):
    """``{kind: path}`` of a freshly built model (``name``: "small", "tiny" or "identity")
    saved as each kind."""
    import keras

    from spectral_restore.models.restorer import SpectralRestorer

    keras.utils.set_random_seed(0)
    if name == "identity":
        model = keras.Sequential([keras.Input((None,)), keras.layers.Identity()], name="identity")
    else:
        model = (
            SpectralRestorer("small")
            if name == "small"
            else SpectralRestorer(channels=(4,), recurrent_units=8)
        )
    model(np.zeros((1, 16000), np.float32))
    paths = {"keras": os.path.join(folder, f"{name}.keras")}
    model.save(paths["keras"])
    if "savedmodel" in kinds:
        from spectral_restore.export import export_saved_model

        paths["savedmodel"] = os.path.join(folder, f"{name}_savedmodel")
        export_saved_model(paths["keras"], paths["savedmodel"])
    return {kind: paths[kind] for kind in kinds}


def restore(path, model, out_dir, pythonpath):
    env = dict(os.environ, PYTHONPATH=pythonpath, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        "-c",
        WRAPPER,
        sys.executable,
        "-m",
        "training.cli",
        "restore",
        path,
        "-o",
        out_dir,
        "-m",
        model,
        "-q",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["returncode"] != 0:
        raise RuntimeError(f"restore failed ({report}): {result.stderr[-3000:]}")
    return report


def measure(folder, minutes, rate, models, pythonpath, label, name):
    import soundfile as sf

    path = os.path.join(folder, f"long_{minutes}min.wav")
    frames = write_test_file(path, minutes, rate)
    rows = []
    try:
        for kind, model in models.items():
            out_dir = os.path.join(folder, f"out_{label}_{kind}")
            report = restore(path, model, out_dir, pythonpath)
            written = os.path.join(out_dir, os.path.basename(path))
            info = sf.info(written)
            if (info.samplerate, info.channels, info.frames) != (rate, CHANNELS, frames):
                raise RuntimeError(
                    f"{written}: {info.samplerate} Hz, {info.channels} ch, {info.frames} frames"
                )
            os.remove(written)
            rows.append(
                {
                    "code": label,
                    "model": f"{name} {kind}",
                    "minutes": minutes,
                    "rate": rate,
                    "file_mb": os.path.getsize(path) / 2**20,
                    "peak_rss_mb": report["peak_rss_mb"],
                    "wall_s": report["wall_s"],
                    "rtf": report["wall_s"] / (minutes * 60),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        os.remove(path)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 60])
    parser.add_argument(
        "--rate", type=int, default=48000, help="the files' sample rate (default 48000)"
    )
    parser.add_argument("--model", choices=["small", "tiny", "identity"], default="small")
    parser.add_argument("--kinds", nargs="+", choices=["keras", "savedmodel"], default=["keras"])
    parser.add_argument(
        "--before", default=None, help="a checkout of the code before, run for comparison"
    )
    parser.add_argument("--before-minutes", type=float, nargs="+", default=[1])
    parser.add_argument(
        "--output", default=None, help="default: results/restore_memory_<model>.json"
    )
    args = parser.parse_args()
    args.output = args.output or os.path.join(HERE, "results", f"restore_memory_{args.model}.json")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        models = build_models(folder, args.kinds, args.model)
        if args.before:
            for minutes in args.before_minutes:
                rows += measure(
                    folder, minutes, args.rate, models, args.before, "before", args.model
                )
        for minutes in args.minutes:
            rows += measure(folder, minutes, args.rate, models, ROOT, "blocks", args.model)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(rows, f, indent=2)
    print("| code | model | stereo file | WAV (MB) | peak RSS (MB) | wall (s) | RTF |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['code']} | {row['model']} | {row['minutes']:g} min, {row['rate'] / 1000:g} kHz | {row['file_mb']:.0f} | "
            f"{row['peak_rss_mb']:.0f} | {row['wall_s']:.0f} | {row['rtf']:.3f} |"
        )


if __name__ == "__main__":
    main()
