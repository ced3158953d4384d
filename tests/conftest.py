import fnmatch
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

# CI sets this to a file of the skips its stage expects (tests/allowed_skips/); any
# other skip then fails the run, so a missing optional dependency cannot pass silently.
ALLOWED_SKIPS_VARIABLE = "SPECTRAL_RESTORE_ALLOWED_SKIPS"
ALLOWED_SKIPS = pytest.StashKey[list]()


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


def read_allowed_skips(path):
    """``[(nodeid pattern, reason)]`` from an allowlist: one ``PATTERN | REASON`` a line
    (``fnmatch`` patterns on pytest node ids), ``#`` comments and blank lines ignored.
    Every entry must say why the skip is expected."""
    if not os.path.isfile(path):
        raise pytest.UsageError(f"{ALLOWED_SKIPS_VARIABLE}={path!r} is not a file")
    entries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, _, reason = (part.strip() for part in line.partition("|"))
            if not pattern or not reason:
                raise pytest.UsageError(
                    f"{path}:{number}: expected 'NODEID_PATTERN | REASON'. Received {line!r}"
                )
            entries.append((pattern, reason))
    return entries


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "every_backend: backend-neutral test; a TensorFlow run repeats it under JAX through the "
        "rerun_under_jax fixture, a JAX run runs it natively",
    )
    path = os.environ.get(ALLOWED_SKIPS_VARIABLE)
    config.stash[ALLOWED_SKIPS] = None if not path else read_allowed_skips(path)


def pytest_sessionstart(session):
    if (
        session.config.stash[ALLOWED_SKIPS] is not None
        and session.config.pluginmanager.get_plugin("terminalreporter") is None
    ):
        raise pytest.UsageError(
            f"{ALLOWED_SKIPS_VARIABLE} reads the terminal reporter's skips: drop -p no:terminal"
        )


def skipped_tests(config):
    """``[(nodeid, reason)]`` of every test and collector skipped (or xfailed) in this
    run, under every test path, from the terminal reporter's records."""
    stats = config.pluginmanager.get_plugin("terminalreporter").stats
    skipped = []
    for report in stats.get("skipped", []) + stats.get("xfailed", []):
        if hasattr(report, "wasxfail"):
            reason = f"xfail: {report.wasxfail}"
        elif isinstance(report.longrepr, tuple):
            reason = report.longrepr[2]
        else:
            reason = str(report.longrepr)
        if (report.nodeid, reason) not in skipped:  # a module can be reported more than once
            skipped.append((report.nodeid, reason))
    return skipped


def unexpected_skips(config):
    """The skips of this run that no allowlist entry matches: ``[(nodeid, reason)]``."""
    allowed = config.stash[ALLOWED_SKIPS]
    return [
        (nodeid, reason)
        for nodeid, reason in skipped_tests(config)
        if not any(fnmatch.fnmatchcase(nodeid, pattern) for pattern, _ in allowed)
    ]


def pytest_sessionfinish(session, exitstatus):
    if session.config.stash[ALLOWED_SKIPS] is not None and unexpected_skips(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.stash[ALLOWED_SKIPS] is None:
        return
    unexpected = unexpected_skips(config)
    terminalreporter.section("skips against " + os.environ[ALLOWED_SKIPS_VARIABLE])
    for nodeid, reason in skipped_tests(config):
        mark = "UNEXPECTED" if (nodeid, reason) in unexpected else "allowed"
        terminalreporter.write_line(f"{mark}: {nodeid}: {reason}")
    if unexpected:
        terminalreporter.write_line(
            f"{len(unexpected)} skip(s) not on the allowlist: the run fails", red=True, bold=True
        )


@pytest.fixture
def rerun_under_jax(request):
    """Runs the requesting file's ``every_backend`` tests again under
    ``KERAS_BACKEND=jax`` (CPU), or under the backend named by ``run(backend=...)``
    (e.g. "torch"), in a subprocess, keeping this run's marker selection (``large``
    ones only when this run includes them); fails with the subprocess's report when
    any of them fails. Skipped when the active backend is already JAX (they ran
    natively here) or when jax (or the named backend's package) is not installed."""
    import subprocess
    import sys

    import keras

    if keras.backend.backend() == "jax":
        pytest.skip("the every_backend tests already ran natively under JAX")
    pytest.importorskip("jax", reason="jax is in the test extras; CI installs it")
    selection = request.config.getoption("markexpr") or "not large"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(request.path),
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        f"every_backend and ({selection})",
    ]

    def run(timeout=1800, backend="jax"):
        if backend != "jax":
            pytest.importorskip(
                backend, reason=f"{backend} is in the test extras (peers); CI installs it"
            )
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
        # The rerun's skips are by design (TensorFlow-only cases, the rerun trigger
        # itself); missing optional packages already show as skips in this run.
        env.pop(ALLOWED_SKIPS_VARIABLE, None)
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=str(request.config.rootpath),
            check=False,
        )
        assert result.returncode == 0, (
            f"under {backend}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        )
        return result.stdout

    return run


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

    keras.utils.set_random_seed(
        7
    )  # the initial weights too, so tolerances hold for one known model
    model = build_restorer("small")
    rng = np.random.default_rng(7)
    for variable in model.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(0.0, 0.05, variable.shape).astype(np.float32))
    return model


@pytest.fixture(scope="session")
def speech_pairs(tmp_path_factory, speech_16k):
    """A folder pair of three recorded damage kinds (tests/recorded_pairs.py):
    ``{"damaged": DIR, "clean": DIR}``."""
    from recorded_pairs import write_pairs

    return write_pairs(str(tmp_path_factory.mktemp("pairs")), speech_16k)
