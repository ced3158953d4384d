import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from spectral_restore import __version__
from spectral_restore.export import RestorationServer, export_saved_model
from spectral_restore.inference import read_metadata

from reference import chunked_crossfade

RATE = 16000
CHUNK_SECONDS, OVERLAP_SECONDS = (
    0.5,
    0.125,
)  # 8000 and 2000 samples: short inputs go through several chunks


@pytest.fixture(scope="module")
def export_dir(perturbed_restorer, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "restorer")
    export_saved_model(
        perturbed_restorer, path, chunk_seconds=CHUNK_SECONDS, overlap_seconds=OVERLAP_SECONDS
    )
    return path


def run_in_fresh_python(code):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_saved_model_in_a_fresh_process_equals_keras_model(
    export_dir, perturbed_restorer, tmp_path, rng
):
    waves = {
        "short": rng.normal(0, 0.1, (3, 5000)).astype(np.float32),
        "one_chunk": rng.normal(0, 0.1, (2, 8000)).astype(np.float32),
        "chunk_plus_one": rng.normal(0, 0.1, (2, 8001)).astype(np.float32),
        "long": rng.normal(0, 0.1, (2, 29333)).astype(np.float32),
        "one_sample": rng.normal(0, 0.1, (1, 1)).astype(np.float32),
    }
    np.savez(tmp_path / "inputs.npz", **waves)
    out = run_in_fresh_python(f"""
        import sys, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        serve = loaded.signatures["serving_default"]
        inputs = np.load({str(tmp_path / "inputs.npz")!r})
        np.savez({str(tmp_path / "outputs.npz")!r},
                 **{{k: serve(waveform=tf.constant(inputs[k]))["restored"].numpy() for k in inputs.files}})
        print("imported spectral_restore:", any(m.startswith("spectral_restore") for m in sys.modules))
    """)
    assert "imported spectral_restore: False" in out
    outputs = np.load(tmp_path / "outputs.npz")
    for name, wave in waves.items():
        expected = chunked_crossfade(perturbed_restorer, wave, 8000, 2000)
        assert outputs[name].shape == wave.shape, name
        np.testing.assert_allclose(outputs[name], expected, atol=1e-5, err_msg=name)
    # The long input did go through chunks: a recurrent model given less context differs.
    assert np.max(np.abs(outputs["long"] - np.asarray(perturbed_restorer(waves["long"])))) > 1e-4


def test_export_carries_metadata_and_named_signature(export_dir, perturbed_restorer):
    metadata = read_metadata(export_dir)
    assert metadata["sample_rate"] == RATE and metadata["spectral_restore_version"] == __version__
    assert metadata["stft"] == perturbed_restorer.stft_config.get_config()
    assert (
        metadata["preset"] == "small"
        and metadata["parameters"] == perturbed_restorer.count_params()
    )
    assert (metadata["chunk_samples"], metadata["overlap_samples"]) == (8000, 2000)
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["waveform"]
    assert list(serve.structured_outputs) == ["restored"]
    described = loaded.signatures["metadata"]()
    assert int(described["sample_rate"]) == RATE == int(loaded.sample_rate.numpy())
    assert json.loads(described["metadata"].numpy().decode()) == metadata


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(16000, np.float32), "not compatible with expected shape"),
        (np.zeros((1, 1, 16000), np.float32), "not compatible with expected shape"),
        (np.zeros((1, 0), np.float32), "at least one sample"),
        (np.full((1, 100), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((1, 100), np.int32), "expected to be a float tensor"),
    ],
)
def test_bad_inputs_give_clear_errors(export_dir, bad, message):
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(waveform=tf.constant(bad))


def test_saved_model_cli_show_and_run(export_dir, perturbed_restorer, tmp_path, rng):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this Python")
    shown = subprocess.run(
        [cli, "show", "--dir", export_dir, "--all"], capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "inputs['waveform']" in shown.stdout and "outputs['restored']" in shown.stdout
    wave = rng.normal(0, 0.1, (2, 12000)).astype(np.float32)
    np.save(tmp_path / "x.npy", wave)
    ran = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            export_dir,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"waveform={tmp_path / 'x.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    restored = np.load(tmp_path / "out" / "restored.npy")
    np.testing.assert_allclose(
        restored, chunked_crossfade(perturbed_restorer, wave, 8000, 2000), atol=1e-5
    )


def test_export_arguments_are_checked(perturbed_restorer, tmp_path):
    with pytest.raises(ValueError, match="overlap_seconds"):
        RestorationServer(perturbed_restorer, chunk_seconds=1.0, overlap_seconds=0.5)
    with pytest.raises(ValueError, match="chunk_seconds"):
        RestorationServer(perturbed_restorer, chunk_seconds=0)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_saved_model(perturbed_restorer, tmp_path / "taken")
    with pytest.raises(FileNotFoundError):
        export_saved_model(tmp_path / "missing.keras", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a spectral-restore SavedModel"):
        read_metadata(tmp_path / "taken")


def test_export_from_keras_file_and_cli(perturbed_restorer, tmp_path, capsys, rng):
    from training import cli

    path = str(tmp_path / "model.keras")
    perturbed_restorer.save(path)
    assert cli.main(["export", path, str(tmp_path / "sm")]) == 0
    assert (
        json.loads(capsys.readouterr().out.split("\nSavedModel written")[0])["sample_rate"] == RATE
    )
    wave = rng.normal(0, 0.1, (1, 7000)).astype(np.float32)
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](
        waveform=tf.constant(wave)
    )
    np.testing.assert_allclose(
        served["restored"].numpy(), np.asarray(perturbed_restorer(wave)), atol=1e-5
    )
