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

from training.config import build_loss, load_config

TINY = [
    "model.preset=small", "data.segment_seconds=1.0", "data.batch_size=2", "data.eval_repeats=1",
    "training.epochs=3", "training.steps_per_epoch=6", "training.validation_steps=1",
    "training.audio_examples=1", "training.max_minutes=null",
]


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


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.large
def test_two_workers_on_localhost_end_with_identical_weights(tmp_path, speech_folder):
    """MultiWorkerMirroredStrategy through TF_CONFIG: two worker processes train a few
    steps together; the all-reduced updates leave both with the same weights, and the
    weights moved away from their initial values."""
    import keras

    import spectral_restore.models.restorer  # noqa: F401  (registers the model class)

    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    args = TINY + [
        f"data.source={speech_folder}", f"training.output_dir={out}", "training.epochs=2",
        "training.steps_per_epoch=2", "training.audio_examples=0",
    ]
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
        workers.append(run_cli(args, env=env))
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=900)
        outputs.append(output)
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    chief = json.loads((out / "train_summary.json").read_text())
    other = json.loads((out / "worker_1" / "train_summary.json").read_text())
    assert chief["steps"] == other["steps"] == 4
    first = keras.models.load_model(out / "model.keras")
    second = keras.models.load_model(out / "worker_1" / "model.keras")
    fresh = type(first).from_config(first.get_config())
    fresh(np.zeros((1, 16000), np.float32))
    zero_initialised = 0
    for a, b, c in zip(first.weights, second.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        if a.trainable and not np.any(c.numpy()):
            zero_initialised += 1
            assert np.any(a.numpy()), f"{a.path} never moved from zero"
    assert zero_initialised > 0
