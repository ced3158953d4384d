"""Quality and speed of host-side resamplers for restoring files.

Candidates: the project's ``keras.ops`` polyphase resampler (``audio_io.resample``,
what ``restore`` used before reading in blocks), the same Kaiser filter through
``scipy.signal.resample_poly`` (``audio_io.resample_numpy``), and libsoxr through
``python-soxr`` at its ``HQ`` and ``VHQ`` settings, whole and streamed in blocks.

Quality, for each rate pair (the oracle is the analytic signal at the output rate,
samples within 50 ms of either end left out):
- passband error: one sine at a time at frequencies up to 90% (and 95%) of the lower
  Nyquist frequency; the worst ``rms(out - ideal) / rms(ideal)`` in dB;
- alias rejection (downsampling only): sines between 1.05x the output Nyquist
  frequency and the input's; the worst output level relative to the input in dB;
- error against ``scipy.signal.resample`` (FFT interpolation, exact for a periodic
  band-limited signal) on 2 s of periodic noise band-limited to 90% of the lower Nyquist;
- streaming: the largest difference between block-wise (1 s blocks) and whole-signal use.

Speed: 60 s of stereo noise, 44.1 kHz -> 16 kHz and back; median wall time of three
runs, and the real-time factor (time / audio duration). The ``keras.ops`` resampler
gathers ``[outputs, taps]`` and is timed on 10 s instead (memory), scaled to 60 s.

Run: python benchmarks/host_resampler.py
Writes benchmarks/results/host_resampler.json and prints a Markdown table.
"""

import json
import math
import os
import time

import numpy as np
import scipy.signal
import soxr

from spectral_restore import audio_io

HERE = os.path.dirname(os.path.abspath(__file__))
PAIRS = ((44100, 16000), (48000, 16000), (16000, 44100), (16000, 48000), (22050, 16000))
EDGE_SECONDS = 0.05
BLOCK_SECONDS = 1.0


def keras_ops(x, from_rate, to_rate):
    return np.asarray(audio_io.resample(x.astype(np.float32), from_rate, to_rate), np.float64)


def scipy_kaiser(x, from_rate, to_rate):
    return audio_io.resample_numpy(x, from_rate, to_rate)


def soxr_whole(quality):
    def run(x, from_rate, to_rate):
        return soxr.resample(x.T.copy(order="C"), from_rate, to_rate, quality=quality).T

    return run


def soxr_blocks(quality):
    def run(x, from_rate, to_rate):
        stream = soxr.ResampleStream(
            from_rate, to_rate, x.shape[0], dtype="float64", quality=quality
        )
        block = int(BLOCK_SECONDS * from_rate)
        pieces = [
            stream.resample_chunk(
                np.ascontiguousarray(x[:, start : start + block].T),
                last=start + block >= x.shape[1],
            )
            for start in range(0, x.shape[1], block)
        ]
        return np.concatenate(pieces).T

    return run


CANDIDATES = {
    "keras.ops polyphase (Kaiser 5, 10 zeros)": keras_ops,
    "scipy resample_poly (same filter)": scipy_kaiser,
    "soxr HQ": soxr_whole("HQ"),
    "soxr VHQ": soxr_whole("VHQ"),
    "soxr HQ, 1 s blocks": soxr_blocks("HQ"),
}


def interior(y, rate):
    edge = int(EDGE_SECONDS * rate)
    return slice(edge, y.shape[-1] - edge)


def level_db(ratio):
    return float(20 * np.log10(max(ratio, 1e-12)))


def sine(frequency, rate, seconds=0.5, phase=0.3):
    return np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate + phase)[None]


def passband_error_db(run, from_rate, to_rate, fraction):
    nyquist = min(from_rate, to_rate) / 2
    worst = 0.0
    for frequency in np.linspace(50, fraction * nyquist, 24):
        out = run(sine(frequency, from_rate), from_rate, to_rate)
        ideal = sine(frequency, to_rate)
        inside = interior(ideal, to_rate)
        count = min(out.shape[-1], ideal.shape[-1])
        error = out[:, :count][:, inside] - ideal[:, :count][:, inside]
        worst = max(worst, np.sqrt(np.mean(error**2)) / np.sqrt(np.mean(ideal[:, inside] ** 2)))
    return level_db(worst)


def alias_rejection_db(run, from_rate, to_rate):
    if to_rate >= from_rate:
        return None
    worst = 0.0
    for frequency in np.linspace(1.05 * to_rate / 2, 0.99 * from_rate / 2, 24):
        x = sine(frequency, from_rate)
        out = run(x, from_rate, to_rate)
        worst = max(
            worst, np.sqrt(np.mean(out[:, interior(out, to_rate)] ** 2)) / np.sqrt(np.mean(x**2))
        )
    return level_db(worst)


def fft_oracle_error(run, from_rate, to_rate):
    rng = np.random.default_rng(0)
    length = 2 * from_rate
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length, 1 / from_rate)
    spectrum[frequencies > 0.9 * min(from_rate, to_rate) / 2] = 0
    x = np.fft.irfft(spectrum, length)
    x = (0.5 * x / np.max(np.abs(x)))[None]
    ideal = scipy.signal.resample(x, length * to_rate // from_rate, axis=-1)
    out = run(x, from_rate, to_rate)
    count = min(out.shape[-1], ideal.shape[-1])
    inside = interior(ideal[:, :count], to_rate)
    return float(np.max(np.abs(out[:, :count][:, inside] - ideal[:, :count][:, inside])))


def seconds_for(run, x, from_rate, to_rate, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x, from_rate, to_rate)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    results = {"pairs": {}, "speed": {}}
    for from_rate, to_rate in PAIRS:
        key = f"{from_rate}->{to_rate}"
        results["pairs"][key] = {}
        for name, run in CANDIDATES.items():
            results["pairs"][key][name] = {
                "passband_error_db_90": passband_error_db(run, from_rate, to_rate, 0.9),
                "passband_error_db_95": passband_error_db(run, from_rate, to_rate, 0.95),
                "alias_rejection_db": alias_rejection_db(run, from_rate, to_rate),
                "fft_oracle_max_error": fft_oracle_error(run, from_rate, to_rate),
            }
        noise = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 5 * from_rate))
        whole = soxr_whole("HQ")(noise, from_rate, to_rate)
        blocks = soxr_blocks("HQ")(noise, from_rate, to_rate)
        results["pairs"][key]["soxr HQ blocks vs whole"] = {
            "lengths": [
                int(whole.shape[-1]),
                int(blocks.shape[-1]),
                math.ceil(noise.shape[-1] * to_rate / from_rate),
            ],
            "max_difference": float(
                np.max(np.abs(whole[:, : blocks.shape[-1]] - blocks[:, : whole.shape[-1]]))
            ),
        }
    rng = np.random.default_rng(2)
    for from_rate, to_rate in ((44100, 16000), (16000, 44100)):
        key = f"{from_rate}->{to_rate}, 60 s stereo"
        results["speed"][key] = {}
        for name, run in CANDIDATES.items():
            seconds = 10 if run is keras_ops else 60
            x = rng.uniform(-0.5, 0.5, (2, seconds * from_rate))
            elapsed = seconds_for(run, x, from_rate, to_rate) * 60 / seconds
            results["speed"][key][name] = {"seconds": elapsed, "rtf": elapsed / 60}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "host_resampler.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(
        "| rate pair | resampler | passband error <= 0.90 / 0.95 Nyquist (dB) | alias rejection (dB) "
        "| max error vs FFT oracle |"
    )
    print("|---|---|---|---|---|")
    for key, row in results["pairs"].items():
        for name, values in row.items():
            if "passband_error_db_90" not in values:
                continue
            alias = (
                "-"
                if values["alias_rejection_db"] is None
                else f"{values['alias_rejection_db']:.1f}"
            )
            print(
                f"| {key} | {name} | {values['passband_error_db_90']:.1f} / {values['passband_error_db_95']:.1f} "
                f"| {alias} | {values['fft_oracle_max_error']:.1e} |"
            )
    print()
    for key, row in results["pairs"].items():
        print(key, "soxr HQ blocks vs whole:", row["soxr HQ blocks vs whole"])
    print()
    print("| direction | resampler | seconds for 60 s stereo | RTF |")
    print("|---|---|---|---|")
    for key, row in results["speed"].items():
        for name, values in row.items():
            print(f"| {key} | {name} | {values['seconds']:.2f} | {values['rtf']:.4f} |")


if __name__ == "__main__":
    main()
