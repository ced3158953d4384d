import numpy as np
import pytest
import scipy.signal

from spectral_restore import metrics


@pytest.fixture(scope="module")
def noisy_set(speech_16k):
    rng = np.random.default_rng(0)
    clean, noisy = [], []
    for snr in (-5.0, 0.0, 10.0, 25.0):
        noise = rng.standard_normal(len(speech_16k))
        noise *= np.sqrt(np.mean(speech_16k**2) / np.mean(noise**2) / 10 ** (snr / 10))
        clean.append(speech_16k)
        noisy.append(speech_16k + noise)
    return np.array(clean, np.float32), np.array(noisy, np.float32)


def test_stoi_matches_pystoi(noisy_set):
    pystoi = pytest.importorskip("pystoi", reason="pystoi is in the test extras")
    clean, noisy = noisy_set
    ours = metrics.stoi(clean, noisy, 16000)
    theirs = [pystoi.stoi(c, n, 16000) for c, n in zip(clean, noisy)]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert np.all(np.diff(ours) > 0)
    same_rate = metrics.stoi(clean[:1, ::2], noisy[:1, ::2], 8000)
    assert same_rate[0] == pytest.approx(pystoi.stoi(clean[0, ::2], noisy[0, ::2], 8000), abs=1e-6)
    assert np.isnan(metrics.stoi(clean[:1, :2000], noisy[:1, :2000], 16000)[0])


def test_pesq_matches_the_reference_and_reports_failures(noisy_set):
    from pesq import pesq

    clean, noisy = noisy_set
    result = metrics.pesq_score(clean, noisy, 16000, "wb")
    np.testing.assert_allclose(result.scores, [pesq(16000, c, n, "wb") for c, n in zip(clean, noisy)], atol=1e-6)
    assert result.failed == 0 and np.all(np.diff(result.scores) > 0)
    # Narrow band is scored at 8 kHz: 8 kHz input as it is, 16 kHz input resampled
    # (measured within 3e-7 of scoring scipy's resample_poly of it).
    clean_8k, noisy_8k = (scipy.signal.resample_poly(x.astype(np.float64), 1, 2, axis=1) for x in (clean, noisy))
    reference_nb = [pesq(8000, c, n, "nb") for c, n in zip(clean_8k, noisy_8k)]
    np.testing.assert_allclose(metrics.pesq_score(clean_8k, noisy_8k, 8000, "nb").scores, reference_nb, atol=1e-6)
    np.testing.assert_allclose(metrics.pesq_score(clean, noisy, 16000, "nb").scores, reference_nb, atol=1e-5)
    silent = np.zeros_like(clean[0])
    broken = metrics.pesq_score(np.stack([clean[0], silent, clean[0]]), np.stack([silent, clean[0], noisy[2]]), 16000, processes=2)
    assert np.isnan(broken.scores[0]) and np.isnan(broken.scores[1])
    assert broken.failures == {"ValueError": 1, "NoUtterancesError": 1}
    assert broken.scores[2] == pytest.approx(result.scores[2], abs=1e-6)
    short = metrics.pesq_score(clean[:1, :2000], clean[:1, :2000], 16000)
    assert short.failures == {"BufferTooShortError": 1} and np.isnan(short.nanmean())
    with pytest.raises(ValueError, match="mode"):
        metrics.pesq_score(clean, noisy, 16000, "swb")


def test_si_sdr_and_lsd(noisy_set):
    clean, noisy = noisy_set
    np.testing.assert_allclose(metrics.si_sdr(clean, noisy), [-5.0, 0.0, 10.0, 25.0], atol=0.1)
    # Scale invariance.
    np.testing.assert_allclose(metrics.si_sdr(clean, 3 * noisy), metrics.si_sdr(clean, noisy), atol=1e-6)
    lsd = metrics.log_spectral_distance(clean, noisy)
    assert np.all(np.diff(lsd) < 0)
    np.testing.assert_allclose(metrics.log_spectral_distance(clean, 2 * clean), 20 * np.log10(2), atol=1e-3)


def test_pesq_metric_in_evaluate_and_validation_callback_in_fit(noisy_set):
    """PESQMetric inside model.evaluate and ValidationPESQ inside fit give the
    reference PESQ of what the model outputs; a silent example is counted, not averaged."""
    import keras
    import tensorflow as tf

    clean, noisy = noisy_set
    clean, noisy = clean[:, :32000], noisy[:, :32000]
    model = keras.Sequential([keras.Input((32000,)), keras.layers.Rescaling(0.5)])
    model.compile(loss="mse", metrics=[metrics.PESQMetric(16000)])
    evaluated = model.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)
    expected = metrics.pesq_score(clean, 0.5 * noisy, 16000, processes=1).scores
    assert evaluated["pesq_wb"] == pytest.approx(expected.mean(), abs=1e-4)

    metric = metrics.PESQMetric(16000, "wb")
    metric.update_state(np.stack([clean[0], np.zeros_like(clean[0])]), np.stack([noisy[3], noisy[3]]))
    assert float(metric.result()) == pytest.approx(expected[3], abs=1e-4) and float(metric.failed) == 1.0
    assert np.isnan(float(metrics.PESQMetric().result()))
    rebuilt = metrics.PESQMetric.from_config(metrics.PESQMetric(8000, "nb", name="p").get_config())
    assert (rebuilt.sample_rate, rebuilt.mode, rebuilt.name) == (8000, "nb", "p")

    validation = tf.data.Dataset.from_tensor_slices((noisy, clean)).batch(2)
    callback = metrics.ValidationPESQ(validation, 16000, batches=2, processes=1)
    history = model.fit(noisy, clean, epochs=2, batch_size=4, verbose=0, callbacks=[callback])
    assert history.history["val_pesq_wb"][-1] == pytest.approx(expected.mean(), abs=1e-4)
    assert history.history["val_pesq_wb_failed"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="mode"):
        metrics.ValidationPESQ(validation, 16000, mode="fb")
    with pytest.raises(ValueError, match="batches"):
        metrics.ValidationPESQ(validation, 16000, batches=0)
