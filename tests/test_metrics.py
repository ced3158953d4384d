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
    np.testing.assert_allclose(
        result.scores, [pesq(16000, c, n, "wb") for c, n in zip(clean, noisy)], atol=1e-6
    )
    assert result.failed == 0 and np.all(np.diff(result.scores) > 0)
    # Narrow band is scored at 8 kHz: 8 kHz input as it is, 16 kHz input resampled
    # (measured within 3e-7 of scoring scipy's resample_poly of it).
    clean_8k, noisy_8k = (
        scipy.signal.resample_poly(x.astype(np.float64), 1, 2, axis=1) for x in (clean, noisy)
    )
    reference_nb = [pesq(8000, c, n, "nb") for c, n in zip(clean_8k, noisy_8k)]
    np.testing.assert_allclose(
        metrics.pesq_score(clean_8k, noisy_8k, 8000, "nb").scores, reference_nb, atol=1e-6
    )
    np.testing.assert_allclose(
        metrics.pesq_score(clean, noisy, 16000, "nb").scores, reference_nb, atol=1e-5
    )
    silent = np.zeros_like(clean[0])
    broken = metrics.pesq_score(
        np.stack([clean[0], silent, clean[0]]),
        np.stack([silent, clean[0], noisy[2]]),
        16000,
        processes=2,
    )
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
    np.testing.assert_allclose(
        metrics.si_sdr(clean, 3 * noisy), metrics.si_sdr(clean, noisy), atol=1e-6
    )
    lsd = metrics.log_spectral_distance(clean, noisy)
    assert np.all(np.diff(lsd) < 0)
    np.testing.assert_allclose(
        metrics.log_spectral_distance(clean, 2 * clean), 20 * np.log10(2), atol=1e-3
    )


def test_pesq_metric_in_evaluate_and_validation_callback_in_fit(noisy_set):
    """PESQMetric inside model.evaluate and ValidationPESQ inside fit give the
    reference PESQ of what the model outputs; a silent example is counted, not averaged."""
    import keras
    import tensorflow as tf

    from spectral_restore.callbacks import ValidationPESQ

    clean, noisy = noisy_set
    clean, noisy = clean[:, :32000], noisy[:, :32000]
    model = keras.Sequential([keras.Input((32000,)), keras.layers.Rescaling(0.5)])
    model.compile(loss="mse", metrics=[metrics.PESQMetric(16000)])
    evaluated = model.evaluate(noisy, clean, batch_size=4, verbose=0, return_dict=True)
    expected = metrics.pesq_score(clean, 0.5 * noisy, 16000, processes=1).scores
    assert evaluated["pesq_wb"] == pytest.approx(expected.mean(), abs=1e-4)

    metric = metrics.PESQMetric(16000, "wb")
    metric.update_state(
        np.stack([clean[0], np.zeros_like(clean[0])]), np.stack([noisy[3], noisy[3]])
    )
    assert (
        float(metric.result()) == pytest.approx(expected[3], abs=1e-4)
        and float(metric.failed) == 1.0
    )
    assert np.isnan(float(metrics.PESQMetric().result()))
    rebuilt = metrics.PESQMetric.from_config(metrics.PESQMetric(8000, "nb", name="p").get_config())
    assert (rebuilt.sample_rate, rebuilt.mode, rebuilt.name) == (8000, "nb", "p")

    validation = tf.data.Dataset.from_tensor_slices((noisy, clean)).batch(2)
    callback = ValidationPESQ(validation, 16000, batches=2, processes=1)
    history = model.fit(noisy, clean, epochs=2, batch_size=4, verbose=0, callbacks=[callback])
    assert history.history["val_pesq_wb"][-1] == pytest.approx(expected.mean(), abs=1e-4)
    assert history.history["val_pesq_wb_failed"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="mode"):
        ValidationPESQ(validation, 16000, mode="fb")
    with pytest.raises(ValueError, match="batches"):
        ValidationPESQ(validation, 16000, batches=0)


def _long_noisy_pair(speech, seconds, snr_db, seed):
    """``seconds`` of the utterance repeated with 0.2 s pauses, and a noisy copy."""
    rate = 16000
    clean = np.tile(np.concatenate([speech, np.zeros(rate // 5, np.float32)]), int(seconds) + 1)
    clean = clean[: int(seconds * rate)].astype(np.float64)
    noise = np.random.default_rng(seed).standard_normal(len(clean))
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean, clean + noise


@pytest.mark.parametrize("seconds", [1, 30])
def test_stoi_and_estoi_match_pystoi_on_whole_files(speech_16k, seconds, monkeypatch):
    pystoi = pytest.importorskip("pystoi", reason="pystoi is in the test extras")
    for snr, seed in ((-5.0, 1), (10.0, 2)):
        clean, noisy = _long_noisy_pair(speech_16k, seconds, snr, seed)
        for extended in (False, True):
            ours = metrics.stoi(clean, noisy, 16000, extended=extended)[0]
            assert ours == pytest.approx(
                pystoi.stoi(clean, noisy, 16000, extended=extended), abs=1e-8
            )
    # Blocks of frames and segments are an implementation detail.
    monkeypatch.setattr(metrics, "STOI_BLOCK", 5)
    for extended in (False, True):
        blocked = metrics.stoi(clean, noisy, 16000, extended=extended)[0]
        assert blocked == pytest.approx(
            pystoi.stoi(clean, noisy, 16000, extended=extended), abs=1e-8
        )


def test_pesq_equals_the_package_on_a_30_second_file(speech_16k):
    from pesq import pesq
    from scipy.signal import resample_poly

    clean, noisy = _long_noisy_pair(speech_16k, 30, 10.0, 3)
    assert metrics.pesq_score(clean, noisy, 16000, "wb").scores[0] == pesq(
        16000, clean, noisy, "wb"
    )
    assert metrics.pesq_score(clean, noisy, 16000, "nb").scores[0] == pesq(
        8000, resample_poly(clean, 1, 2), resample_poly(noisy, 1, 2), "nb"
    )
    wide_clean, wide_noisy = resample_poly(clean, 3, 1), resample_poly(noisy, 3, 1)
    assert metrics.pesq_score(wide_clean, wide_noisy, 48000, "wb").scores[0] == pesq(
        16000, resample_poly(wide_clean, 1, 3), resample_poly(wide_noisy, 1, 3), "wb"
    )


def test_pesq_workers_survive_a_crashing_job(monkeypatch):
    import os

    monkeypatch.setattr(
        metrics, "PESQ_WORKER_SCRIPT", os.path.join(os.path.dirname(__file__), "pesq_crash.py")
    )
    clean = np.ones((5, 1600))
    clean[1, 0] = 0.123
    result = metrics.pesq_score(clean, clean, 16000, processes=2)
    assert result.failures == {"ProcessCrashed": 1}
    assert np.isnan(result.scores[1]) and np.all(np.delete(result.scores, 1) == 1600.0)
    # Files over PESQ_IN_PROCESS_SECONDS run one at a time in a worker of their own, even
    # with processes=1; the job queued behind the crashing one goes to a new worker.
    monkeypatch.setattr(metrics, "PESQ_IN_PROCESS_SECONDS", 0.05)
    result = metrics.pesq_score(clean[:3], clean[:3], 16000, processes=1)
    assert result.failures == {"ProcessCrashed": 1}
    assert np.isnan(result.scores[1]) and result.scores[0] == result.scores[2] == 1600.0
