import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spectral_restore import metrics
from spectral_restore.evaluation import scoring
from spectral_restore.evaluation.composite import composite

NO_DNSMOS = [m for m in scoring.METRICS if not m.startswith("dnsmos")]


@pytest.fixture(scope="module")
def pairs(speech_16k):
    rng = np.random.default_rng(5)
    clean = speech_16k.astype(np.float64)
    noisy = clean + 0.03 * rng.standard_normal(len(clean))
    quieter = 0.5 * clean[:-160]
    return (
        [clean, clean, np.zeros(16000), clean[:3000]],
        [noisy, quieter, noisy[:16000], noisy[:3000]],
        ["noisy", "quieter", "silent_reference", "too_short"],
    )


def test_score_pairs_equals_the_references_and_counts_failures(pairs):
    from pesq import pesq

    pystoi = pytest.importorskip("pystoi", reason="pystoi is in the test extras")

    clean, estimates, names = pairs
    result = scoring.score_pairs(
        clean,
        estimates,
        16000,
        metrics=NO_DNSMOS + ["segsnr"],
        names=names,
        processes=2,
        progress=False,
    )
    noisy, quieter = result.files[0], result.files[1]
    assert noisy["pesq_wb"] == pesq(16000, clean[0], estimates[0], "wb")
    assert noisy["stoi"] == pytest.approx(pystoi.stoi(clean[0], estimates[0], 16000), abs=1e-8)
    assert noisy["estoi"] == pytest.approx(
        pystoi.stoi(clean[0], estimates[0], 16000, extended=True), abs=1e-8
    )
    expected = composite(clean[0], estimates[0], 16000)
    assert all(noisy[m] == expected[m] for m in ("csig", "cbak", "covl", "segsnr"))
    assert noisy["si_sdr"] == metrics.si_sdr(clean[0], estimates[0])[0]
    # Sides of different length are scored on the shorter one, and the cut counted.
    assert (quieter["samples"], quieter["trimmed"]) == (len(clean[1]) - 160, 160)
    assert (
        quieter["pesq_nb"]
        == metrics.pesq_score(clean[1][:-160], estimates[1], 16000, "nb").scores[0]
    )
    assert quieter["segsnr"] == pytest.approx(20 * np.log10(2), abs=1e-9)
    # Nothing is dropped: failures are NaN, left out of the means and counted by reason.
    assert [row["name"] for row in result.files] == names
    assert result.failures["pesq_wb"] == {"NoUtterancesError": 1, "BufferTooShortError": 1}
    assert result.failures["csig"] == {
        "pesq_wb: NoUtterancesError": 1,
        "pesq_wb: BufferTooShortError": 1,
    }
    assert result.failures["stoi"] == {"fewer than 30 STOI frames of speech": 1}
    assert result.counts()["pesq_wb"] == 2 and result.counts()["si_sdr"] == 4
    assert result.means()["pesq_wb"] == pytest.approx((noisy["pesq_wb"] + quieter["pesq_wb"]) / 2)
    data = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert data["files"][2]["pesq_wb"] is None and data["files_scored"] == 4


def test_other_rates_and_metric_selection(pairs):
    from scipy.signal import resample_poly

    clean, estimates, _ = pairs
    wide = (
        [resample_poly(x, 3, 1) for x in clean[:1]],
        [resample_poly(x, 3, 1) for x in estimates[:1]],
    )
    result = scoring.score_pairs(
        *wide, 48000, metrics=["csig", "pesq_wb"], processes=1, progress=False
    )
    assert result.metrics == ("csig", "pesq_wb")
    assert set(result.files[0]) == {"name", "samples", "trimmed", "csig", "pesq_wb"}
    assert result.files[0]["csig"] == composite(wide[0][0], wide[1][0], 48000)["csig"]
    with pytest.raises(ValueError, match="Unknown metrics"):
        scoring.score_pairs(clean, estimates, 16000, metrics=["pesq"])
    with pytest.raises(TypeError, match="list of names"):
        scoring.score_pairs(clean, estimates, 16000, metrics="stoi")
    with pytest.raises(ValueError, match="estimates"):
        scoring.score_pairs(clean, estimates[:2], 16000)
    with pytest.raises(ValueError, match="1-D"):
        scoring.score_pairs([clean[0][None]], [estimates[0][None]], 16000)


@pytest.mark.parametrize("long_from_seconds", [None, 0.5])
def test_conditions_of_one_stream_are_scored_as_separately(pairs, monkeypatch, long_from_seconds):
    """Two estimates per utterance in one pass (a generator, read once) give each the
    rows and failures the references give it alone: PESQ exactly the ``pesq``
    package's, nothing mixed between conditions. With every pair counted as long
    (``PESQ_IN_PROCESS_SECONDS`` lowered), each condition's PESQ is awaited before the
    next, and the numbers stay the same."""
    from pesq import pesq

    if long_from_seconds is not None:
        monkeypatch.setattr(scoring._metrics, "PESQ_IN_PROCESS_SECONDS", long_from_seconds)
    clean, estimates, names = pairs
    quieter = [0.5 * c for c in clean]
    items = (
        (name, c, {"noisy": e, "quieter": q})
        for name, c, e, q in zip(names, clean, estimates, quieter)
    )
    wanted = ["pesq_wb", "stoi", "si_sdr"]
    result = scoring.score_conditions(
        items, 16000, ("noisy", "quieter"), metrics=wanted, processes=1, progress=False
    )
    for condition, sides in (("noisy", estimates), ("quieter", quieter)):
        rows = result[condition].files
        assert [row["name"] for row in rows] == names
        for row, c, e in zip(rows[:2], clean, sides):
            length = min(len(c), len(e))
            assert row["pesq_wb"] == pesq(16000, c[:length], e[:length], "wb"), (
                condition,
                row["name"],
            )
            assert row["si_sdr"] == metrics.si_sdr(c[:length], e[:length])[0]
        assert result[condition].failures["pesq_wb"] == {
            "NoUtterancesError": 1,
            "BufferTooShortError": 1,
        }
    with pytest.raises(ValueError, match=r"expected \['noisy', 'quieter'\]"):
        scoring.score_conditions(
            [("x", clean[0], {"noisy": estimates[0]})],
            16000,
            ("noisy", "quieter"),
            metrics=wanted,
            processes=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="distinct"):
        scoring.score_conditions([], 16000, ("a", "a"))


def test_dnsmos_is_skipped_with_its_reason_when_absent(pairs, monkeypatch):
    clean, estimates, _ = pairs
    monkeypatch.setattr(
        scoring._dnsmos, "dnsmos_unavailable_reason", lambda: "speechmos is not installed"
    )
    result = scoring.score_pairs(
        clean[:1], estimates[:1], 16000, metrics=["si_sdr", "dnsmos_ovrl"], progress=False
    )
    assert result.metrics == ("si_sdr",)
    assert result.skipped == {"dnsmos_ovrl": "speechmos is not installed"}


def test_dnsmos_equals_speechmos(pairs):
    from spectral_restore.evaluation import dnsmos

    reason = dnsmos.dnsmos_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from speechmos import dnsmos as speechmos_dnsmos

    clean, estimates, _ = pairs
    result = scoring.score_pairs(
        clean[:1], estimates[:1], 16000, metrics=list(scoring.METRICS[-3:]), progress=False
    )
    expected = speechmos_dnsmos.run(np.clip(estimates[0], -1, 1).astype(np.float32), 16000)
    assert result.files[0]["dnsmos_sig"] == pytest.approx(expected["sig_mos"], abs=1e-9)
    assert result.files[0]["dnsmos_ovrl"] == pytest.approx(expected["ovrl_mos"], abs=1e-9)
    assert 1.0 <= result.files[0]["dnsmos_bak"] <= 5.0


@pytest.mark.large
@pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads memory use from Linux's /proc"
)
def test_ten_minute_utterance_stays_within_3_gb(tmp_path):
    """Every metric but DNSMOS on one 10-minute pair, in a fresh process: the resident
    memory of that process and its PESQ workers together, sampled every 50 ms, stays
    under 3 GB. (DNSMOS scores 9 s windows at 1 s hops, nearly real time on a CPU; it
    adds about 150 MB.) Workers are sampled rather than read from getrusage: their
    peak there includes the parent's memory at the moment they were forked."""
    script = textwrap.dedent(
        """
        import json, os, sys, threading, time
        import numpy as np
        sys.path.insert(0, sys.argv[1])
        from conftest import arctic_example_path
        import soundfile as sf
        from spectral_restore.evaluation import METRICS, score_pairs

        def resident(pid):
            with open(f"/proc/{pid}/status") as status:
                return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))

        def children():
            for entry in os.listdir("/proc"):
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        if int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                            yield int(entry)
                except (ValueError, OSError):
                    continue

        peak = {"total": 0, "workers": 0}
        done = threading.Event()

        def sample():
            while not done.is_set():
                workers = 0
                for pid in children():
                    try:
                        workers += resident(pid)
                    except OSError:
                        continue
                peak["workers"] = max(peak["workers"], workers)
                peak["total"] = max(peak["total"], resident(os.getpid()) + workers)
                time.sleep(0.05)

        speech, rate = sf.read(arctic_example_path())
        clean = np.tile(np.concatenate([speech, np.zeros(rate // 5)]), 200)[: 600 * rate]
        noisy = clean + 0.1 * np.std(clean) * np.random.default_rng(0).standard_normal(len(clean))
        sampler = threading.Thread(target=sample)
        sampler.start()
        wanted = [m for m in METRICS if not m.startswith("dnsmos")]
        result = score_pairs([clean], [noisy], rate, metrics=wanted, processes=2, progress=False)
        done.set()
        sampler.join()
        with open("/proc/self/status") as status:
            peak["self"] = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
        print(json.dumps({"peak": peak, "result": result.as_dict()}))
        """
    )
    path = tmp_path / "ten_minutes.py"
    path.write_text(script)
    tests = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, str(path), tests],
        capture_output=True,
        text=True,
        check=False,
        env=dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([os.path.dirname(tests), os.environ.get("PYTHONPATH", "")]),
        ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    peak = report["peak"]
    assert peak["workers"] > 100 * 1024**2, "the PESQ workers were not seen"
    assert max(peak["total"], peak["self"]) < 3 * 1024**3, peak
    row, failures = report["result"]["files"][0], report["result"]["failures"]
    assert row["samples"] == 600 * 16000
    assert 0.5 < row["stoi"] < 1 and row["si_sdr"] == pytest.approx(20.0, abs=0.5)
    # PESQ of this pair crashes the pesq package (then counted) or gives a score.
    for metric in ("pesq_wb", "pesq_nb", "csig"):
        assert (row[metric] is None and sum(failures[metric].values()) == 1) or 1 <= row[
            metric
        ] <= 5, metric
