import math

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from spectral_restore.audio_io import resample_numpy
from spectral_restore.evaluation import composite as C

# pysepm's values (the Python port of Loizou's composite.m, github.com/schmiph2/pysepm
# at 7ef88af, numpy 1.26, pesq 0.0.4) on the pairs _recorded_pairs builds, with
# machine epsilon added to both sides as composite.m does. Recorded by
# benchmarks/composite_reference.py (its "test_pairs"), which builds the same pairs.
RECORDED = {
    "arctic_white_5db": {
        "csig": 1.0,
        "cbak": 1.8572338485032829,
        "covl": 1.0,
        "pesq": 1.0580377578735352,
        "llr": 3.0798843940830722,
        "wss": 31.15389503070601,
        "segsnr": -1.022713246751186,
    },
    "arctic_white_25db": {
        "csig": 2.97420991896696,
        "cbak": 3.4264949957532744,
        "covl": 2.4429737792471946,
        "pesq": 1.8501026630401611,
        "llr": 1.1088956175038882,
        "wss": 10.372044048306279,
        "segsnr": 15.567463986638437,
    },
    "arctic_lowpass_3khz": {
        "csig": 1.0,
        "cbak": 4.815613913991653,
        "covl": 1.0,
        "pesq": 3.614558219909668,
        "llr": 10.674477453716799,
        "wss": 8.25842051206452,
        "segsnr": 23.994667118401317,
    },
    "arctic_8khz_white_5db": {
        "csig": 2.2087288068392055,
        "cbak": 2.444769223008529,
        "covl": 2.0991500274081543,
        "pesq": 2.027520249542782,
        "llr": 1.7745770189524395,
        "wss": 31.202905681447994,
        "segsnr": 0.952934658685959,
    },
}
TOLERANCE = 1e-6
# Above 3 kHz the low-passed side is ~100 dB down, so its order-16 LPC is near
# singular and each frame's LLR depends on rounding (the two implementations sum
# the autocorrelation in different orders): 0.018 apart here; CSIG/COVL clip at 1.
LOOSER = {("arctic_lowpass_3khz", "llr"): 0.05}


def _recorded_pairs(speech):
    """The pairs of RECORDED (benchmarks/composite_reference.py: test_pairs)."""
    speech = speech.astype(np.float64)
    noise = np.random.default_rng(0).standard_normal(len(speech))
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (5 / 10))
    lowpassed = scipy.signal.sosfiltfilt(
        scipy.signal.butter(8, 3000, fs=16000, output="sos"), speech
    )
    return {
        "arctic_white_5db": (speech, speech + noise, 16000),
        "arctic_white_25db": (speech, speech + 0.1 * noise, 16000),
        "arctic_lowpass_3khz": (speech, lowpassed, 16000),
        "arctic_8khz_white_5db": (
            scipy.signal.resample_poly(speech, 1, 2),
            scipy.signal.resample_poly(speech + noise, 1, 2),
            8000,
        ),
    }


@pytest.mark.parametrize("pair", sorted(RECORDED))
def test_composite_matches_the_recorded_reference(speech_16k, pair):
    clean, processed, rate = _recorded_pairs(speech_16k)[pair]
    ours = C.composite(clean, processed, rate)
    for measure, expected in RECORDED[pair].items():
        assert ours[measure] == pytest.approx(
            expected, abs=LOOSER.get((pair, measure), TOLERANCE)
        ), measure


def _hann(n):
    return 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, n + 1) / (n + 1)))


def _frames_by_hand(x, rate):
    """30 ms frames at a quarter hop, floor(L / hop - N / hop) of them (composite.m)."""
    n = round(0.03 * rate)
    hop = n // 4
    count = int(math.floor(len(x) / hop - n / hop))
    return [(x[i * hop : i * hop + n] + np.finfo(float).eps) * _hann(n) for i in range(count)]


def test_segmental_snr_by_hand(rng):
    clean = rng.standard_normal(16000)
    processed = clean + 0.3 * rng.standard_normal(16000) * np.linspace(0, 3, 16000)
    expected = np.mean(
        [
            np.clip(
                10
                * np.log10(
                    np.sum(c**2) / (np.sum((c - p) ** 2) + np.finfo(float).eps)
                    + np.finfo(float).eps
                ),
                -10,
                35,
            )
            for c, p in zip(_frames_by_hand(clean, 16000), _frames_by_hand(processed, 16000))
        ]
    )
    assert C.frame_measures(clean, processed, 16000, ("segsnr",))["segsnr"] == pytest.approx(
        expected, abs=1e-12
    )
    # Every frame has the same SNR: -6.02 dB for an inverted copy, +6.02 dB at half level;
    # 60 dB and -40 dB are clipped to the [-10, 35] dB limits.
    for processed, expected in (
        (-clean, -20 * np.log10(2)),
        (0.5 * clean, 20 * np.log10(2)),
        (1.001 * clean, 35.0),
        (clean + 100 * rng.standard_normal(16000), -10.0),
    ):
        assert C.frame_measures(clean, processed, 16000, ("segsnr",))["segsnr"] == pytest.approx(
            expected, abs=1e-9
        )


def test_llr_against_scipy_lpc(speech_16k, rng):
    """LLR per frame from scipy's Toeplitz solver (not Levinson's recursion), trimmed mean
    of the lowest round(0.95 N) frames."""
    clean = speech_16k.astype(np.float64)
    processed = clean + 0.02 * rng.standard_normal(len(clean))

    def predictor(frame):
        r = np.array([np.dot(frame[: len(frame) - k], frame[k:]) for k in range(17)])
        return r, np.concatenate([[1.0], -scipy.linalg.solve_toeplitz(r[:16], r[1:])])

    values = []
    for c, p in zip(_frames_by_hand(clean, 16000), _frames_by_hand(processed, 16000)):
        r, a_clean = predictor(c)
        _, a_processed = predictor(p)
        toeplitz = scipy.linalg.toeplitz(r)
        values.append(np.log(a_processed @ toeplitz @ a_processed / (a_clean @ toeplitz @ a_clean)))
    kept = np.sort(values)[: int(math.floor(0.95 * len(values) + 0.5))]
    assert C.frame_measures(clean, processed, 16000, ("llr",))["llr"] == pytest.approx(
        np.mean(kept), rel=1e-7
    )


def test_identical_and_rescaled_signals_are_undistorted(speech_16k):
    clean = speech_16k.astype(np.float64)
    assert C.frame_measures(clean, clean, 16000) == {"llr": 0.0, "wss": 0.0, "segsnr": 35.0}
    # LPC and spectral slopes ignore the gain.
    scaled = C.frame_measures(clean, 0.5 * clean, 16000, ("llr", "wss"))
    assert scaled["llr"] == pytest.approx(0.0, abs=1e-9) and scaled["wss"] == pytest.approx(
        0.0, abs=1e-9
    )


def test_composite_scores_follow_the_published_regressions():
    scores = C.composite_scores(pesq=2.5, llr=0.8, wss=40.0, segsnr=5.0)
    assert scores["csig"] == pytest.approx(3.093 - 1.029 * 0.8 + 0.603 * 2.5 - 0.009 * 40)
    assert scores["cbak"] == pytest.approx(1.634 + 0.478 * 2.5 - 0.007 * 40 + 0.063 * 5)
    assert scores["covl"] == pytest.approx(1.594 + 0.805 * 2.5 - 0.512 * 0.8 - 0.007 * 40)
    assert C.composite_scores(4.5, 0.0, 0.0, 35.0) == {"csig": 5.0, "cbak": 5.0, "covl": 5.0}
    assert C.composite_scores(1.0, 3.0, 90.0, -10.0) == {"csig": 1.0, "cbak": 1.0, "covl": 1.0}
    assert all(math.isnan(v) for v in C.composite_scores(math.nan, 0.5, 30.0, 5.0).values())


def test_pesq_variant_and_rates(speech_16k, rng):
    from pesq import pesq

    clean = speech_16k.astype(np.float64)
    noisy = clean + 0.02 * rng.standard_normal(len(clean))
    assert C.composite(clean, noisy, 16000)["pesq"] == pesq(16000, clean, noisy, "wb")
    narrow_clean, narrow_noisy = clean[::2].copy(), noisy[::2].copy()
    mos_lqo = pesq(8000, narrow_clean, narrow_noisy, "nb")
    raw = C.composite(narrow_clean, narrow_noisy, 8000)["pesq"]
    assert 0.999 + 4 / (1 + math.exp(-1.4945 * raw + 4.6607)) == pytest.approx(mos_lqo, abs=1e-12)
    # Any other rate is scored at 16 kHz.
    wide_clean, wide_noisy = (
        resample_numpy(clean, 16000, 48000),
        resample_numpy(noisy, 16000, 48000),
    )
    at_16k = C.composite(
        resample_numpy(wide_clean, 48000, 16000), resample_numpy(wide_noisy, 48000, 16000), 16000
    )
    assert C.composite(wide_clean, wide_noisy, 48000) == at_16k


def test_blocks_do_not_change_the_result(speech_16k, rng, monkeypatch):
    clean = speech_16k.astype(np.float64)
    noisy = clean + 0.05 * rng.standard_normal(len(clean))
    whole = C.frame_measures(clean, noisy, 16000)
    monkeypatch.setattr(C, "BLOCK_FRAMES", 37)
    assert C.frame_measures(clean, noisy, 16000) == pytest.approx(whole, rel=1e-12)


def test_short_silent_and_bad_input(speech_16k):
    short = C.frame_measures(speech_16k[:500], speech_16k[:500], 16000)
    assert all(math.isnan(v) for v in short.values())
    silent = C.composite(np.zeros(16000), speech_16k[:16000], 16000)
    assert math.isnan(silent["csig"]) and silent["pesq_failure"] == "NoUtterancesError"
    with pytest.raises(ValueError, match="differ in length"):
        C.frame_measures(speech_16k, speech_16k[:-1], 16000)
    with pytest.raises(ValueError, match="1-D"):
        C.frame_measures(speech_16k[None], speech_16k[None], 16000)
    with pytest.raises(ValueError, match="measures"):
        C.frame_measures(speech_16k, speech_16k, 16000, ("pesq",))
    with pytest.raises(ValueError, match="sample_rate"):
        C.frame_measures(speech_16k, speech_16k, 16000.0)
