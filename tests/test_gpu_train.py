"""benchmarks/gpu_train.py, the prepared GPU script, run tiny on the CPU under JAX as it
runs on a GPU machine: the trainer, the held-out scoring and the JSON it writes. Its
PESQ-WB comes from the differentiable P.862 model, so the damaged input's scores are
checked against the ``pesq`` package here."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_train.py")
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "Rice is often served in round bowls.",
)


@pytest.fixture(scope="module")
def speech_npz(tmp_path_factory):
    from spectral_restore.data.source import save_npz
    from spectral_restore.data.speech import engine_available, synthesize

    if not engine_available("espeak-ng"):
        pytest.skip("espeak-ng synthesizes the speech; training/setup_env.sh installs it")
    train = [synthesize(text, voice=voice) for text in SENTENCES for voice in ("en-us", "en-gb")]
    test = [synthesize(text, voice="en-us+f3") for text in SENTENCES]
    path = tmp_path_factory.mktemp("speech") / "speech.npz"
    save_npz(path, 16000, train=train, test=test)
    return path


@pytest.mark.large
def test_tiny_run_trains_scores_and_writes_its_json(speech_npz, tmp_path):
    pytest.importorskip("jax", reason="the script runs under JAX; CI installs the jax extra")
    pesq = pytest.importorskip(
        "pesq", reason="the reference the surrogate's scores are checked against"
    )
    out = tmp_path / "out"
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    )
    command = [
        sys.executable,
        SCRIPT,
        "run",
        "--npz",
        str(speech_npz),
        "--out",
        str(out),
        "--chain",
        "denoise",
        "--eval-seconds",
        "3",
        "--save-audio",
        "--run",
        "crn_small",
        os.path.join(ROOT, "training", "configs", "small.yaml"),
        "data.batch_size=2",
        "data.segment_seconds=1.0",
        "data.cache_batches=0",
        "training.steps_per_epoch=4",
        "training.validation_steps=1",
        "minutes=0.05",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "gpu_train.json").read_text())
    run = report["runs"]["crn_small"]
    assert "error" not in run, run.get("error")
    assert run["steps"] >= 1 and run["batch_size"] == 2
    assert run["parameters"] > 0
    from spectral_restore.data.artifacts import CHAINS
    from spectral_restore.p862.mapping import best_mos

    assert set(run["pesq_wb"]) == {"clean"} | {spec.name for spec in CHAINS["denoise"]}
    # Clean input against itself scores the model's best MOS exactly.
    assert run["pesq_wb"]["clean"]["before"] == pytest.approx(best_mos("wb"), abs=1e-3)
    for row in run["pesq_wb"].values():
        assert np.isfinite(row["after"]) and 1.0 <= row["after"] <= 4.7

    # The damaged input's scores against the pesq package, on the very clips the script scored.
    with np.load(out / "held_out.npz") as versions:
        assert set(versions.files) == set(run["pesq_wb"])
        for kind in ("noise", "hard_clip", "bit_depth"):
            reference = np.mean(
                [pesq.pesq(16000, c, d, "wb") for c, d in zip(versions["clean"], versions[kind])]
            )
            assert run["pesq_wb"][kind]["before"] == pytest.approx(reference, abs=0.03)
