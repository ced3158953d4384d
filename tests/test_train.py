"""The training entry point: configs and resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from training.config import build_loss, load_config

TINY = [
    "model.preset=small", "data.segment_seconds=1.0", "data.batch_size=2", "data.eval_repeats=1",
    "training.epochs=3", "training.steps_per_epoch=6", "training.validation_steps=1",
    "training.audio_examples=1", "training.max_minutes=null",
]


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory, speech_16k):
    folder = tmp_path_factory.mktemp("speech")
    for i in range(6):
        sf.write(folder / f"utt{i}.wav", np.roll(speech_16k, 3000 * i), 16000)
    return folder


def test_configs_merge_and_reject_unknown_keys(tmp_path):
    small = load_config("small.yaml")
    base = load_config()
    assert small["model"]["preset"] == "small" and base["model"]["preset"] == "base"
    assert small["data"]["batch_size"] == base["data"]["batch_size"]
    assert load_config("small.yaml", ["training.epochs=3"])["training"]["epochs"] == 3
    with pytest.raises(ValueError, match="Unknown config key 'training.epoch'"):
        load_config("small.yaml", ["training.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: base.yaml\ntraining:\n  learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(str(bad))
    loss = build_loss(load_config("mpsenet_recipe.yaml")["loss"])
    assert loss.weights == {"recon/mse": 0.9, "phase/complex": 0.1, "phase/anti_wrap": 0.3, "time/l1": 0.2}
    with pytest.raises(ValueError, match="Unknown loss term"):
        build_loss({"recon/nothing": 1.0})


def run_cli(args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "spectral_restore.cli", "train", "--config", "small.yaml", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kwargs,
    )


@pytest.mark.large
def test_training_killed_mid_run_resumes_where_it_stopped(tmp_path, speech_folder):
    out = tmp_path / "run"
    args = TINY + [f"data.source={speech_folder}", f"training.output_dir={out}", "training.backup_every_steps=2"]
    first = run_cli(args)
    deadline = time.monotonic() + 600
    backup = out / "backup" / "training_metadata.json"
    while not backup.exists():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (out / "train_summary.json").exists()
    second = run_cli(args)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert 2 <= summary["resumed_from_step"] < 18
    assert summary["steps"] == 18
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(np.isfinite(float(r["loss"])) for r in rows)
    assert os.path.exists(out / "model.keras")


def test_cached_training_stream_resumes_on_the_same_batches(speech_folder):
    """With data.cache_batches, the batches a resumed run sees (skipping the k it had
    consumed) are exactly the batches k, k+1, ... of an uninterrupted run, across the
    reshuffled passes over the cache."""
    from training.train import make_datasets

    config = load_config("small.yaml", TINY + [f"data.source={speech_folder}", "data.cache_batches=4"])
    full, _, _ = make_datasets(config)
    uninterrupted = [clean.numpy() for _, clean in full.take(11)]
    resumed, _, _ = make_datasets(config, skip_batches=5)
    for expected, (_, clean) in zip(uninterrupted[5:], resumed.take(6)):
        np.testing.assert_array_equal(clean.numpy(), expected)
    first_pass = {batch.tobytes() for batch in uninterrupted[:4]}
    assert {batch.tobytes() for batch in uninterrupted[4:8]} == first_pass  # the same 4 batches, cycled
    assert [b.tobytes() for b in uninterrupted[4:8]] != [b.tobytes() for b in uninterrupted[:4]]  # reshuffled
    with pytest.raises(ValueError, match="cache_batches"):
        make_datasets(load_config("small.yaml", TINY + [f"data.source={speech_folder}", "data.cache_batches=-1"]))
