import shutil

import numpy as np
import pytest

from spectral_restore.data.speech import SynthesisError, synthesize


@pytest.mark.parametrize(
    "engine,voice", [("espeak-ng", "en-us"), ("espeak-ng", "de+f3"), ("flite", "slt")]
)
def test_synthesize_gives_16k_speech(engine, voice):
    if shutil.which(engine) is None:
        pytest.skip(f"{engine} is not installed (tests/run_tests.sh installs it)")
    x = synthesize("Hello world, this is a test.", voice=voice, engine=engine)
    assert x.dtype == np.float32
    assert 0.8 * 16000 < len(x) < 5 * 16000
    assert 0.05 < np.max(np.abs(x)) <= 1.0
    # Speech has most of its energy below 4 kHz.
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    assert spectrum[freqs < 4000].sum() > 0.7 * spectrum.sum()


def test_synthesize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="text"):
        synthesize("   ")
    with pytest.raises(ValueError, match="engine"):
        synthesize("hi", engine="say")


@pytest.mark.parametrize("engine", ["flite", "espeak-ng"])
def test_unknown_voice_is_reported(engine):
    if shutil.which(engine) is None:
        pytest.skip(f"{engine} is not installed")
    with pytest.raises(SynthesisError, match=f"{engine}.*no_such_voice"):
        synthesize("hi", voice="no_such_voice", engine=engine)
