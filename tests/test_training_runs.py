"""The trainer end to end, judged by what it leaves behind: weights and optimizer
state (compared with an uninterrupted run after a kill), history, files, TensorBoard
events and the evaluation commands."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from spectral_restore import cli
from training.config import load_config

from training_probe import probe_fit

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_probe.py")
EPOCHS, STEPS_PER_EPOCH = 2, 3


def tiny(speech_folder):
    """Overrides for a run of a few seconds per step on 2 CPU cores."""
    return [
        "model.preset=small", "data.segment_seconds=1.0", "data.batch_size=2", "data.eval_repeats=1",
        f"training.epochs={EPOCHS}", f"training.steps_per_epoch={STEPS_PER_EPOCH}", "training.validation_steps=1",
        "training.audio_examples=0", "training.pesq_batches=0", "training.max_minutes=null",
        "training.backup_every_steps=2", "data.cache_batches=0", f"data.source={speech_folder}",
    ]


def expected_terms(config):
    """The names fit must log: the loss terms, the total, and a GAN's adversarial and metric terms."""
    training = config["training"]
    gan = training["gan"] or training["metric_discriminator"]
    total = "g_loss" if gan else "loss"
    validated = {total, *config["loss"]}
    trained = set(validated)
    if training["gan"]:
        trained |= {"adv/disc", "adv/gen", "adv/feature_matching"}
    if training["metric_discriminator"]:
        trained |= {"metric/disc", "metric/gen", "metric/pesq"}
    return trained | {f"val_{name}" for name in validated}


def check_run(out, config, record):
    """What every finished run must leave: its steps, finite history of every term,
    every trainable weight moved, every optimizer stepped, and the saved generator."""
    import keras

    total = config["training"]["epochs"] * config["training"]["steps_per_epoch"]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == total and not summary["stopped_by_time_limit"]
    assert json.loads((out / "config.json").read_text()) == config
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["epochs_run"] >= 1
    assert set(rows[0]) - {"epoch"} == expected_terms(config)
    for row in rows:
        for name, value in row.items():
            assert np.isfinite(float(value)), (name, row)
    before, after = record["before"], record["after"]
    weights = [key for key in after if key.startswith("weights/")]
    assert weights == [key for key in before if key.startswith("weights/")]
    frozen = {key.split("/", 2)[2] for key in weights if np.array_equal(before[key], after[key])}
    # The metric discriminator's last PReLU feeds a global max pool: its slope has a
    # gradient only where a channel's maximum is negative, which a few steps rarely see.
    assert frozen <= {"restoration_gan/metric_discriminator/prelu_3/alpha"}, f"weights that never moved: {frozen}"
    counters = [key for key in after if key.endswith("/iteration") and "optimizer" in key]
    training = config["training"]
    gan = training["gan"] or training["metric_discriminator"]
    optimizers = {"optimizer"}
    if gan:
        optimizers = {name for name, used in (("g_optimizer", True), ("d_optimizer", training["gan"]),
                                              ("m_optimizer", training["metric_discriminator"])) if used}
    stepped = {key.split("/")[0] for key in counters if int(after[key]) == total}
    assert optimizers <= stepped, counters
    if gan:
        (step_counter,) = [key for key in weights if key.endswith("gan_step")]
        assert int(after[step_counter]) == total
    saved = keras.saving.load_model(out / "model.keras", compile=False)
    for variable in saved.weights:
        (match,) = [key for key in weights if key.endswith("/" + variable.path)]
        np.testing.assert_array_equal(np.asarray(variable), after[match], err_msg=variable.path)
    return summary


def kill_once_exists(process, path, outcome):
    """SIGKILLs ``process`` as soon as ``path`` exists; records whether it got there."""
    while not path.exists():
        if process.poll() is not None:
            outcome["error"] = process.stdout.read()[-3000:]
            return
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    outcome["killed"] = True


RESUMED = {
    "plain": ("small.yaml", ["data.cache_batches=0"]),
    # Killed while writing its second backup: the half-written file is left behind.
    "plain_cached_killed_mid_backup": ("small.yaml", ["data.cache_batches=4"]),
    "gan_and_metric_discriminator": ("mpsenet_recipe.yaml", ["training.gan=true", "training.warmup_steps=3"]),
}


@pytest.mark.large
@pytest.mark.parametrize("case", list(RESUMED))
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_state(case, tmp_path, speech_folder):
    """A run SIGKILLed after its first backup (or while writing its second, which then
    is unreadable) and started again ends with every weight
    and every optimizer variable (moments, iteration counters; a GAN's three optimizers
    and its warm-up step counter) bit for bit those of the same run left alone: the
    backup restores the whole state and the data stream skips exactly the consumed
    batches, uncached and cached. Bitwise, because both runs do the same float
    operations in the same order on the same CPU (reloading a float32 checkpoint is exact).

    The uninterrupted run is also the few-step check of ``small.yaml`` and of
    ``mpsenet_recipe.yaml`` (with the spectrogram discriminator added)."""
    config_file, extra = RESUMED[case]
    args = ["--config", config_file, *tiny(speech_folder), *extra]
    interrupted = tmp_path / "interrupted"
    killed = subprocess.Popen(
        [sys.executable, "-m", "spectral_restore.cli", "train", *args, f"training.output_dir={interrupted}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    outcome = {}
    mid_backup = case.endswith("mid_backup")
    # Keras copies the previous backup to *.bkp before it writes the next one.
    sign = "training_metadata.json.bkp" if mid_backup else "training_metadata.json"
    watcher = threading.Thread(target=kill_once_exists, args=(killed, interrupted / "backup" / sign, outcome))
    watcher.start()
    record = {}
    try:
        with probe_fit(record):
            assert cli.main(["train", *args, f"training.output_dir={tmp_path / 'whole'}"]) == 0
    finally:
        watcher.join()
    assert outcome.get("killed"), outcome.get("error")
    assert not (interrupted / "train_summary.json").exists()
    config = load_config(config_file, args[2:] + [f"training.output_dir={tmp_path / 'whole'}"])
    check_run(tmp_path / "whole", config, record)
    if mid_backup:
        latest = interrupted / "backup" / "latest.weights.h5"
        latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])

    resumed = subprocess.run(
        [sys.executable, PROBE, str(tmp_path / "resumed.npz"), *args, f"training.output_dir={interrupted}"],
        capture_output=True, text=True, timeout=900,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    summary = json.loads((interrupted / "train_summary.json").read_text())
    if mid_backup:
        assert summary["resumed_from_step"] == 2  # the backup before the broken one
    else:
        assert 2 <= summary["resumed_from_step"] < EPOCHS * STEPS_PER_EPOCH
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    state = np.load(tmp_path / "resumed.npz")
    assert sorted(state.files) == sorted(f"after/{key}" for key in record["after"])
    for key, value in record["after"].items():
        np.testing.assert_array_equal(state[f"after/{key}"], value, err_msg=key)


def reset_precision():
    """``training.mixed_precision`` sets Keras's global policy; later tests in this process need float32."""
    import keras

    keras.mixed_precision.set_global_policy("float32")


SHIPPED = {
    "gan_small_mixed_precision": ("gan_small.yaml", ["training.mixed_precision=true", "training.warmup_steps=2"]),
    "base": ("base.yaml", ["model.preset=base", "data.segment_seconds=0.5"]),
    "small_jit_compile": ("small.yaml", ["training.jit_compile=true"]),
}


@pytest.mark.large
@pytest.mark.parametrize("case", list(SHIPPED))
def test_shipped_configs_train_a_few_steps(case, tmp_path, speech_folder):
    """``gan_small.yaml`` under mixed precision (loss-scaled optimizers), ``base.yaml``
    with its own preset on half-second crops, and ``small.yaml`` compiled with XLA each
    train 6 steps: every term logged and finite, every weight moved, every optimizer
    stepped, the files written. (``small.yaml`` and ``mpsenet_recipe.yaml`` run in the
    resume test.)"""
    config_file, extra = SHIPPED[case]
    overrides = tiny(speech_folder) + extra + [f"training.output_dir={tmp_path}"]
    record = {}
    try:
        with probe_fit(record):
            assert cli.main(["train", "--config", config_file, *overrides]) == 0
    finally:
        reset_precision()
    config = load_config(config_file, overrides)
    check_run(tmp_path, config, record)
    assert record["jit_compile"] is (case == "small_jit_compile")
    if case == "gan_small_mixed_precision":
        scales = [key for key in record["after"] if key.endswith("dynamic_scale")]
        assert len(scales) == 3, "each optimizer of the GAN scales its loss"
        assert os.path.exists(tmp_path / "logs" / "train")


@pytest.mark.large
def test_time_limit_stops_with_a_backup_the_next_run_resumes(tmp_path, speech_folder):
    """``training.max_minutes`` (here 60 microseconds: one step) stops the run cleanly:
    the summary says so, the model is saved, and the backup stays, so the same command
    run again continues from the step the limit stopped at."""
    overrides = tiny(speech_folder) + [f"training.output_dir={tmp_path}"]
    assert cli.main(["train", "--config", "small.yaml", *overrides, "training.max_minutes=0.000001"]) == 0
    stopped = json.loads((tmp_path / "train_summary.json").read_text())
    assert stopped["stopped_by_time_limit"] is True
    assert 1 <= stopped["steps"] < EPOCHS * STEPS_PER_EPOCH
    assert (tmp_path / "model.keras").exists()
    assert (tmp_path / "backup" / "latest.weights.h5").exists()
    assert cli.main(["train", "--config", "small.yaml", *overrides]) == 0
    finished = json.loads((tmp_path / "train_summary.json").read_text())
    assert finished["resumed_from_step"] == stopped["steps"]
    assert finished["steps"] == EPOCHS * STEPS_PER_EPOCH and finished["stopped_by_time_limit"] is False
    assert not (tmp_path / "backup").exists()
