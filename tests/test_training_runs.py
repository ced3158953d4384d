"""The trainer end to end, judged by what it leaves behind: weights and optimizer
state (compared with an uninterrupted run after a kill), history, files, TensorBoard
events and the evaluation commands."""

import csv
import json
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from training import cli
from training.config import load_config

from training_probe import PROBE, probe_fit

EPOCHS, STEPS_PER_EPOCH = 2, 3


def tiny(speech_folder):
    """Overrides for a run of a few seconds per step on 2 CPU cores."""
    return [
        "model.preset=small",
        "data.segment_seconds=1.0",
        "data.batch_size=2",
        "data.eval_repeats=1",
        f"training.epochs={EPOCHS}",
        f"training.steps_per_epoch={STEPS_PER_EPOCH}",
        "training.validation_steps=1",
        "training.audio_examples=0",
        "training.pesq_batches=0",
        "training.max_minutes=null",
        "training.backup_every_steps=2",
        "data.cache_batches=0",
        f"data.source={speech_folder}",
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
    frozen = {key for key in weights if np.array_equal(before[key], after[key])}
    # The metric discriminator's last PReLU feeds a global max pool: its slope has a
    # gradient only where a channel's maximum is negative, which a few steps rarely see.
    assert (
        all(key.endswith("/metric_discriminator/prelu/alpha") for key in frozen)
        and len(frozen) <= 1
    ), f"weights that never moved: {frozen}"
    counters = [key for key in after if key.endswith("/iteration") and "optimizer" in key]
    training = config["training"]
    gan = training["gan"] or training["metric_discriminator"]
    optimizers = {"optimizer"}
    if gan:
        optimizers = {
            name
            for name, used in (
                ("g_optimizer", True),
                ("d_optimizer", training["gan"]),
                ("m_optimizer", training["metric_discriminator"]),
            )
            if used
        }
    stepped = {key.split("/")[0] for key in counters if int(after[key]) == total}
    assert optimizers <= stepped, counters
    if gan:
        (step_counter,) = [key for key in weights if key.endswith("gan_step")]
        assert int(after[step_counter]) == total
    saved = keras.saving.load_model(out / "model.keras", compile=False)
    for variable in saved.weights:
        assert any(np.array_equal(np.asarray(variable), after[key]) for key in weights), (
            f"{variable.path} not saved"
        )
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


# Two runs of the GAN in two processes differ at the rounding level (up to 1e-6 after 2
# steps; TF_DETERMINISTIC_OPS does not help, the plain model's runs are bitwise equal),
# and Adam's first steps, nearly sign steps, turn rounding noise on near-zero gradient
# components into moves of up to a learning rate (2e-3): after 6 steps two uninterrupted
# runs differ by up to 1.3e-3. The GAN is compared within these, the plain model exactly.
# At the restore point (step 2 to 5) the restored weights have differed by up to 4.2e-5
# (CI, 2026-11-28). GAN_RESTORED_ATOL allows 1e-4; the test checks that a backup one step
# off would still fail it: most weights move by more than that in one step.
GAN_RESTORED_ATOL, GAN_END_ATOL = 1e-4, 5e-3
# The metric discriminator's convolution biases: instance normalisation follows each, so
# their gradient is zero up to rounding, which Adam scales up to full-size steps.
NOISE_DRIVEN = re.compile(r"/metric_discriminator/conv/bias$")
RESUMED = {
    "plain": ("small.yaml", ["data.cache_batches=0"]),
    # Killed while writing its second backup: the half-written file is left behind.
    "plain_cached_killed_mid_backup": ("small.yaml", ["data.cache_batches=4"]),
    # metric_weight=0 keeps the generator independent of the metric discriminator,
    # whose dropout masks a resumed run draws anew (see the test).
    "gan_and_metric_discriminator": (
        "mpsenet_recipe.yaml",
        ["training.gan=true", "training.warmup_steps=3", "training.metric_weight=0"],
    ),
}


@pytest.mark.large
@pytest.mark.parametrize("case", list(RESUMED))
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_state(case, tmp_path, speech_folder):
    """A run SIGKILLed after its first backup (or while writing its second, which then
    is unreadable) and started again restarts from every weight and every optimizer
    variable (moments, iteration counters; a GAN's three optimizers and its warm-up
    step counter) that the same run left alone had at that step, and ends with them
    too: the data stream skips exactly the consumed batches, uncached and cached.
    Bit for bit for the plain model, because both runs do the same float operations in
    the same order on the same CPU, and a float32 checkpoint reloads exactly; the GAN
    within the spread of two uninterrupted runs (GAN_RESTORED_ATOL, GAN_END_ATOL) and
    its step counters exactly, except the metric discriminator at the end: Keras does
    not save the state of its dropout's random generator, so a resumed run draws other
    masks from then on.

    The uninterrupted run is also the few-step check of ``small.yaml`` and of
    ``mpsenet_recipe.yaml`` (with the spectrogram discriminator added)."""
    config_file, extra = RESUMED[case]
    args = ["--config", config_file, *tiny(speech_folder), *extra]
    interrupted = tmp_path / "interrupted"
    killed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.cli",
            "train",
            *args,
            f"training.output_dir={interrupted}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outcome = {}
    mid_backup = case.endswith("mid_backup")
    # Keras copies the previous backup to *.bkp before it writes the next one.
    sign = "training_metadata.json.bkp" if mid_backup else "training_metadata.json"
    watcher = threading.Thread(
        target=kill_once_exists, args=(killed, interrupted / "backup" / sign, outcome)
    )
    watcher.start()
    record = {}
    try:
        with probe_fit(record, steps=True):
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

    second = subprocess.run(
        [
            sys.executable,
            PROBE,
            str(tmp_path / "resumed.npz"),
            *args,
            f"training.output_dir={interrupted}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    summary = json.loads((interrupted / "train_summary.json").read_text())
    if mid_backup:
        assert summary["resumed_from_step"] == 2  # the backup before the broken one
    else:
        assert 2 <= summary["resumed_from_step"] < EPOCHS * STEPS_PER_EPOCH
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    saved = np.load(tmp_path / "resumed.npz")
    resumed = {
        when: {
            key.split("/", 1)[1]: saved[key] for key in saved.files if key.startswith(when + "/")
        }
        for when in ("before", "after")
    }
    gan = case.startswith("gan")
    at_resume = record["steps"][summary["resumed_from_step"] - 1]
    assert set(resumed["before"]) == set(at_resume)
    if gan:
        # The tolerance separates rounding from a step: one step earlier, most weights of
        # the generator lay further from the restore point than GAN_RESTORED_ATOL.
        earlier = record["steps"][summary["resumed_from_step"] - 2]
        moved = [
            np.abs(at_resume[key] - earlier[key]) > GAN_RESTORED_ATOL
            for key in at_resume
            if "/spectral_restorer/" in key and key.endswith("/kernel")
        ]
        assert moved and np.mean(np.concatenate([m.ravel() for m in moved])) > 0.5
    for key, value in at_resume.items():
        if not NOISE_DRIVEN.search(key):
            np.testing.assert_allclose(
                resumed["before"][key],
                value,
                rtol=0,
                atol=GAN_RESTORED_ATOL if gan else 0,
                err_msg=f"restored {key}",
            )
    extra = set(resumed["after"]) - set(record["after"])
    if gan:
        # Keras's compile gives RestorationGAN a default optimizer (`optimizer`) it never
        # uses; BackupAndRestore builds it on resume. It must hold no training state.
        assert all(key.startswith("optimizer/") for key in extra), extra
        assert all(
            not np.any(resumed["after"][key]) for key in extra if not key.endswith("learning_rate")
        )
    else:
        assert not extra
    # The metric discriminator's state, also seen through the GAN's optimizer group
    # ("optimizer/<i>/adam/..._metric_discriminator_..."), follows its redrawn dropout masks.
    redrawn = [
        key
        for key in record["after"]
        if key.startswith("m_optimizer/")
        or "/metric_discriminator/" in key
        or (key.startswith("optimizer/") and "metric_discriminator" in key)
    ]
    assert bool(redrawn) == gan
    counters = [key for key in record["after"] if key.endswith(("/iteration", "/gan_step"))]
    for key in counters:
        # A GAN's `optimizer` is the group of its optimizers (their counters step) or,
        # before it is built, Keras's unused default (its counter stays 0).
        unused = gan and key.startswith("optimizer/") and int(record["after"][key]) == 0
        steps = 0 if unused else EPOCHS * STEPS_PER_EPOCH
        assert int(resumed["after"][key]) == int(record["after"][key]) == steps, key
    for key, value in record["after"].items():
        if key not in counters and key not in redrawn:
            np.testing.assert_allclose(
                resumed["after"][key], value, rtol=0, atol=GAN_END_ATOL if gan else 0, err_msg=key
            )


def reset_precision():
    """``training.mixed_precision`` sets Keras's global policy; later tests in this process need float32."""
    import keras

    keras.mixed_precision.set_global_policy("float32")


SHIPPED = {
    "gan_small_mixed_precision": (
        "gan_small.yaml",
        ["training.mixed_precision=true", "training.warmup_steps=2"],
    ),
    "small_mixed_precision": ("small.yaml", ["training.mixed_precision=true"]),
    "base": ("base.yaml", ["model.preset=base", "data.segment_seconds=0.5"]),
    "small_jit_compile": ("small.yaml", ["training.jit_compile=true"]),
    # The conformer with AdamW and an exponential decay every 3 steps (the metric
    # discriminator's path through the trainer runs in the resume test, mpsenet_recipe.yaml).
    "mpsenet": (
        "mpsenet.yaml",
        ["data.segment_seconds=0.5", "training.metric_discriminator=false"],
    ),
    # The main job's gated conformer (supervised gate, speed perturbation, PESQ term, 30 %
    # clean examples, its gate threshold in the saved files).
    "conformer_small": ("conformer_small.yaml", []),
}


@pytest.mark.large
@pytest.mark.parametrize("case", list(SHIPPED))
def test_shipped_configs_train_a_few_steps(case, tmp_path, speech_folder):
    """``gan_small.yaml`` and ``small.yaml`` under mixed precision (loss-scaled
    optimizers), ``base.yaml`` with its own preset on half-second crops, and
    ``small.yaml`` compiled with XLA, ``mpsenet.yaml`` (its conformer at the small
    preset) and ``conformer_small.yaml`` (supervised gate, speed perturbation, the PESQ
    term; a gate threshold in the saved files only) each train 6 steps: every term logged and finite, every
    weight moved, every optimizer stepped, the files written. (``small.yaml`` and
    ``mpsenet_recipe.yaml`` also run in the resume test.)"""
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
    if case == "conformer_small":
        # Trained (and validated) with the soft gate; both files carry the threshold.
        import keras

        assert record["gate_threshold"] == [0.0, 0.0]
        for name in ("model.keras", "last.keras"):
            saved = keras.saving.load_model(tmp_path / name, compile=False)
            assert saved.gate_threshold == config["model"]["gate_threshold"] == 0.5, name
    if case.endswith("mixed_precision"):
        scaling = {key.split("/")[0] for key in record["after"] if key.endswith("dynamic_scale")}
        assert scaling >= (
            {"g_optimizer", "d_optimizer"} if case.startswith("gan") else {"optimizer"}
        )


@pytest.mark.large
def test_time_limit_stops_with_a_backup_the_next_run_resumes(tmp_path, speech_folder):
    """``training.max_minutes`` (here 60 microseconds: one step) stops the run cleanly:
    the summary says so, the model is saved, and the backup stays, so the same command
    run again continues from the step the limit stopped at."""
    overrides = tiny(speech_folder) + [f"training.output_dir={tmp_path}"]
    assert (
        cli.main(["train", "--config", "small.yaml", *overrides, "training.max_minutes=0.000001"])
        == 0
    )
    stopped = json.loads((tmp_path / "train_summary.json").read_text())
    assert stopped["stopped_by_time_limit"] is True
    assert 1 <= stopped["steps"] < EPOCHS * STEPS_PER_EPOCH
    assert (tmp_path / "model.keras").exists()
    assert (tmp_path / "backup" / "latest.weights.h5").exists()
    assert cli.main(["train", "--config", "small.yaml", *overrides]) == 0
    finished = json.loads((tmp_path / "train_summary.json").read_text())
    assert finished["resumed_from_step"] == stopped["steps"]
    assert (
        finished["steps"] == EPOCHS * STEPS_PER_EPOCH and finished["stopped_by_time_limit"] is False
    )
    assert not (tmp_path / "backup").exists()


def independent_evaluation(model, config, max_files=None, pad_seconds=0.5):
    """The evaluation's numbers recomputed outside training/evaluate.py: every held-out
    clip read whole with soundfile and levelled to -25 dB RMS (peak 0.99) in numpy,
    damaged by the config's chain with the per-utterance seed, restored by calling the
    model on it zero-padded at the end to a multiple of ``pad_seconds``, and scored by
    the ``pesq`` package (narrow band after scipy's resampling to 8 kHz), ``pystoi``,
    and numpy SI-SDR and log-spectral distance; per artifact over the utterances the
    chain applied it to; per bin of the damaged input's PESQ-WB (the ``pesq``
    package's: < 2, [2, 3), >= 3); and the ``clean`` row: each clean utterance once,
    against itself as input and restored by the model. Returns ``{group: {metric:
    (input mean, restored mean, n)}}``."""
    import soundfile as sf
    from pesq import pesq
    from pystoi import stoi
    from scipy.signal import get_window, resample_poly

    from spectral_restore.data.artifacts import ArtifactChain
    from training.evaluate import utterance_seed

    data, rate = config["data"], config["model"]["sample_rate"]
    paths = sorted(str(p) for p in pathlib.Path(data["source"]).rglob("*.wav"))[:max_files]
    chain = ArtifactChain(data["chain"], sample_rate=rate)
    multiple = int(pad_seconds * rate)
    window = get_window("hann", 512)

    def power(x):
        frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::128]
        return np.maximum(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2, 1e-10)

    def scores(reference, estimate):
        r, e = reference - reference.mean(), estimate - estimate.mean()
        target = (e @ r) / (r @ r) * r
        return {
            "pesq_wb": pesq(rate, reference, estimate, "wb"),
            "pesq_nb": pesq(
                8000, resample_poly(reference, 1, 2), resample_poly(estimate, 1, 2), "nb"
            ),
            "stoi": stoi(reference, estimate, rate),
            # 1e-10 on both energies, as metrics.si_sdr floors them: it decides the score of identical signals.
            "si_sdr": 10
            * np.log10((np.sum(target**2) + 1e-10) / (np.sum((target - e) ** 2) + 1e-10)),
            "lsd": np.mean(
                np.sqrt(np.mean((10 * np.log10(power(reference) / power(estimate))) ** 2, axis=-1))
            ),
        }

    def restore(wave):
        padded = np.pad(wave, (0, -len(wave) % multiple))
        return np.asarray(model(padded[None]))[0, : len(wave)].astype(np.float64)

    before, after, applied, cleans = [], [], [], []
    for repeat in range(data["eval_repeats"]):
        for index, path in enumerate(paths):
            clean, file_rate = sf.read(path, dtype="float32")
            assert file_rate == rate
            clean = clean * (10 ** (-25 / 20) / np.sqrt(np.mean(clean**2) + 1e-12))
            clean = (clean * min(1.0, 0.99 / np.max(np.abs(clean)))).astype(np.float32)
            damaged, record = chain(clean[None], utterance_seed(data["eval_seed"], repeat, index))
            damaged = np.asarray(damaged)[0]
            before.append(scores(clean.astype(np.float64), damaged.astype(np.float64)))
            after.append(scores(clean.astype(np.float64), restore(damaged)))
            applied.append(
                {name: bool(np.asarray(value["applied"])[0]) for name, value in record.items()}
            )
            if repeat == 0:
                cleans.append(clean)
    groups = {"all": np.ones(len(before), bool)}
    groups.update({name: np.array([a[name] for a in applied]) for name in applied[0]})
    quality = np.array([b["pesq_wb"] for b in before])
    groups.update(
        {
            "input PESQ-WB < 2": quality < 2,
            "input PESQ-WB 2-3": (quality >= 2) & (quality < 3),
            "input PESQ-WB >= 3": quality >= 3,
        }
    )
    clean_before = [scores(c.astype(np.float64), c.astype(np.float64)) for c in cleans]
    clean_after = [scores(c.astype(np.float64), restore(c)) for c in cleans]
    rows = [(group, mask, before, after) for group, mask in groups.items()]
    rows.append(("clean", np.ones(len(cleans), bool), clean_before, clean_after))
    return {
        group: {
            metric: (
                np.mean([b[metric] for b, m in zip(inputs, mask) if m]),
                np.mean([a[metric] for a, m in zip(outputs, mask) if m]),
                int(mask.sum()),
            )
            for metric in inputs[0]
        }
        for group, mask, inputs, outputs in rows
        if mask.any()
    }


def check_evaluation(report, expected):
    """``evaluation.json`` against :func:`independent_evaluation`. The evaluation restores
    with ``predict_on_batch``, the reference by calling the model: the same float32
    operations, but PESQ moves by up to ~1e-3 for differences in the last bits, so
    PESQ gets 5e-3 and the other metrics 1e-4 relative."""
    groups = report["groups"]
    assert set(groups) == set(expected)
    for group, row in expected.items():
        for metric, (before, after, examples) in row.items():
            assert groups[group]["examples"] == examples
            tolerance = 5e-3 if metric.startswith("pesq") else 1e-4 * max(1.0, abs(after))
            assert groups[group]["input"][metric] == pytest.approx(before, abs=tolerance), (
                group,
                metric,
            )
            assert groups[group]["restored"][metric] == pytest.approx(after, abs=tolerance), (
                group,
                metric,
            )
            assert groups[group]["failed"]["restored"][metric] == 0


@pytest.mark.large
def test_evaluate_command_agrees_with_independent_scores(
    perturbed_restorer, tmp_path, speech_folder
):
    """``spectral-restore evaluate`` with a restorer of seeded random weights, reading
    the run's config.json beside the model: every mean, overall and per artifact, of
    the damaged input and of its restoration, is the mean of the reference packages'
    scores of the same whole utterances; the Markdown and the plot exist."""
    model = perturbed_restorer
    model.save(tmp_path / "model.keras")
    overrides = [f"data.source={speech_folder}", "data.eval_repeats=2", "data.chain=default"]
    config = load_config("small.yaml", overrides)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert (
        cli.main(
            [
                "evaluate",
                str(tmp_path / "model.keras"),
                "--max-files",
                "2",
                "--processes",
                "1",
                "-q",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    check_evaluation(report, independent_evaluation(model, config, max_files=2))
    assert report["groups"]["all"]["examples"] == 4 and report["groups"]["clean"]["examples"] == 2
    bins = [
        row["examples"]
        for group, row in report["groups"].items()
        if group.startswith("input PESQ-WB")
    ]
    assert sum(bins) == 4  # the bins split the damaged utterances
    assert [row["name"] for row in report["conditions"]["input"]["files"]] == [
        f"utt{i}.wav (pass {p})" for p in (1, 2) for i in (0, 1)
    ] + [f"utt{i}.wav (clean)" for i in (0, 1)]
    markdown = (tmp_path / "evaluation" / "evaluation.md").read_text()
    overall = report["groups"]["all"]
    assert (
        f"| **restored** (this evaluation, n=4) | {overall['restored']['pesq_wb']:.2f} | "
        f"{overall['restored']['csig']:.2f} |"
    ) in markdown
    assert "## Per damage" in markdown
    assert (tmp_path / "evaluation" / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.large
def test_evaluate_scores_a_runs_recorded_pairs_whole_as_recorded(
    perturbed_restorer, tmp_path, speech_pairs
):
    """A run on recorded pairs is evaluated on them, whole and as recorded (one pass,
    no synthetic damage): "input" is each damaged recording against its clean one,
    both scaled by the clean side's level gain as training scales them, and
    "restored" the model's output on it, each equal to the ``pesq`` package's and
    pystoi's scores of the pair read back independently."""
    from pesq import pesq
    from pystoi import stoi

    from training.evaluate import evaluate

    from recorded_pairs import expected_pairs

    source = f"data.source={{damaged: {speech_pairs['damaged']}, clean: {speech_pairs['clean']}}}"
    config = load_config("small.yaml", [source, "data.eval_repeats=2"])
    report, text = evaluate(
        perturbed_restorer,
        config,
        str(tmp_path),
        metrics=["pesq_wb", "stoi"],
        processes=1,
        progress=False,
    )
    groups = report["groups"]
    assert (
        list(groups)[:2] == ["all", "clean"]
        and groups["all"]["examples"] == groups["clean"]["examples"] == 3
    )
    assert all(group.startswith("input PESQ-WB") for group in list(groups)[2:])  # no artifact rows
    assert "recorded damage (data.damage_pairs is false)" in text
    for name, (damaged, clean) in expected_pairs(speech_pairs).items():
        gain = 10 ** (-25 / 20) / np.sqrt(np.mean(clean**2) + 1e-12)
        gain *= min(1.0, 0.99 / max(np.max(np.abs(damaged * gain)), np.max(np.abs(clean * gain))))
        damaged, clean = damaged * gain, clean * gain
        padded = np.pad(damaged, (0, -len(damaged) % 8000)).astype(np.float32)
        restored = np.asarray(perturbed_restorer(padded[None]))[0, : len(damaged)].astype(
            np.float64
        )
        for condition, estimate in (("input", damaged), ("restored", restored)):
            (row,) = [
                row for row in report["conditions"][condition]["files"] if row["name"] == name
            ]
            # The data path resamples with its own filter (within 2e-5 of scipy's).
            assert row["pesq_wb"] == pytest.approx(pesq(16000, clean, estimate, "wb"), abs=5e-3), (
                name,
                condition,
            )
            assert row["stoi"] == pytest.approx(stoi(clean, estimate, 16000), abs=1e-4), (
                name,
                condition,
            )


def read_events(folder):
    """``{tag: {step: summary value}}`` of every TensorBoard event file in ``folder``."""
    import tensorflow as tf

    events = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                events.setdefault(value.tag, {})[event.step] = value
    return events


@pytest.mark.large
def test_train_and_evaluate_logs_every_term_pesq_audio_and_images(tmp_path, speech_folder):
    """``spectral-restore train --evaluate`` with validation PESQ and audio examples:
    TensorBoard holds every loss term per epoch (training and validation, equal to
    history.csv), ``val_pesq_wb`` equal to the ``pesq`` package's score of the first
    validation batch restored by the final model, the damaged, restored and clean audio
    of that batch's first example (16-bit WAV) and a spectrogram image per epoch; the
    evaluation written beside them agrees with independent scores of the saved model."""
    import keras
    import tensorflow as tf
    from pesq import pesq

    from spectral_restore.data.pipeline import make_dataset

    overrides = tiny(speech_folder) + [
        "training.pesq_batches=1",
        "training.audio_examples=1",
        f"training.output_dir={tmp_path}",
    ]
    assert cli.main(["train", "--evaluate", "--config", "small.yaml", *overrides]) == 0
    config = load_config("small.yaml", overrides)
    with open(tmp_path / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == EPOCHS and {"val_pesq_wb", "val_pesq_wb_failed"} <= set(history[0])
    train, validation = (
        read_events(tmp_path / "logs" / "train"),
        read_events(tmp_path / "logs" / "validation"),
    )
    for name in expected_terms(config) | {"val_pesq_wb", "val_pesq_wb_failed"}:
        events, tag = (validation, name[4:]) if name.startswith("val_") else (train, name)
        logged = events[f"epoch_{tag}"]
        assert sorted(logged) == list(range(EPOCHS)), name
        for epoch, row in enumerate(history):
            assert float(tf.make_ndarray(logged[epoch].tensor)) == pytest.approx(
                float(row[name]), rel=1e-6
            ), name

    # model.keras is the epoch with the best val_pesq_wb, last.keras the final model.
    scores = [float(row["val_pesq_wb"]) for row in history]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best == {
        "monitor": "val_pesq_wb",
        "value": pytest.approx(max(scores), rel=1e-6),
        "epoch": int(np.argmax(scores)),
    }
    model = keras.saving.load_model(tmp_path / "last.keras", compile=False)
    data = config["data"]
    damaged, clean = next(
        iter(
            make_dataset(
                data["source"],
                split=data["eval_split"],
                seed=data["eval_seed"],
                segment_seconds=data["segment_seconds"],
                batch_size=data["batch_size"],
                chain=data["chain"],
                shuffle=False,
                repeat=True,
            )
        )
    )
    damaged, clean = damaged.numpy(), clean.numpy()
    restored = np.asarray(model(damaged))
    reference_pesq = np.mean(
        [
            pesq(16000, c.astype(np.float64), r.astype(np.float64), "wb")
            for c, r in zip(clean, restored)
        ]
    )
    assert float(history[-1]["val_pesq_wb"]) == pytest.approx(reference_pesq, abs=5e-3)
    assert float(history[-1]["val_pesq_wb_failed"]) == 0

    samples = read_events(tmp_path / "logs" / "samples")
    for name, audio in (("damaged", damaged[0]), ("restored", restored[0]), ("clean", clean[0])):
        logged = samples[f"audio/{name}"]
        assert (
            sorted(logged) == list(range(EPOCHS))
            and logged[0].metadata.plugin_data.plugin_name == "audio"
        )
        wav = tf.make_ndarray(logged[EPOCHS - 1].tensor)[0, 0]
        decoded, rate = tf.audio.decode_wav(wav)
        assert int(rate) == 16000
        np.testing.assert_allclose(
            decoded.numpy()[:, 0],
            audio / max(1.0, np.max(np.abs(audio))),
            atol=1.5 / 32768,
            err_msg=name,
        )
    images = samples["spectrograms"]
    assert (
        sorted(images) == list(range(EPOCHS))
        and images[0].metadata.plugin_data.plugin_name == "images"
    )
    width, height, png = tf.make_ndarray(images[EPOCHS - 1].tensor)
    image = tf.io.decode_png(png).numpy()
    assert image.shape == (int(height), int(width), 3) and image.std() > 10

    report = json.loads((tmp_path / "evaluation.json").read_text())
    best_model = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    check_evaluation(report, independent_evaluation(best_model, config))
    assert report["groups"]["all"]["examples"] == 6  # the six files, whole, one pass
    assert (tmp_path / "evaluation.md").exists() and (tmp_path / "evaluation.png").exists()
