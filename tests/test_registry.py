import os
import subprocess
import sys

import numpy as np
import pytest

from spectral_restore.models import ARCHITECTURES, build_model, presets
from spectral_restore.models.conformer import MagnitudePhaseConformer
from spectral_restore.models.frontend import SpectralModel
from spectral_restore.models.restorer import SpectralRestorer
from training.config import build_loss, load_config


def test_the_registered_architectures_and_their_presets():
    assert ARCHITECTURES == {"crn": SpectralRestorer, "conformer": MagnitudePhaseConformer}
    assert presets("crn") == presets("conformer") == ["base", "small"]


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_keeps_the_contract_of_a_spectral_model(architecture):
    """What adding a model must give: a SpectralModel whose presets all name the same
    hyperparameters, each stored in its config, and a built small preset."""
    cls = ARCHITECTURES[architecture]
    assert issubclass(cls, SpectralModel)
    names = [set(settings) for settings in cls.PRESETS.values()]
    assert all(n == names[0] for n in names)
    model = build_model(architecture, "small")
    assert type(model) is cls and model.built and model.preset == "small"
    config = model.get_config()
    assert names[0] <= set(config)
    assert {name: config[name] for name in names[0]} == {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in cls.PRESETS["small"].items()
    }
    x = np.random.default_rng(0).normal(0.0, 0.1, (2, 3001)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), x, atol=1e-3)  # both start as the identity


def test_overrides_reach_the_model():
    model = build_model("conformer", "small", num_blocks=1, sample_rate=8000, name="tiny")
    assert (model.num_blocks, model.sample_rate, model.name) == (1, 8000, "tiny")
    assert len(model.blocks) == 1
    assert model.count_params() < build_model("conformer", "small").count_params()
    crn = build_model("crn", "small", recurrent_units=32)
    assert crn.recurrent_units == 32


def test_unknown_names_are_value_errors_listing_the_known_ones():
    with pytest.raises(
        ValueError, match=r"Unknown `architecture` 'transformer'; known: \['conformer', 'crn'\]"
    ):
        build_model("transformer", "small")
    with pytest.raises(
        ValueError,
        match=r"Unknown `preset` 'huge' for architecture 'conformer'; known: \['base', 'small'\]",
    ):
        build_model("conformer", "huge")
    with pytest.raises(ValueError, match="architecture"):
        presets("rnn")
    with pytest.raises(ValueError, match="no_such_argument"):
        build_model("crn", "small", no_such_argument=1)


def test_the_config_chooses_the_architecture():
    from training.train import build_model as build_for_training

    assert load_config()["model"]["architecture"] == "crn"
    for architecture, cls in ARCHITECTURES.items():
        config = load_config("small.yaml", [f"model.architecture={architecture}"])
        model = build_for_training(config, build_loss(config["loss"]))
        assert type(model) is cls and model.preset == "small"
    with pytest.raises(ValueError, match="known"):
        config = load_config("small.yaml", ["model.architecture=transformer"])
        build_for_training(config, build_loss(config["loss"]))


LOAD_SCRIPT = r"""
import sys
import numpy as np
from spectral_restore.inference import load_keras_model
model = load_keras_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model(x)))
print(type(model).__name__)
"""


@pytest.mark.large
def test_a_saved_conformer_loads_in_a_fresh_process_through_the_export_loader(tmp_path):
    """Loading needs every architecture registered: the export loader imports the registry."""
    model = build_model("conformer", "small")
    rng = np.random.default_rng(5)
    for variable in model.trainable_variables:
        variable.assign(
            np.asarray(variable) + rng.normal(0.0, 0.05, variable.shape).astype(np.float32)
        )
    model.save(tmp_path / "model.keras")
    x = rng.normal(0.0, 0.1, (1, 4000)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            str(tmp_path / "model.keras"),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "MagnitudePhaseConformer"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(model(x)), atol=1e-6)
