import keras
import numpy as np
import pytest

from spectral_restore.losses import (
    CombinedLoss,
    LogSpectrogramLoss,
    MultiResolutionSTFTLoss,
    PhaseConsistencyLoss,
    SpectralConvergence,
    WaveformLoss,
    register_term,
)
from spectral_restore.losses.combined import TERM_FACTORIES


@pytest.fixture(scope="module")
def pair(speech_16k):
    rng = np.random.default_rng(9)
    clean = np.stack(
        [
            speech_16k[:8000],
            speech_16k[8000:16000],
            speech_16k[16000:24000],
            speech_16k[24000:32000],
        ]
    ).astype(np.float32)
    noisy = (clean + 0.05 * rng.standard_normal(clean.shape)).astype(np.float32)
    return clean, noisy


class ExplodingLoss(keras.losses.Loss):
    def call(self, y_true, y_pred):
        raise AssertionError("a zero-weight term was computed")


def test_weighted_sum_of_per_example_terms(pair):
    clean, noisy = pair
    parts = {
        "recon/log_mag": (LogSpectrogramLoss(), 1.0),
        "recon/sc": (SpectralConvergence(), 0.5),
        "time/l1": (WaveformLoss(), 0.2),
    }
    combined = CombinedLoss(parts, reduction="none")
    want = sum(w * np.asarray(loss.call(clean, noisy)) for loss, w in parts.values())
    np.testing.assert_allclose(np.asarray(combined(clean, noisy)), want, rtol=1e-5)
    terms = combined.compute_terms(clean, noisy)
    assert sorted(terms) == ["recon/log_mag", "recon/sc", "time/l1", "total"]
    np.testing.assert_allclose(
        np.asarray(terms["recon/sc"]),
        np.asarray(SpectralConvergence(reduction="none")(clean, noisy)),
        rtol=1e-6,
    )


def test_zero_weight_term_is_not_computed(pair):
    clean, noisy = pair
    combined = CombinedLoss({"recon/log_mag": 1.0, "adv/never": (ExplodingLoss(), 0.0)})
    assert np.isfinite(float(combined(clean, noisy)))
    assert [m.name for m in combined.term_metrics()] == ["recon/log_mag"]


def test_weight_only_terms_use_the_registered_defaults(pair):
    clean, noisy = pair
    combined = CombinedLoss({"recon/mrstft": 1.0}, reduction="none")
    np.testing.assert_allclose(
        np.asarray(combined(clean, noisy)),
        np.asarray(MultiResolutionSTFTLoss(reduction="none")(clean, noisy)),
        rtol=1e-6,
    )
    assert isinstance(TERM_FACTORIES["phase/consistency"](), PhaseConsistencyLoss)


@pytest.mark.parametrize(
    "terms,error,match",
    [
        ({"recon/logmag": 1.0}, ValueError, "not a known term"),
        ({"reconstruction/log_mag": 1.0}, ValueError, "Unknown loss term name"),
        ({"log_mag": 1.0}, ValueError, "Unknown loss term name"),
        ({"recon/log_mag": -1.0}, ValueError, "weight"),
        ({"recon/log_mag": (LogSpectrogramLoss(), "1")}, ValueError, "weight"),
        ({"recon/log_mag": (np.mean, 1.0)}, TypeError, "keras.losses.Loss"),
        (
            [("recon/sc", SpectralConvergence(), 1.0), ("recon/sc", SpectralConvergence(), 2.0)],
            ValueError,
            "Duplicate",
        ),
        ({}, ValueError, "empty"),
        ("recon/sc", TypeError, "dict"),
    ],
)
def test_bad_terms_raise(terms, error, match):
    with pytest.raises(error, match=match):
        CombinedLoss(terms)


def test_with_weights_and_unknown_overrides(pair):
    clean, noisy = pair
    combined = CombinedLoss({"recon/log_mag": 1.0, "recon/sc": 1.0}, reduction="none")
    reweighted = combined.with_weights({"recon/sc": 0.0})
    assert reweighted.weights == {"recon/log_mag": 1.0, "recon/sc": 0.0}
    np.testing.assert_allclose(
        np.asarray(reweighted(clean, noisy)),
        np.asarray(LogSpectrogramLoss(reduction="none")(clean, noisy)),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="Unknown loss term"):
        combined.with_weights({"recon/mse": 1.0})


def test_register_term():
    register_term("embed/test_term", WaveformLoss)
    try:
        assert isinstance(CombinedLoss({"embed/test_term": 1.0}).terms[0][1], WaveformLoss)
        with pytest.raises(ValueError, match="Unknown loss term name"):
            register_term("nofamily", WaveformLoss)
    finally:
        TERM_FACTORIES.pop("embed/test_term")


def tiny_model(samples):
    inputs = keras.Input((samples,))
    hidden = keras.layers.Reshape((samples, 1))(inputs)
    hidden = keras.layers.Conv1D(4, 9, padding="same", activation="tanh")(hidden)
    hidden = keras.layers.Conv1D(1, 9, padding="same")(hidden)
    return keras.Model(inputs, keras.layers.Reshape((samples,))(hidden))


def test_fit_logs_every_term_and_reloads(pair, tmp_path):
    clean, noisy = pair
    keras.utils.set_random_seed(0)
    model = tiny_model(clean.shape[1])
    loss = CombinedLoss(
        {"recon/log_mag": 1.0, "recon/sc": 0.5, "phase/anti_wrap": 0.3, "time/l1": 0.2}
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=loss.term_metrics())
    history = model.fit(noisy, clean, epochs=2, batch_size=2, verbose=0)
    for name in ["loss", "recon/log_mag", "recon/sc", "phase/anti_wrap", "time/l1"]:
        assert name in history.history and np.all(np.isfinite(history.history[name]))
    logs = model.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)
    estimate = model.predict(noisy, verbose=0)
    terms = loss.compute_terms(clean, estimate)
    for name in ["recon/log_mag", "recon/sc", "phase/anti_wrap", "time/l1"]:
        assert logs[name] == pytest.approx(float(np.mean(terms[name])), rel=1e-4)
    assert logs["loss"] == pytest.approx(float(np.mean(terms["total"])), rel=1e-4)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.loss, CombinedLoss) and reloaded.loss.weights == loss.weights
    again = reloaded.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)
    assert again["loss"] == pytest.approx(logs["loss"], rel=1e-5)
    assert again["phase/anti_wrap"] == pytest.approx(logs["phase/anti_wrap"], rel=1e-5)


def test_term_metric_from_a_serialized_loss_takes_its_name_and_value(pair):
    """A ``TermMetric`` rebuilt from a config holds the loss as a dict: its default
    name is the loss's, and it averages the loss's per-example values."""
    from spectral_restore.losses import TermMetric

    clean, noisy = pair
    loss = WaveformLoss(name="time_l1")
    metric = TermMetric(keras.saving.serialize_keras_object(loss))
    assert metric.name == "time_l1"
    metric.update_state(clean, noisy)
    expected = np.mean(np.asarray(loss.call(clean, noisy)))
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    rebuilt = TermMetric.from_config(metric.get_config())
    assert rebuilt.name == "time_l1" and isinstance(rebuilt.loss, WaveformLoss)
