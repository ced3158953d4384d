"""A tiny folder pair of recorded damage for the tests of both data paths and training:
three clean utterances made from the CMU ARCTIC sample (as spoken, reversed, 1.25x
faster: three waveforms no crop of one is found in another) and their damaged
recordings made with numpy/scipy, each a different kind:

- ``noise``: white noise at 5 dB SNR, both sides 16 kHz;
- ``clipping``: clipped at 30 % of the peak, the clean side written at 44.1 kHz;
- ``sub/lowpass``: an 8th-order Butterworth lowpass at 3 kHz, the damaged side
  written at 8 kHz as FLAC (``damaged/sub/lowpass.flac`` pairs with
  ``clean/sub/lowpass.wav``).

:func:`expected_pairs` reads the files back independently (soundfile and
``scipy.signal.resample_poly``), and :func:`assert_aligned_crops` checks that a batch
holds, example by example, the same crop of both sides of one pair.
"""

import os

import numpy as np
import scipy.signal
import soundfile as sf

RATE = 16000
# Written file: (damaged rate, clean rate).
RATES = {"noise": (16000, 16000), "clipping": (16000, 44100), "sub/lowpass": (8000, 16000)}
EXTENSIONS = {
    "noise": (".wav", ".wav"),
    "clipping": (".wav", ".wav"),
    "sub/lowpass": (".flac", ".wav"),
}


def _resample(samples, from_rate, to_rate):
    divisor = np.gcd(from_rate, to_rate)
    return scipy.signal.resample_poly(samples, to_rate // divisor, from_rate // divisor)


def recorded_damage(speech):
    """``{name: (damaged, clean)}`` at 16 kHz, before writing."""
    rng = np.random.default_rng(15)
    speech = 0.9 * speech / np.max(np.abs(speech))
    clean = {
        "noise": speech,
        "clipping": speech[::-1].copy(),
        "sub/lowpass": _resample(speech, 5, 4),
    }
    noise = rng.standard_normal(len(speech)) * np.sqrt(np.mean(speech**2) / 10 ** (5 / 10))
    noisy = clean["noise"] + noise
    lowpass = scipy.signal.sosfilt(
        scipy.signal.butter(8, 3000, fs=RATE, output="sos"), clean["sub/lowpass"]
    )
    peak = 0.3 * np.max(np.abs(clean["clipping"]))
    return {
        "noise": (noisy / np.max(np.abs(noisy)) * 0.9, clean["noise"]),
        "clipping": (np.clip(clean["clipping"], -peak, peak), clean["clipping"]),
        "sub/lowpass": (lowpass, clean["sub/lowpass"]),
    }


def write_pairs(root, speech):
    """Writes the folder pair under ``root`` (``damaged/`` and ``clean/``); returns
    ``{"damaged": DIR, "clean": DIR}``."""
    for name, sides in recorded_damage(speech).items():
        for side, samples, rate, extension in zip(
            ("damaged", "clean"), sides, RATES[name], EXTENSIONS[name]
        ):
            path = os.path.join(root, side, name + extension)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sf.write(path, _resample(samples, RATE, rate).astype(np.float32), rate)
    return {"damaged": os.path.join(root, "damaged"), "clean": os.path.join(root, "clean")}


def expected_pairs(folders):
    """``{name: (damaged, clean)}`` read back from the files with soundfile,
    resampled to 16 kHz by ``scipy.signal.resample_poly`` and trimmed to the shorter
    side: what the data paths must yield, found without them."""
    pairs = {}
    for name in RATES:
        damaged, clean = (
            _resample(
                sf.read(os.path.join(folders[side], name + extension), dtype="float32")[0].astype(
                    np.float64
                ),
                rate,
                RATE,
            )
            for side, rate, extension in zip(("damaged", "clean"), RATES[name], EXTENSIONS[name])
        )
        length = min(len(damaged), len(clean))
        pairs[name] = damaged[:length], clean[:length]
    return pairs


def locate(crop, expected):
    """``(name, start)`` of the clean side whose stretch correlates best with
    ``crop`` (normalised, so a level gain does not matter)."""
    best = (-np.inf, None, None)
    for name, (_, clean) in expected.items():
        products = scipy.signal.correlate(clean, crop, mode="valid")
        energies = np.convolve(clean**2, np.ones(len(crop)), mode="valid")
        scores = products / np.sqrt(
            np.maximum(energies, 1e-12) * np.sum(crop.astype(np.float64) ** 2)
        )
        start = int(np.argmax(scores))
        if scores[start] > best[0]:
            best = (scores[start], name, start)
    return best[1], best[2]


def assert_aligned_crops(damaged_batch, clean_batch, expected, atol=2e-5):
    """Each example of the batch is one stretch ``[start, start + length)`` of one
    pair, clean and damaged alike, both scaled by one gain; returns the pair names."""
    names = []
    for damaged, clean in zip(
        np.asarray(damaged_batch, np.float64), np.asarray(clean_batch, np.float64)
    ):
        name, start = locate(clean, expected)
        reference_damaged, reference_clean = (
            side[start : start + len(clean)] for side in expected[name]
        )
        gain = np.dot(clean, reference_clean) / np.dot(reference_clean, reference_clean)
        np.testing.assert_allclose(
            clean, gain * reference_clean, atol=atol * max(gain, 1.0), err_msg=name
        )
        np.testing.assert_allclose(
            damaged, gain * reference_damaged, atol=atol * max(gain, 1.0), err_msg=name
        )
        names.append(name)
    return names


def write_problem_pairs(root, speech):
    """The folder pair of :func:`write_pairs` plus a file of each kind of trouble;
    returns the folders and ``{file name: reason text}`` of the skips they must cause:

    - ``orphan.wav``: damaged, no clean partner;
    - ``long.wav``: the damaged side 0.2 s shorter than the clean one;
    - ``corrupt.wav``: the damaged side is not audio;
    - ``near.wav``: the damaged side 0.01 s shorter, within the 0.05 s tolerance, so
      it pairs (trimmed) and is not among the skips.
    """
    folders = write_pairs(root, speech)
    take = speech[:24000]
    sf.write(os.path.join(folders["damaged"], "orphan.wav"), take, RATE)
    for name, cut in (("long.wav", 3200), ("near.wav", 160)):
        sf.write(os.path.join(folders["clean"], name), take, RATE)
        sf.write(os.path.join(folders["damaged"], name), take[: len(take) - cut], RATE)
    sf.write(os.path.join(folders["clean"], "corrupt.wav"), take, RATE)
    with open(os.path.join(folders["damaged"], "corrupt.wav"), "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    skips = {
        "orphan.wav": "no clean partner",
        "long.wav": "lengths differ by 0.200 s",
        "corrupt.wav": "could not decode",
    }
    return folders, skips


def check_skips(stats, folders, skips):
    """``stats`` counted exactly ``skips`` (file name: reason text), each once, under the damaged file's path."""
    assert stats.files_skipped == len(skips) == len(stats.skipped), stats.summary()
    reasons = dict(stats.skipped)
    for name, reason in skips.items():
        path = os.path.join(folders["damaged"], name)
        assert path in reasons and reason in reasons[path], (path, stats.summary())
