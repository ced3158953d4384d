"""Perceptual frequency weightings and auditory band scales (numpy, computed once).

All curves are gains in dB as a function of frequency in Hz, normalised to 0 dB
at 1 kHz (K-weighting: its own BS.1770 normalisation, about +0.7 dB at 1 kHz).
"""

import numpy as np

# ISO 226:2003, Table 1: frequency (Hz), exponent alpha_f, magnitude of the linear
# transfer function L_U (dB) and threshold of hearing T_f (dB SPL).
ISO226_FREQUENCIES = np.array(
    [
        20,
        25,
        31.5,
        40,
        50,
        63,
        80,
        100,
        125,
        160,
        200,
        250,
        315,
        400,
        500,
        630,
        800,
        1000,
        1250,
        1600,
        2000,
        2500,
        3150,
        4000,
        5000,
        6300,
        8000,
        10000,
        12500,
    ],
    dtype=np.float64,
)
ISO226_ALPHA = np.array(
    [
        0.532,
        0.506,
        0.480,
        0.455,
        0.432,
        0.409,
        0.387,
        0.367,
        0.349,
        0.330,
        0.315,
        0.301,
        0.288,
        0.276,
        0.267,
        0.259,
        0.253,
        0.250,
        0.246,
        0.244,
        0.243,
        0.243,
        0.243,
        0.242,
        0.242,
        0.245,
        0.254,
        0.271,
        0.301,
    ]
)
ISO226_LU = np.array(
    [
        -31.6,
        -27.2,
        -23.0,
        -19.1,
        -15.9,
        -13.0,
        -10.3,
        -8.1,
        -6.2,
        -4.5,
        -3.1,
        -2.0,
        -1.1,
        -0.4,
        0.0,
        0.3,
        0.5,
        0.0,
        -2.7,
        -4.1,
        -1.0,
        1.7,
        2.5,
        1.2,
        -2.1,
        -7.1,
        -11.2,
        -10.7,
        -3.1,
    ]
)
ISO226_TF = np.array(
    [
        78.5,
        68.7,
        59.5,
        51.1,
        44.0,
        37.5,
        31.5,
        26.5,
        22.1,
        17.9,
        14.4,
        11.4,
        8.6,
        6.2,
        4.4,
        3.0,
        2.2,
        2.4,
        3.5,
        1.7,
        -1.3,
        -4.2,
        -6.0,
        -5.4,
        -1.5,
        6.0,
        12.6,
        13.9,
        12.3,
    ]
)

# ITU-R BS.1770-4 K-weighting at 48 kHz: high-shelf ("stage 1") and high-pass ("RLB").
BS1770_SHELF = (
    [1.53512485958697, -2.69169618940638, 1.19839281085285],
    [1.0, -1.69065929318241, 0.73248077421585],
)
BS1770_HIGHPASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])

WEIGHTINGS = ("a", "k", "iso226", "none")


def iso226_contour(phon, frequencies=None):
    """Equal-loudness contour of ISO 226:2003: SPL (dB) of a tone of ``phon`` loudness.

    Formula (ISO 226:2003, 4.1):
    ``A_f = 4.47e-3 (10^(0.025 L_N) - 1.15) + (0.4 * 10^((T_f + L_U)/10 - 9))^alpha_f``,
    ``L_p = (10 / alpha_f) log10(A_f) - L_U + 94``.

    Between the 29 tabled frequencies the SPL is interpolated linearly in
    log-frequency; below 20 Hz and above 12.5 kHz the edge values are held
    (the standard defines nothing there). Valid for 20-90 phon (80 above 4 kHz).

    Args:
        phon: float. Loudness level in phon.
        frequencies: array or None. Where to evaluate (Hz); None gives the table's.
    """
    if not 0.0 <= phon <= 100.0:
        raise ValueError(f"`phon` must be within [0, 100]. Received: phon={phon}")
    a_f = (
        4.47e-3 * (10.0 ** (0.025 * phon) - 1.15)
        + (0.4 * 10.0 ** ((ISO226_TF + ISO226_LU) / 10.0 - 9.0)) ** ISO226_ALPHA
    )
    spl = 10.0 / ISO226_ALPHA * np.log10(a_f) - ISO226_LU + 94.0
    if frequencies is None:
        return spl
    f = np.clip(np.asarray(frequencies, np.float64), ISO226_FREQUENCIES[0], ISO226_FREQUENCIES[-1])
    return np.interp(np.log(f), np.log(ISO226_FREQUENCIES), spl)


def a_weighting_db(frequencies):
    """A-weighting (IEC 61672-1) in dB.

    Formula: ``R_A(f) = 12194^2 f^4 / ((f^2 + 20.6^2) sqrt((f^2 + 107.7^2)(f^2 + 737.9^2)) (f^2 + 12194^2))``,
    ``A(f) = 20 log10 R_A(f) + 2.00``; -inf dB at DC is returned as -200 dB.
    """
    f2 = np.asarray(frequencies, np.float64) ** 2
    ra = (12194.0**2 * f2**2) / (
        (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    )
    return np.maximum(20.0 * np.log10(np.maximum(ra, 1e-20)) + 2.0, -200.0)


def k_weighting_db(frequencies):
    """K-weighting of ITU-R BS.1770-4 in dB: its two 48 kHz biquads' magnitude
    response at ``frequencies`` (held at the 24 kHz value above 24 kHz)."""
    f = np.minimum(np.asarray(frequencies, np.float64), 24000.0)
    z = np.exp(-1j * 2.0 * np.pi * f / 48000.0)
    response = np.ones_like(z)
    for b, a in (BS1770_SHELF, BS1770_HIGHPASS):
        response = response * (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)
    return np.maximum(20.0 * np.log10(np.maximum(np.abs(response), 1e-10)), -200.0)


def iso226_weighting_db(frequencies, phon=60.0):
    """Ear sensitivity from ISO 226:2003: ``phon - L_p(f, phon)`` dB, 0 dB at 1 kHz."""
    contour = iso226_contour(phon, frequencies)
    return float(iso226_contour(phon, [1000.0])[0]) - contour


def weighting_db(kind, frequencies, phon=60.0):
    """Dispatches to the A, K, ISO 226 or flat ("none") weighting."""
    if kind == "a":
        return a_weighting_db(frequencies)
    if kind == "k":
        return k_weighting_db(frequencies)
    if kind == "iso226":
        return iso226_weighting_db(frequencies, phon)
    if kind == "none":
        return np.zeros_like(np.asarray(frequencies, np.float64))
    raise ValueError(f"`weighting` must be one of {WEIGHTINGS}. Received: {kind!r}")


def bin_frequencies(sample_rate, fft_length):
    """Centre frequencies (Hz) of the ``fft_length // 2 + 1`` one-sided FFT bins."""
    return np.arange(fft_length // 2 + 1) * (sample_rate / fft_length)


def hz_to_erb_rate(frequencies):
    """ERB-rate (Cams), Glasberg & Moore (1990): ``21.4 log10(1 + 0.00437 f)``."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(frequencies, np.float64))


def erb_rate_to_hz(erbs):
    """Inverse of :func:`hz_to_erb_rate`."""
    return (10.0 ** (np.asarray(erbs, np.float64) / 21.4) - 1.0) / 0.00437
