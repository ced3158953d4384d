import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def arctic_example_path():
    """Path of the CMU ARCTIC utterance inside the installed pysptk package.

    Found without importing pysptk, whose import needs pkg_resources (gone from
    recent setuptools).
    """
    import importlib.util

    spec = importlib.util.find_spec("pysptk")
    if spec is None:
        pytest.skip("pysptk (which ships the real speech sample) is not installed")
    folder = os.path.join(spec.submodule_search_locations[0], "example_audio_data")
    return os.path.join(folder, "arctic_a0007.wav")


@pytest.fixture(scope="session")
def speech_16k():
    """A real CMU ARCTIC utterance (shipped by pysptk), 16 kHz float32 mono."""
    import soundfile as sf

    samples, rate = sf.read(arctic_example_path(), dtype="float32")
    assert rate == 16000
    return samples


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def speech_folder(tmp_path_factory, speech_16k):
    """Six 4-second WAV files of the ARCTIC utterance, each rotated by 3000 samples more."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("speech")
    for i in range(6):
        sf.write(folder / f"utt{i}.wav", np.roll(speech_16k, 3000 * i), 16000)
    return folder


@pytest.fixture(scope="session")
def perturbed_restorer():
    """A small restorer with seeded random weights, moved off its identity start: its
    output differs from its input, so it shows whether and how audio went through it."""
    import keras

    from spectral_restore.models.restorer import build_restorer

    keras.utils.set_random_seed(7)  # the initial weights too, so tolerances hold for one known model
    model = build_restorer("small")
    rng = np.random.default_rng(7)
    for variable in model.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(0.0, 0.05, variable.shape).astype(np.float32))
    return model
