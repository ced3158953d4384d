"""DNSMOS P.835 (SIG, BAK, OVRL) through the optional ``speechmos`` package.

C. K. A. Reddy, V. Gopal and R. Cutler, "DNSMOS P.835: a non-intrusive perceptual
objective speech quality metric to evaluate noise suppressors", ICASSP 2022. The
``speechmos`` wheel (Microsoft's packaging of the DNS Challenge models) ships the
ONNX models, so it works offline; it imports ``onnxruntime``, ``librosa`` and
``requests`` without declaring them: ``pip install spectral-restore[dnsmos]``
installs all four. It scores 9.01 s windows at a 1 s hop (shorter clips are
repeated up to 9.01 s) and averages them; input must be 16 kHz in [-1, 1].
"""

import importlib.util

import numpy as np

from spectral_restore.audio_io import resample_numpy

DNSMOS_RATE = 16000
DNSMOS_MODULES = ("speechmos", "onnxruntime", "librosa", "requests")


def dnsmos_unavailable_reason():
    """None when DNSMOS can run, else why not (a missing module, named)."""
    for module in DNSMOS_MODULES:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'spectral-restore[dnsmos]')"
    return None


def dnsmos(estimate, sample_rate):
    """Non-intrusive DNSMOS P.835 ratings of one waveform.

    Args:
        estimate: 1-D float array, any length.
        sample_rate: int. Resampled to 16 kHz when different (with
            :func:`spectral_restore.audio_io.resample_numpy`), then limited to
            [-1, 1] as a 16-bit file of it would be (speechmos rejects larger values).

    Returns:
        dict with "sig", "bak", "ovrl" (1-5, the P.835 polynomial-mapped scores).
    """
    from speechmos import dnsmos as speechmos_dnsmos

    estimate = np.asarray(estimate, dtype=np.float64)
    if estimate.ndim != 1:
        raise ValueError(f"`estimate` must be a 1-D waveform; received shape {estimate.shape}")
    audio = np.clip(resample_numpy(estimate, sample_rate, DNSMOS_RATE), -1.0, 1.0).astype(
        np.float32
    )
    scores = speechmos_dnsmos.run(audio, DNSMOS_RATE)
    return {
        "sig": float(scores["sig_mos"]),
        "bak": float(scores["bak_mos"]),
        "ovrl": float(scores["ovrl_mos"]),
    }
