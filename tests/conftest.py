import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def speech_16k():
    """A real CMU ARCTIC utterance (shipped by pysptk), 16 kHz float32 mono."""
    pysptk = pytest.importorskip("pysptk", reason="pysptk ships the real speech sample")
    import soundfile as sf

    samples, rate = sf.read(pysptk.util.example_audio_file(), dtype="float32")
    assert rate == 16000
    return samples


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
