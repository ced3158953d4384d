"""Do no harm on real recorded speech: trained models on the CMU ARCTIC utterance.

The utterance pysptk ships (``arctic_a0007``, a real recording the project never trains
on) is damaged at fixed seeds that no training run draws, at a severe and a mild
strength of the damage types the ``denoise`` chain trains on, with damage types outside
that chain (band limit, reverb, codec) and undamaged (``clean``). Each model restores
every condition; PESQ-WB (the ``pesq`` package, P.862.2) and SI-SDR of its input and
of its output are printed side by side and written to a JSON file.

    python benchmarks/real_speech.py MODEL.keras [MODEL.keras ...] --names crn conformer \
        --out benchmarks/results/real_speech.json
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

SEED = (90417, 311)  # no training run or evaluation draws this seed

# (name, in the denoise chain?, damage of a [1, samples] float32 array at 16 kHz)
CONDITIONS = [
    ("clean", True, lambda a, w, s: w),
    ("pink noise 5 dB", True, lambda a, w, s: a.add_noise(w, s, 5.0, color=1.0)),
    ("pink noise 20 dB (mild)", True, lambda a, w, s: a.add_noise(w, s, 20.0, color=1.0)),
    ("white noise 10 dB", True, lambda a, w, s: a.add_noise(w, s, 10.0, color=0.0)),
    ("hard clip 0.3", True, lambda a, w, s: a.hard_clip(w, 0.3)),
    ("hard clip 0.7 (mild)", True, lambda a, w, s: a.hard_clip(w, 0.7)),
    ("soft clip 12 dB", True, lambda a, w, s: a.soft_clip(w, 12.0)),
    ("6-bit requantisation", True, lambda a, w, s: a.bit_depth(w, 6.0)),
    ("band limit 4 kHz", False, lambda a, w, s: a.lowpass(w, 4000.0, 16000)),
    ("reverb RT60 0.4 s", False, lambda a, w, s: a.reverb(w, s, 0.4, 16000)),
    ("codec 0.5", False, lambda a, w, s: a.codec(w, 0.5, 16000)),
]


def si_sdr(reference, estimate):
    """Scale-invariant SDR in dB (Le Roux et al., 2019)."""
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    target = np.dot(estimate, reference) / np.dot(reference, reference) * reference
    return float(10.0 * np.log10(np.sum(target**2) / max(np.sum((estimate - target) ** 2), 1e-20)))


def conditions(clean):
    """``(name, in_chain, damaged)`` of every condition, damaged as float32 numpy."""
    import keras

    from spectral_restore.data import artifacts

    seed = keras.ops.convert_to_tensor(np.array(SEED, dtype="int32"))
    wave = keras.ops.convert_to_tensor(clean[None].astype("float32"))
    for name, in_chain, damage in CONDITIONS:
        damaged = keras.ops.convert_to_numpy(damage(artifacts, wave, seed))[0]
        yield name, in_chain, np.clip(damaged, -1.0, 1.0).astype("float32")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models", nargs="+", help=".keras models (or exported SavedModels) to compare"
    )
    parser.add_argument("--names", nargs="+", help="one name per model (default: the file names)")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    names = args.names or [os.path.basename(os.path.dirname(path)) or path for path in args.models]
    if len(names) != len(args.models):
        parser.error(
            f"--names needs one name per model: {len(args.models)} models, {len(names)} names"
        )

    import soundfile as sf
    from pesq import pesq

    from spectral_restore.inference import AudioRestorer

    from conftest import arctic_example_path

    clean, rate = sf.read(arctic_example_path(), dtype="float32")
    if rate != 16000:
        raise ValueError(f"the ARCTIC utterance is expected at 16 kHz, found {rate} Hz")
    clean = clean / np.max(np.abs(clean)) * 0.5
    restorers = [AudioRestorer(path) for path in args.models]
    rows = []
    for name, in_chain, damaged in conditions(clean):
        row = {
            "condition": name,
            "in_training_chain": in_chain,
            "input": {
                "pesq_wb": float(pesq(16000, clean, damaged, "wb")),
                "si_sdr": si_sdr(clean, damaged),
            },
        }
        for model_name, restorer in zip(names, restorers):
            restored = np.asarray(restorer(damaged[None]))[0]
            row[model_name] = {
                "pesq_wb": float(pesq(16000, clean, restored, "wb")),
                "si_sdr": si_sdr(clean, restored),
            }
        rows.append(row)
        cells = "  ".join(f"{key} {row[key]['pesq_wb']:.2f}" for key in ["input", *names])
        print(f"{name:26s} {cells}", flush=True)
    for model_name in names:
        gains = [row[model_name]["pesq_wb"] - row["input"]["pesq_wb"] for row in rows]
        worse = [row["condition"] for row, gain in zip(rows, gains) if gain < 0]
        print(
            f"{model_name}: mean PESQ-WB change {np.mean(gains):+.2f}; worse than its input on: {', '.join(worse) or 'none'}"
        )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump(
                {
                    "utterance": "arctic_a0007 (pysptk), peak 0.5, 16 kHz",
                    "seed": list(SEED),
                    "models": dict(zip(names, args.models)),
                    "rows": rows,
                },
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
