"""CSIG, CBAK and COVL of ``spectral_restore.evaluation.composite`` against pysepm.

pysepm (P. Schmid, the Python port of Loizou's ``composite.m`` most speech
enhancement code uses) runs outside this repository, in its own virtual
environment, on the same pairs: real speech (the CMU ARCTIC utterance pysptk ships)
and synthesized speech (espeak-ng and flite voices) under 12 kinds of damage from
``spectral_restore.data.artifacts`` plus an oracle Wiener filter (enhanced-like
output), at 16 kHz and a subset again at 8 kHz (the narrow-band path). Both sides
get the signals with machine epsilon added, as ``composite.m`` does before every
measure (pysepm leaves that to the caller). Results go to
``results/composite_reference.json``: mean absolute difference, largest difference
and Pearson correlation per measure, per-pair values, and the reference's values of
the pairs ``tests/test_composite.py`` rebuilds.

pysepm is not on PyPI (its package ``pysepm`` pins git URLs), nor installable
beside this project's numpy 2: build its environment once with

    python3 -m venv /work/venv-eval
    /work/venv-eval/bin/pip install "numpy<2" scipy pesq numba pystoi gammatone soundfile
    /work/venv-eval/bin/pip install --no-deps ./SRMRpy ./pysepm   # clones of their GitHub repositories

then run, with the project's environment:

    python benchmarks/composite_reference.py --reference-python /work/venv-eval/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MEASURES = ("csig", "cbak", "covl", "pesq", "llr", "wss", "segsnr")
VOICES = (
    ("espeak-ng", "en-us"),
    ("espeak-ng", "en-gb+f3"),
    ("flite", "slt"),
    ("flite", "rms"),
    ("flite", "awb"),
)
SENTENCES = (0, 3, 6, 9, 12)
NARROW_BAND_DAMAGES = ("white_10db", "babble_5db", "reverb_0.6s", "codec_0.5", "oracle_wiener")


def reference_main(pairs_path, out_path):
    """Runs in the reference environment: pysepm on every pair of the .npz file."""
    import pysepm

    data = np.load(pairs_path)
    names = [str(name) for name in data["names"]]
    results = {}
    for index, name in enumerate(names):
        rate = int(data["rates"][index])
        length = int(data["lengths"][index])
        clean = data["clean"][index, :length] + np.finfo(float).eps
        processed = data["processed"][index, :length] + np.finfo(float).eps
        pesq_mos, mos_lqo = pysepm.pesq(clean, processed, rate)
        csig, cbak, covl = pysepm.composite(clean, processed, rate)
        results[name] = {
            "csig": float(csig),
            "cbak": float(cbak),
            "covl": float(covl),
            "pesq": float(mos_lqo if rate == 16000 else pesq_mos),
            "llr": float(pysepm.llr(clean, processed, rate, used_for_composite=True)),
            "wss": float(pysepm.wss(clean, processed, rate)),
            "segsnr": float(pysepm.SNRseg(clean, processed, rate)),
        }
    with open(out_path, "w") as handle:
        json.dump(results, handle)


def clean_utterances():
    """The ARCTIC utterance and five synthesized sentences, cropped to the shortest."""
    import soundfile as sf

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from spectral_restore.data import speech

    from conftest import arctic_example_path

    arctic, rate = sf.read(arctic_example_path(), dtype="float32")
    names, waves = ["arctic_a0007"], [arctic]
    for (engine, voice), sentence in zip(VOICES, SENTENCES):
        waves.append(speech.synthesize(speech.HARVARD_SENTENCES[sentence], voice, engine, rate))
        names.append(f"{engine}_{voice}_h{sentence}")
    length = min(len(wave) for wave in waves)
    return names, np.stack([wave[:length] for wave in waves]).astype(np.float32), rate


def oracle_wiener(clean, noisy, rate):
    """A Wiener filter that knows the noise: enhanced-like output with musical residue."""
    import scipy.signal

    _, _, clean_spec = scipy.signal.stft(clean, rate, nperseg=512)
    _, _, noisy_spec = scipy.signal.stft(noisy, rate, nperseg=512)
    noise_power = np.mean(np.abs(noisy_spec - clean_spec) ** 2, axis=-1, keepdims=True)
    gain = np.maximum(1 - noise_power / np.maximum(np.abs(noisy_spec) ** 2, 1e-12), 0.05)
    _, enhanced = scipy.signal.istft(gain * noisy_spec, rate, nperseg=512)
    return enhanced[..., : clean.shape[-1]]


def damaged_sets(clean, rate):
    """Damage kind -> damaged batch, each seeded."""
    from keras import ops

    from spectral_restore.data import artifacts

    def seed(n):
        return np.array([n, 7], dtype="int32")

    def run(fn, *args):
        return np.asarray(ops.convert_to_numpy(fn(clean, *args)), dtype=np.float64)

    noisy_0db = run(artifacts.add_noise, seed(1), 0.0, 0.0)
    return {
        "white_0db": noisy_0db,
        "white_10db": run(artifacts.add_noise, seed(2), 10.0, 0.0),
        "pink_5db": run(artifacts.add_noise, seed(3), 5.0, 1.0),
        "babble_5db": run(artifacts.add_babble, seed(4), 5.0),
        "reverb_0.6s": run(artifacts.reverb, seed(5), 0.6, rate),
        "lowpass_4khz": run(artifacts.lowpass, 4000.0, rate),
        "telephone": run(artifacts.telephone, rate),
        "codec_0.5": run(artifacts.codec, 0.5, rate),
        "hard_clip_0.2": run(artifacts.hard_clip, 0.2),
        "soft_clip_18db": run(artifacts.soft_clip, 18.0),
        "bit_depth_6": run(artifacts.bit_depth, 6),
        "dropouts_4": run(artifacts.dropouts, seed(6), 4.0, rate),
        "oracle_wiener": oracle_wiener(clean.astype(np.float64), noisy_0db, rate),
    }


def test_pairs():
    """The pairs tests/test_composite.py rebuilds (same recipes, spelled out there)."""
    import scipy.signal
    import soundfile as sf

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from conftest import arctic_example_path

    speech, rate = sf.read(arctic_example_path(), dtype="float32")
    speech = speech.astype(np.float64)
    noise = np.random.default_rng(0).standard_normal(len(speech))
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (5 / 10))
    lowpassed = scipy.signal.sosfiltfilt(
        scipy.signal.butter(8, 3000, fs=rate, output="sos"), speech
    )
    narrow = scipy.signal.resample_poly(speech, 1, 2)
    return {
        "test_arctic_white_5db": (speech, speech + noise, rate),
        "test_arctic_white_25db": (speech, speech + 0.1 * noise, rate),
        "test_arctic_lowpass_3khz": (speech, lowpassed, rate),
        "test_arctic_8khz_white_5db": (
            narrow,
            scipy.signal.resample_poly(speech + noise, 1, 2),
            8000,
        ),
    }


def build_pairs():
    from spectral_restore.audio_io import resample_numpy

    utterances, clean, rate = clean_utterances()
    pairs = {}
    for damage, damaged in damaged_sets(clean, rate).items():
        for name, c, d in zip(utterances, clean, damaged):
            pairs[f"16k/{damage}/{name}"] = (c.astype(np.float64), d, rate)
            if damage in NARROW_BAND_DAMAGES:
                pairs[f"8k/{damage}/{name}"] = (
                    resample_numpy(c, rate, 8000),
                    resample_numpy(d, rate, 8000),
                    8000,
                )
    pairs.update(test_pairs())
    return pairs


def run_reference(pairs, reference_python):
    names = list(pairs)
    longest = max(len(c) for c, _, _ in pairs.values())

    def padded(index):
        return np.stack(
            [np.pad(pairs[n][index], (0, longest - len(pairs[n][index]))) for n in names]
        )

    with tempfile.TemporaryDirectory() as tmp:
        pairs_path, out_path = os.path.join(tmp, "pairs.npz"), os.path.join(tmp, "reference.json")
        np.savez(
            pairs_path,
            names=np.array(names),
            clean=padded(0),
            processed=padded(1),
            rates=np.array([pairs[n][2] for n in names]),
            lengths=np.array([len(pairs[n][0]) for n in names]),
        )
        start = time.perf_counter()
        subprocess.run(
            [
                reference_python,
                os.path.abspath(__file__),
                "--reference-worker",
                pairs_path,
                out_path,
            ],
            check=True,
        )
        seconds = time.perf_counter() - start
        with open(out_path) as handle:
            return json.load(handle), seconds


def _compare(a, b):
    difference = np.abs(a - b)
    return {
        "pairs": int(a.size),
        "mean_abs_difference": float(difference.mean()),
        "max_abs_difference": float(difference.max()),
        "pearson": float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None,
        "reference_range": [float(b.min()), float(b.max())],
    }


def agreement(ours, theirs, names):
    """Per measure; for CSIG/CBAK/COVL also over the pairs whose reference value lies
    strictly inside the [1, 5] limits (clamped pairs agree trivially)."""
    out = {}
    for measure in MEASURES:
        a = np.array([ours[n][measure] for n in names])
        b = np.array([theirs[n][measure] for n in names])
        out[measure] = _compare(a, b)
        if measure in ("csig", "cbak", "covl"):
            inside = (b > 1) & (b < 5)
            out[measure]["within_limits"] = _compare(a[inside], b[inside])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference-python",
        default="/work/venv-eval/bin/python",
        help="python of the environment where pysepm is installed",
    )
    parser.add_argument(
        "--reference-worker", nargs=2, metavar=("PAIRS", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "composite_reference.json"))
    args = parser.parse_args()
    if args.reference_worker:
        reference_main(*args.reference_worker)
        return

    from spectral_restore.evaluation.composite import composite

    pairs = build_pairs()
    start = time.perf_counter()
    ours = {
        name: {k: v for k, v in composite(c, d, rate).items() if k in MEASURES}
        for name, (c, d, rate) in pairs.items()
    }
    our_seconds = time.perf_counter() - start
    theirs, their_seconds = run_reference(pairs, args.reference_python)
    compared = [n for n in pairs if not n.startswith("test_")]
    kinds = sorted({n.split("/")[1] for n in compared})
    report = {
        "reference": "pysepm (github.com/schmiph2/pysepm, commit 7ef88af), numpy 1.26, pesq 0.0.4",
        "pairs": len(compared),
        "pairs_16k": sum(n.startswith("16k/") for n in compared),
        "pairs_8k": sum(n.startswith("8k/") for n in compared),
        "damage_kinds": kinds,
        "utterances": sorted({n.split("/")[2] for n in compared}),
        "agreement": agreement(ours, theirs, compared),
        "agreement_16k": agreement(ours, theirs, [n for n in compared if n.startswith("16k/")]),
        "agreement_8k": agreement(ours, theirs, [n for n in compared if n.startswith("8k/")]),
        "seconds": {"ours": our_seconds, "pysepm": their_seconds},
        "test_pairs": {n: theirs[n] for n in pairs if n.startswith("test_")},
        "per_pair": {n: {"ours": ours[n], "pysepm": theirs[n]} for n in pairs},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    for measure, row in report["agreement"].items():
        print(
            f"{measure:7s} MAE {row['mean_abs_difference']:.2e}  max {row['max_abs_difference']:.2e}  "
            f"Pearson {row['pearson']}",
            end="",
        )
        if "within_limits" in row:
            inside = row["within_limits"]
            print(
                f"  | {inside['pairs']} pairs inside (1, 5): MAE {inside['mean_abs_difference']:.2e} "
                f"Pearson {inside['pearson']}",
                end="",
            )
        print()
    print(
        f"{report['pairs']} pairs ({report['pairs_16k']} at 16 kHz, {report['pairs_8k']} at 8 kHz), "
        f"{len(kinds)} damage kinds; ours {our_seconds:.1f} s, pysepm {their_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
