"""Real-time factor and peak memory of the exported SavedModel on this CPU.

For 1 and 2 threads, a fresh Python loads the SavedModel (without importing
spectral_restore) and restores 60 s of 16 kHz audio in one call: RTF = processing
time / audio duration (median of the repeats after a warm-up call). Peak memory is
the process's maximum resident set size, after loading and after restoring; a
second export that restores the whole input at once (no chunking) and a 300 s input
show what chunking does to memory. Target for the `small` preset: RTF <= 0.1 on 2 threads.

Run: python benchmarks/export_rtf.py [--model outputs/main/train/model.keras] [--architecture crn] [--repeats 5]
[--out FILE]. Writes benchmarks/results/export_rtf.json (or FILE) and prints a Markdown table; a
whole-input run that runs out of memory is recorded as failed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 16000

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    import numpy as np
    import tensorflow as tf
    export_dir, threads, seconds, repeats = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = np.arange(int(seconds * 16000)) / 16000
    wave = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + np.random.default_rng(0).normal(0, 0.02, t.size)).astype(np.float32)[None]
    wave = tf.constant(wave)
    serve(waveform=wave)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = serve(waveform=wave)["restored"].numpy()
        times.append(time.perf_counter() - start)
    assert out.shape == wave.shape
    print(json.dumps({"seconds": seconds, "threads": threads, "median_s": float(np.median(times)),
                      "rtf": float(np.median(times)) / seconds, "loaded_rss_mb": loaded_mb,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "spectral_restore_imported": any(m.startswith("spectral_restore") for m in sys.modules)}))
""")


def measure(export_dir, threads, seconds, repeats):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS=str(threads))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, export_dir, str(threads), str(seconds), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=None,
        help="a .keras model (default: an untrained small preset, same cost)",
    )
    parser.add_argument(
        "--architecture", default="crn", help="of the untrained small preset without --model"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out",
        default=os.path.join(HERE, "results", "export_rtf.json"),
        help="JSON file for the results",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from spectral_restore.export import export_saved_model
    from spectral_restore.models import build_model

    model = args.model or build_model(args.architecture, "small")
    results = {
        "model": args.model or f"{args.architecture} small preset (untrained weights)",
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        chunked = os.path.join(scratch, "chunked")
        whole = os.path.join(scratch, "whole")
        metadata = export_saved_model(model, chunked)
        export_saved_model(model, whole, chunk_seconds=600.0, overlap_seconds=0.5)
        results["parameters"] = metadata["parameters"]
        for label, export_dir, threads, seconds in [
            ("chunked 10 s", chunked, 1, 60.0),
            ("chunked 10 s", chunked, 2, 60.0),
            ("whole input", whole, 2, 60.0),
            ("chunked 10 s", chunked, 2, 300.0),
            ("whole input", whole, 2, 300.0),
        ]:
            try:
                run = measure(export_dir, threads, seconds, args.repeats if seconds <= 60 else 1)
            except RuntimeError as error:
                # Whole-input restoration is the comparison, not the product: a model whose
                # attention spans every frame runs out of memory there, which is the point.
                if label != "whole input":
                    raise
                run = {
                    "seconds": seconds,
                    "threads": threads,
                    "median_s": float("nan"),
                    "rtf": float("nan"),
                    "loaded_rss_mb": float("nan"),
                    "peak_rss_mb": float("nan"),
                    "failed": str(error).strip().splitlines()[-1][:300],
                }
            run["export"] = label
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\n{results['model']}, {results['parameters']} parameters\n")
    print("| export | audio (s) | threads | time (s) | RTF | RSS after load (MB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for run in results["runs"]:
        if "failed" in run:
            print(
                f"| {run['export']} | {run['seconds']:.0f} | {run['threads']} | failed: out of memory | | | |"
            )
            continue
        print(
            f"| {run['export']} | {run['seconds']:.0f} | {run['threads']} | {run['median_s']:.2f} | "
            f"{run['rtf']:.3f} | {run['loaded_rss_mb']:.0f} | {run['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
