import json
import shutil

import numpy as np
import pytest

from training import cli
from spectral_restore.audio_io import read_audio


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
    assert summary["roundtrip_max_abs_error"] == pytest.approx(float(np.max(np.abs(clean - roundtrip))), abs=1e-7)
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
    assert cli.main(["evaluate", "m.keras", "data.eval_seed=7", "--config", "small.yaml", "data.batch_size=4",
                     "--max-files", "1", "data.seed=3"]) == 0
    (args,) = received
    assert args.overrides == ["data.eval_seed=7", "data.batch_size=4", "data.seed=3"]
    assert (args.model, args.config, args.max_files) == ("m.keras", "small.yaml", 1)
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "m.keras", "--config", "small.yaml", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
