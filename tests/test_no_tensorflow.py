"""Without TensorFlow: the package, the losses, the models, training, evaluation and
restoring work under JAX; what is TensorFlow's own says so. Each test runs Python in
a subprocess where ``import tensorflow`` fails (``sys.modules["tensorflow"] = None``),
so it checks the same thing with or without TensorFlow installed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK_TENSORFLOW = (
    "import sys\nsys.modules['tensorflow'] = None  # from here on, importing TensorFlow fails\n"
)
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
)


@pytest.fixture(scope="module")
def jax_env(tmp_path_factory):
    pytest.importorskip("jax", reason="the JAX backend is in the jax extra; CI installs it")
    # One compilation cache for the module's subprocesses: JAX compiles each eager op
    # separately, and a second process reuses what the first compiled.
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path_factory.mktemp("jax_cache"))
    return dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
        PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    )


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory):
    """Sentences spoken by espeak-ng voices: ``train/`` (four voices, four sentences
    each) and ``test/`` (two other voices, two other sentences)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is needed (tests/run_tests.sh installs it)")
    from spectral_restore.data.speech import synthesize

    folder = tmp_path_factory.mktemp("speech")
    for split, voices in (
        ("train", ("en-us", "en-gb", "en-us+f3", "en-gb+m3")),
        ("test", ("en-us+f4", "en-gb+f2")),
    ):
        (folder / split).mkdir()
        for voice in voices:
            for index, text in enumerate(SENTENCES[:4] if split == "train" else SENTENCES[4:]):
                sf.write(
                    folder / split / f"{voice}_{index}.wav", synthesize(text, voice=voice), 16000
                )
    return folder


def run_python(code, env, cwd, timeout=900):
    """Runs ``code`` with TensorFlow blocked; returns the JSON its last line prints."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW + code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_library_and_a_two_step_fit_without_tensorflow(jax_env, tmp_path):
    code = """
import json
import keras
import numpy as np
import spectral_restore
from spectral_restore import losses
from spectral_restore.backend import tensorflow_available
from spectral_restore.data.source import AudioDataset
from spectral_restore.inference import AudioRestorer
from spectral_restore.models.restorer import SpectralRestorer
import training.cli, training.train, training.evaluate
from training.config import build_loss, load_config

rng = np.random.default_rng(0)
clips = [0.1 * np.sin(2 * np.pi * f * np.arange(12000) / 16000).astype("float32") * (1 + rng.random(12000))
         for f in (200, 310, 450, 520, 700, 810)]
data = AudioDataset(clips, segment_seconds=0.5, batch_size=2, damage="none", repeat=True, seed=1)
model = SpectralRestorer("small")
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss(load_config("small.yaml")["loss"]))
damaged, clean = data[0]
model(damaged)
before = [w.copy() for w in model.get_weights()]
history = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
model.save("model.keras")
restorer = AudioRestorer("model.keras", chunk_seconds=0.2, overlap_seconds=0.05)
long = np.concatenate([damaged, damaged], axis=1)
restored = restorer(long)
errors = {}
for name, call in (("export", lambda: __import__("spectral_restore.export")),
                   ("pipeline", lambda: __import__("spectral_restore.data.pipeline")),
                   ("tfds", lambda: AudioDataset("tfds:synthetic_speech", damage="none"))):
    try:
        call()
    except ImportError as err:
        errors[name] = str(err)
print(json.dumps({
    "tensorflow_imported": sys.modules.get("tensorflow") is not None,
    "tensorflow_available": tensorflow_available(),
    "losses": sorted(history.history), "finite": bool(np.all(np.isfinite(history.history["loss"]))),
    "changed": changed, "weights": len(before), "restored_shape": list(restored.shape),
    "restored_finite": bool(np.all(np.isfinite(restored))),
    "errors": errors,
}))
"""
    result = run_python(code, jax_env, tmp_path)
    assert not result["tensorflow_imported"] and not result["tensorflow_available"]
    assert {"loss", "recon/mse", "phase/complex", "time/l1"} <= set(result["losses"]) and result[
        "finite"
    ]
    assert result["changed"] == result["weights"]  # every variable of the model trained
    assert result["restored_shape"] == [2, 16000] and result["restored_finite"]
    for name, feature in (
        ("export", "SavedModel export"),
        ("pipeline", "tf.data pipeline"),
        ("tfds", "TFDS source"),
    ):
        assert feature in result["errors"][name] and "jax" in result["errors"][name]


CLI = "from training.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def test_export_without_tensorflow_is_a_one_line_usage_error(jax_env, tmp_path):
    """Status 2 and one line saying what to install, before the model is read."""
    (tmp_path / "model.keras").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW + CLI, "export", "model.keras", "sm"],
        env=jax_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == (
        "spectral-restore: error: export writes a TensorFlow SavedModel, and TensorFlow is not "
        "installed: pip install 'spectral-restore[tensorflow]'\n"
    )
    assert not (tmp_path / "sm").exists()


TINY_TRAINING = [
    "data.segment_seconds=1.0",
    "data.batch_size=2",
    "data.eval_repeats=1",
    "data.cache_batches=0",
    "training.epochs=2",
    "training.steps_per_epoch=3",
    "training.validation_steps=1",
    "training.max_minutes=null",
    "training.backup_every_steps=2",
]


@pytest.mark.large
def test_cli_trains_resumes_evaluates_and_restores_without_tensorflow(
    jax_env, speech_folder, tmp_path
):
    """The issue's command with a tiny budget: killed after its first backup, the run
    resumes where it stopped, damages in the model (the config's data.damage=pipeline
    becomes model, with a notice), evaluates, and its model.keras restores a file."""
    out = tmp_path / "train"
    command = [
        sys.executable,
        "-c",
        BLOCK_TENSORFLOW + CLI,
        "train",
        "--config",
        "small.yaml",
        *TINY_TRAINING,
        f"data.source={speech_folder}",
        f"training.output_dir={out}",
    ]
    first = subprocess.Popen(
        command,
        env=jax_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    backup = out / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 900
    while not backup.exists():
        assert first.poll() is None, first.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no backup after 15 minutes"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.run(
        command + ["--evaluate"],
        env=jax_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-4000:]
    assert "data.damage=model" in log and "TensorBoard logging is off" in log
    summary = json.loads((out / "train_summary.json").read_text())
    assert 2 <= summary["resumed_from_step"] < 6 and summary["steps"] == 6
    assert json.loads((out / "config.json").read_text())["data"]["damage"] == "model"
    evaluation = json.loads((out / "evaluation.json").read_text())
    overall = evaluation["groups"]["all"]
    assert overall["examples"] == 4  # the test voices' four clips, whole, one pass
    for metric in ("pesq_wb", "stoi", "si_sdr", "csig"):
        assert np.isfinite(overall["input"][metric]) and np.isfinite(overall["restored"][metric])
    damaged = speech_folder / "test" / "en-us+f4_0.wav"
    restored = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TENSORFLOW + CLI,
            "restore",
            str(damaged),
            "-o",
            str(tmp_path / "restored"),
            "-m",
            str(out / "model.keras"),
            "--quiet",
        ],
        env=jax_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-4000:]
    samples, rate = sf.read(tmp_path / "restored" / damaged.name)
    assert (
        rate == 16000 and len(samples) == sf.info(damaged).frames and np.all(np.isfinite(samples))
    )


@pytest.mark.large
def test_cli_trains_on_a_folder_pair_with_the_recorded_damage_only_under_jax(
    jax_env, speech_pairs, tmp_path
):
    """``spectral-restore train`` on a folder pair of three recorded damage kinds under
    JAX: the config's data.damage=pipeline becomes none (not model: no damage layer),
    and the batches AudioDataset hands to fit are aligned crops of the recorded pairs."""
    from recorded_pairs import assert_aligned_crops, expected_pairs

    out = tmp_path / "train"
    code = f"""
import json
import keras
import numpy as np
from spectral_restore.data.source import AudioDataset
from training.cli import main

served = []
get = AudioDataset.__getitem__
def recording_get(self, index):
    batch = get(self, index)
    if self.shuffle:  # the training stream (validation is read in order)
        served.append(batch)
    return batch
AudioDataset.__getitem__ = recording_get
code = main(["train", "--config", "small.yaml", *{TINY_TRAINING!r}, "training.epochs=1",
             "data.source={{damaged: {speech_pairs["damaged"]}, clean: {speech_pairs["clean"]}}}",
             "training.output_dir={out}", "training.pesq_batches=0", "training.audio_examples=0"])
np.savez("{tmp_path / "served.npz"}", damaged=np.stack([b[0] for b in served]), clean=np.stack([b[1] for b in served]))
model = keras.saving.load_model("{out / "model.keras"}", compile=False)
print(json.dumps({{"code": code, "input_damage": model.input_damage is None}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW + code],
        env=jax_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"code": 0, "input_damage": True}
    assert "recorded pairs" in log and "data.damage=none" in log
    assert json.loads((out / "config.json").read_text())["data"]["damage"] == "none"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["files_skipped"] == 0
    served = np.load(tmp_path / "served.npz")
    assert served["damaged"].shape[1:] == (2, 16000) and len(served["damaged"]) >= 3
    expected = expected_pairs(speech_pairs)
    for damaged, clean in zip(served["damaged"], served["clean"]):
        assert_aligned_crops(damaged, clean, expected)
