import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from spectral_restore.audio_io import read_audio
from training import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ERROR = re.compile(r"spectral-restore: error: \S.*\n")


def test_version(capsys):
    from spectral_restore import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_demo_writes_audio_plot_and_exact_roundtrip(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tests/run_tests.sh installs it)")
    assert cli.main(["demo", "--out", str(tmp_path), "--text", "Testing one two three."]) == 0
    clean, rate = read_audio(tmp_path / "clean.wav")
    roundtrip, _ = read_audio(tmp_path / "roundtrip.wav")
    assert rate == 16000 and len(clean) == len(roundtrip) > 8000
    assert np.max(np.abs(clean - roundtrip)) < 1e-5
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["roundtrip_max_abs_error"] == pytest.approx(
        float(np.max(np.abs(clean - roundtrip))), abs=1e-7
    )
    damaged, _ = read_audio(tmp_path / "damaged.wav")
    assert len(damaged) == len(clean)
    scale = np.dot(damaged, clean) / np.dot(clean, clean)  # the peak normalisation, if any
    snr = 10 * np.log10(np.sum((scale * clean) ** 2) / np.sum((damaged - scale * clean) ** 2))
    assert abs(snr - 5.0) < 0.5
    png = (tmp_path / "spectrograms.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000


def test_overrides_may_follow_the_options(monkeypatch, capsys):
    received = []
    monkeypatch.setattr(cli, "_evaluate", lambda args: received.append(args) or 0)
    assert (
        cli.main(
            [
                "evaluate",
                "m.keras",
                "data.eval_seed=7",
                "--config",
                "small.yaml",
                "data.batch_size=4",
                "--max-files",
                "1",
                "data.seed=3",
            ]
        )
        == 0
    )
    (args,) = received
    assert args.overrides == ["data.eval_seed=7", "data.batch_size=4", "data.seed=3"]
    assert (args.model, args.config, args.max_files) == ("m.keras", "small.yaml", 1)
    assert cli.main(["evaluate", "m.keras", "--config", "small.yaml", "--bogus"]) == 2
    assert capsys.readouterr().err == (
        "spectral-restore: error: unrecognized arguments: --bogus (see `spectral-restore --help`)\n"
    )


def run_command(*argv, **env):
    """``spectral-restore ARGV`` in a fresh Python, as a user runs it; ``(status, stdout, stderr)``."""
    environment = dict(
        os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **env
    )
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", *argv],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_a_usage_error_is_one_line_and_status_2_and_debug_adds_the_traceback():
    """The issue's typo, run as a user runs it: it fails before TensorFlow loads, so
    stderr holds the error line and nothing else."""
    status, out, err = run_command("train", "--config", "small.yaml", "training.epohcs=3")
    assert (status, out) == (2, "")
    assert (
        err
        == "spectral-restore: error: unknown config key 'training.epohcs' in override 'training.epohcs=3'; "
        "did you mean 'training.epochs'?\n"
    )
    status, _, err = run_command("train", "--config", "small.yaml", "training.epohcs=3", "--debug")
    lines = err.splitlines()
    assert (
        status == 2
        and lines[0] == "Traceback (most recent call last):"
        and "training/config.py" in err
    )
    assert lines[-1].startswith("spectral-restore: error: unknown config key 'training.epohcs'")


def usage_error(argv, capsys):
    """The one line ``cli.main(argv)`` prints, after checking it returns 2 and prints nothing else."""
    assert cli.main(argv) == 2, argv
    captured = capsys.readouterr()
    assert ERROR.fullmatch(captured.err) and "Traceback" not in captured.err + captured.out, (
        captured.err
    )
    return captured.err


def test_each_usage_error_is_one_line(tmp_path, capsys):
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(1600), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "model.h5").write_text("not a .keras file")
    (tmp_path / "damaged.keras").write_bytes(b"not a zip file")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    out = str(tmp_path / "out")
    model = str(tmp_path / "damaged.keras")
    runs = tmp_path / "runs"
    cases = {
        "unknown config key": (
            ["train", "--config", "small.yaml", "model.presett=small"],
            "unknown config key 'model.presett'.*did you mean 'model.preset'",
        ),
        "missing config file": (
            ["train", "--config", "nope.yaml"],
            "config file not found: nope.yaml",
        ),
        "override syntax": (
            ["train", "training.epochs"],
            "an override must look like section.key=value",
        ),
        "override value type": (
            ["train", "training.epochs=ten"],
            "'training.epochs' takes a whole number",
        ),
        "override YAML": (["train", "data.source={damaged: x"], "is not valid YAML"),
        # Checked once the model is built, before any data loads.
        "gate threshold without a gate": (
            [
                "train",
                "--config",
                "small.yaml",
                "model.gate_threshold=0.5",
                f"training.output_dir={runs}",
            ],
            r"model.gate_threshold=0.5 needs a model with a per-frame gate .*"
            "model.architecture=crn, model.preset=small has none",
        ),
        "gate threshold out of range": (
            [
                "train",
                "--config",
                "conformer_small.yaml",
                "model.gate_threshold=1",
                f"training.output_dir={runs}",
            ],
            r"model.gate_threshold must be in \[0, 1\); received 1$",
        ),
        "gate supervision under the GAN": (
            [
                "train",
                "--config",
                "conformer_small.yaml",
                "training.gan=true",
                "model.gate_supervision=0.01",
                f"training.output_dir={runs}",
            ],
            r"model.gate_supervision=0.01 is for plain training; the GAN's steps .* do not "
            "score the gate: set it to 0$",
        ),
        "speed perturbation out of order": (
            [
                "train",
                "--config",
                "small.yaml",
                "data.speed_perturb=[1.2, 0.8]",
                f"training.output_dir={runs}",
            ],
            r"config data.speed_perturb: `speed_perturb` must satisfy 0.5 <= low <= high <= 2.0; "
            r"received \[1.2, 0.8\]$",
        ),
        "unknown option": (
            ["restore", str(audio), "-o", out, "-m", model, "--bogus"],
            "unrecognized arguments",
        ),
        "missing option": (
            ["restore", str(audio), "-o", out],
            "the following arguments are required: -m/--model",
        ),
        "bad option value": (
            ["export", model, out, "--chunk-seconds", "0"],
            "argument --chunk-seconds: must be a number > 0.0; received '0'",
        ),
        "bad option type": (
            ["evaluate", model, "--max-files", "two"],
            "argument --max-files: must be an integer >= 1; received 'two'",
        ),
        "missing input": (
            ["restore", str(tmp_path / "missing.wav"), "-o", out, "-m", model],
            "input not found: .*missing.wav",
        ),
        "output is a file": (
            ["restore", str(audio), "-o", str(audio), "-m", model],
            "is a file; -o names the folder",
        ),
        "missing model": (
            ["restore", str(audio), "-o", out, "-m", str(tmp_path / "none.keras")],
            "model not found: .*none.keras",
        ),
        "not a model": (
            ["restore", str(audio), "-o", out, "-m", str(tmp_path / "model.h5")],
            "model.h5 is not a model: give a .keras file",
        ),
        "damaged model": (
            ["restore", str(audio), "-o", out, "-m", model],
            "cannot load the model .*damaged.keras",
        ),
        "not a SavedModel": (
            ["restore", str(audio), "-o", out, "-m", str(tmp_path / "taken")],
            "cannot load the model .*taken: .*not a spectral-restore SavedModel",
        ),
        "not audio": (
            ["restore", str(tmp_path / "notes.txt"), "-o", out, "-m", model],
            "notes.txt is not an audio file",
        ),
        "no audio in a folder": (
            ["restore", str(tmp_path / "taken"), "-o", out, "-m", model],
            r"no audio files \(.wav, .*\) in .*taken: only 1 other file",
        ),
        "export of a missing model": (
            ["export", str(tmp_path / "none.keras"), out],
            "model not found",
        ),
        "export into a full folder": (["export", model, str(tmp_path / "taken")], "is not empty"),
        "export of a damaged model": (
            ["export", model, out],
            "cannot load the model .*damaged.keras",
        ),
    }
    for name, (argv, message) in cases.items():
        err = usage_error(argv, capsys)
        assert re.match(f"spectral-restore: error: .*{message}", err), (name, err)
    assert not os.path.exists(out)


def test_debug_prints_the_traceback_and_a_bug_keeps_it(tmp_path, capsys, monkeypatch):
    assert (
        cli.main(["--debug", "restore", str(tmp_path / "missing.wav"), "-o", "x", "-m", "m.keras"])
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith("Traceback (most recent call last):")
        and "UsageError: input not found" in err
    )
    assert err.splitlines()[-1].startswith("spectral-restore: error: input not found")

    def broken(args):
        raise ValueError("a bug, not the user's doing")

    # An error that is no usage error (a bug) is not turned into a line: it propagates.
    monkeypatch.setattr(cli, "_demo", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["demo"])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An untrained small restorer: fast, and what it does to the audio does not matter here."""
    from spectral_restore.models.restorer import build_restorer

    path = tmp_path_factory.mktemp("model") / "small.keras"
    build_restorer("small").save(path)
    return str(path)


def test_restore_walks_folders_keeps_the_layout_and_counts_what_it_skips(
    model_file, tmp_path, capsys, rng
):
    inputs = tmp_path / "recordings"
    files = {"a.wav": 16000, "day1/b.flac": 22050, "day1/deep/c.ogg": 8000, "day2/d.wav": 44100}
    for name, rate in files.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(inputs / name, rng.normal(0, 0.05, rate // 5), rate)
    (inputs / "day1" / "notes.txt").write_text("not audio")
    (inputs / "cover.jpg").write_bytes(b"\xff\xd8")
    (inputs / "day2" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    out = tmp_path / "restored"
    assert cli.main(["restore", str(inputs), "-o", str(out), "-m", model_file, "-q"]) == 1
    captured = capsys.readouterr()
    assert (
        captured.out.splitlines()[-1] == "4 restored; skipped: 1 unreadable file, 2 non-audio files"
    )
    assert captured.err.splitlines() == [
        f"spectral-restore: skipped unreadable audio: {inputs / 'day2' / 'broken.wav'}: "
        + captured.err.split("broken.wav: ", 1)[1].strip()
    ]
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert written == sorted(files)
    for name, rate in files.items():
        before, after = sf.info(inputs / name), sf.info(out / name)
        assert (after.samplerate, after.frames, after.channels) == (
            before.samplerate,
            before.frames,
            1,
        ), name

    # Run again with the output folder inside the input folder: its files are results, not inputs.
    (inputs / "day2" / "broken.wav").unlink()
    inside = inputs / "restored"
    assert cli.main(["restore", str(inputs), "-o", str(inside), "-m", model_file, "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 restored; skipped: 2 non-audio files"
    assert cli.main(["restore", str(inputs), "-o", str(inside), "-m", model_file, "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 restored; skipped: 2 non-audio files"
    assert sorted(str(p.relative_to(inside)) for p in inside.rglob("*") if p.is_file()) == sorted(
        files
    )


def test_restore_never_overwrites_its_input(model_file, tmp_path, capsys, rng):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "sub" / "x.wav", rng.normal(0, 0.05, 1600), 16000)
    sf.write(folder / "y.flac", rng.normal(0, 0.05, 1600), 16000)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    for argv in (
        ["restore", str(folder), "-o", str(folder)],
        ["restore", str(folder / "sub" / "x.wav"), "-o", str(folder / "sub")],
        ["restore", str(folder / "y.flac"), "-o", str(folder / "sub" / "..")],
    ):
        err = usage_error([*argv, "-m", model_file, "-q"], capsys)
        assert "would overwrite the input" in err and "choose an output folder" in err, err
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    # Two inputs that would be written to one name: refused before anything is written.
    sf.write(tmp_path / "x.wav", rng.normal(0, 0.05, 1600), 16000)
    err = usage_error(
        [
            "restore",
            str(folder / "sub"),
            str(tmp_path / "x.wav"),
            "-o",
            str(tmp_path / "o"),
            "-m",
            model_file,
        ],
        capsys,
    )
    assert (
        f"{folder / 'sub' / 'x.wav'} and {tmp_path / 'x.wav'} would both be written to {tmp_path / 'o' / 'x.wav'}"
        in err
    )
    assert not (tmp_path / "o").exists()


def test_export_under_another_backend_is_a_one_line_usage_error(tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is in the jax extra; CI installs it")
    (tmp_path / "model.keras").write_bytes(b"")
    status, out, err = run_command(
        "export",
        str(tmp_path / "model.keras"),
        str(tmp_path / "sm"),
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
    )
    assert (status, out) == (2, "")
    assert err.splitlines()[-1] == (
        "spectral-restore: error: export runs under the TensorFlow backend; the active Keras backend is jax: run it "
        "with KERAS_BACKEND=tensorflow (a .keras file saved under any backend loads there)"
    )
    assert "Traceback" not in err and not (tmp_path / "sm").exists()


def test_export_checks_its_chunking_before_it_writes(model_file, tmp_path, capsys):
    err = usage_error(
        [
            "export",
            model_file,
            str(tmp_path / "sm"),
            "--chunk-seconds",
            "1",
            "--overlap-seconds",
            "0.5",
        ],
        capsys,
    )
    assert (
        "--chunk-seconds / --overlap-seconds: `overlap_seconds` must be in (0, chunk_seconds / 2)"
        in err
    )
    assert not (tmp_path / "sm").exists()


def test_a_single_unreadable_file_is_a_usage_error(model_file, tmp_path, capsys):
    (tmp_path / "empty.flac").write_bytes(b"")
    err = usage_error(
        [
            "restore",
            str(tmp_path / "empty.flac"),
            "-o",
            str(tmp_path / "o"),
            "-m",
            model_file,
            "-q",
        ],
        capsys,
    )
    assert err.startswith(
        f"spectral-restore: error: nothing restored: {tmp_path / 'empty.flac'}: the file is empty"
    )


def test_the_library_does_not_import_the_application():
    """``spectral_restore`` is the library; the command (``training/cli.py``) and the
    trainer use it, never the reverse."""
    import ast
    import pathlib

    importers = []
    for path in sorted((pathlib.Path(ROOT) / "spectral_restore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            importers += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] == "training"
            ]
    assert importers == []
