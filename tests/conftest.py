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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "every_backend: backend-neutral test; a TensorFlow run repeats it under JAX through the "
        "rerun_under_jax fixture, a JAX run runs it natively",
    )


@pytest.fixture
def rerun_under_jax(request):
    """Runs the requesting file's ``every_backend`` tests again under
    ``KERAS_BACKEND=jax`` (CPU) in a subprocess, keeping this run's marker
    selection (``large`` ones only when this run includes them); fails with the
    subprocess's report when any of them fails. Skipped when the active backend is
    already JAX (they ran natively here) or when jax is not installed."""
    import subprocess
    import sys

    import keras

    if keras.backend.backend() == "jax":
        pytest.skip("the every_backend tests already ran natively under JAX")
    pytest.importorskip("jax", reason="jax is in the test extras; CI installs it")
    selection = request.config.getoption("markexpr") or "not large"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "pytest", str(request.path), "-q", "-p", "no:cacheprovider",
               "-m", f"every_backend and ({selection})"]

    def run(timeout=1800):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                                cwd=str(request.config.rootpath), check=False)
        assert result.returncode == 0, f"under JAX:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    return run
