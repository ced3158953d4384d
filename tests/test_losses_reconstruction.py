import numpy as np
import pytest

from spectral_restore import spectral
from spectral_restore.losses import (
    LogSpectrogramLoss,
    MultiResolutionSTFTLoss,
    SpectralConvergence,
    SpectrogramMSE,
    WaveformLoss,
)
from spectral_restore.psychoacoustics import a_weighting_db

from reference import numpy_magnitude, numpy_spectra

PWG = dict(fft_sizes=[512, 1024, 2048], hop_sizes=[50, 120, 240], win_lengths=[240, 600, 1200])


@pytest.fixture(scope="module")
def pair(speech_16k):
    rng = np.random.default_rng(11)
    clean = np.stack(
        [speech_16k[:24000], speech_16k[24000:48000], 0.1 * speech_16k[8000:32000]]
    ).astype(np.float32)
    noisy = (clean + 0.03 * rng.standard_normal(clean.shape)).astype(np.float32)
    noisy[2] = np.clip(noisy[2] * 20, -0.5, 0.5)
    return clean, noisy


def test_spectrogram_mse_matches_numpy(pair):
    clean, noisy = pair
    cfg = spectral.STFTConfig()
    zt, zp = numpy_spectra(clean, noisy, cfg)
    for power in (1, 2):
        mt, mp = numpy_magnitude(zt, 1e-12) ** power, numpy_magnitude(zp, 1e-12) ** power
        want = ((mt - mp) ** 2).mean(axis=(1, 2))
        got = np.asarray(SpectrogramMSE(power=power, reduction="none")(clean, noisy))
        np.testing.assert_allclose(got, want, rtol=1e-4)
    mt, mp = numpy_magnitude(zt, 1e-12) ** 0.3, numpy_magnitude(zp, 1e-12) ** 0.3
    got = np.asarray(SpectrogramMSE(compress_exponent=0.3, reduction="none")(clean, noisy))
    np.testing.assert_allclose(got, ((mt - mp) ** 2).mean(axis=(1, 2)), rtol=1e-4)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_log_spectrogram_matches_numpy(pair, kind):
    clean, noisy = pair
    cfg = spectral.STFTConfig(frame_length=1024, hop_length=256)
    zt, zp = numpy_spectra(clean, noisy, cfg)
    diff = np.log(numpy_magnitude(zt, 1e-6)) - np.log(numpy_magnitude(zp, 1e-6))
    want = (np.abs(diff) if kind == "l1" else diff**2).mean(axis=(1, 2))
    got = LogSpectrogramLoss(distance=kind, eps=1e-6, stft_config=cfg, reduction="none")(
        clean, noisy
    )
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4)


def test_spectral_convergence_is_per_example(pair):
    clean, noisy = pair
    cfg = spectral.STFTConfig()
    zt, zp = numpy_spectra(clean, noisy, cfg)
    mt, mp = numpy_magnitude(zt, 1e-8), numpy_magnitude(zp, 1e-8)
    want = np.sqrt(((mt - mp) ** 2).sum(axis=(1, 2))) / np.sqrt((mt**2).sum(axis=(1, 2)))
    got = np.asarray(SpectralConvergence(reduction="none")(clean, noisy))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # The batch-level definition mixes examples: a quiet example's error is swamped.
    batch_level = np.sqrt(((mt - mp) ** 2).sum()) / np.sqrt((mt**2).sum())
    assert abs(batch_level - want.mean()) > 0.05


def test_waveform_loss_matches_numpy(pair):
    clean, noisy = pair
    np.testing.assert_allclose(
        np.asarray(WaveformLoss(reduction="none")(clean, noisy)),
        np.abs(clean - noisy).mean(axis=1),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(WaveformLoss(distance="l2", reduction="none")(clean, noisy)),
        ((clean - noisy) ** 2).mean(axis=1),
        rtol=1e-5,
    )


def numpy_mrstft(clean, noisy, projections=None, w_sc=1.0, w_log=1.0, w_lin=0.0):
    total = np.zeros(len(clean))
    for r, (n, h, w) in enumerate(zip(PWG["fft_sizes"], PWG["hop_sizes"], PWG["win_lengths"])):
        cfg = spectral.STFTConfig(frame_length=w, hop_length=h, fft_length=n)
        zt, zp = numpy_spectra(clean, noisy, cfg)
        mt, mp = numpy_magnitude(zt, 1e-8), numpy_magnitude(zp, 1e-8)
        if projections is not None:
            mt, mp = mt @ projections[r], mp @ projections[r]
        sc = np.sqrt(((mt - mp) ** 2).sum(axis=(1, 2))) / np.sqrt((mt**2).sum(axis=(1, 2)))
        log = np.abs(np.log(np.maximum(mt, 1e-12)) - np.log(np.maximum(mp, 1e-12))).mean(
            axis=(1, 2)
        )
        lin = np.abs(mt - mp).mean(axis=(1, 2))
        total += w_sc * sc + w_log * log + w_lin * lin
    return total / 3


def test_mrstft_matches_numpy_including_per_resolution_mel_bins(pair):
    clean, noisy = pair
    np.testing.assert_allclose(
        np.asarray(MultiResolutionSTFTLoss(reduction="none")(clean, noisy)),
        numpy_mrstft(clean, noisy),
        rtol=1e-4,
    )
    bins = [32, 64, 128]
    mels = [
        spectral.mel_filterbank(b, 16000, n).astype(np.float64)
        for b, n in zip(bins, PWG["fft_sizes"])
    ]
    loss = MultiResolutionSTFTLoss(
        scale="mel", n_bins=bins, sample_rate=16000, w_lin_mag=0.5, reduction="none"
    )
    np.testing.assert_allclose(
        np.asarray(loss(clean, noisy)), numpy_mrstft(clean, noisy, mels, w_lin=0.5), rtol=1e-4
    )


def test_mrstft_perceptual_weighting_matches_numpy(pair):
    clean, noisy = pair
    gains = [
        np.diag(10 ** (a_weighting_db(np.arange(n // 2 + 1) * 16000 / n) / 20))
        for n in PWG["fft_sizes"]
    ]
    loss = MultiResolutionSTFTLoss(frequency_weighting="a", sample_rate=16000, reduction="none")
    np.testing.assert_allclose(
        np.asarray(loss(clean, noisy)), numpy_mrstft(clean, noisy, gains), rtol=1e-4
    )


def test_mrstft_zero_weight_terms_are_not_computed(pair):
    clean, noisy = pair
    terms = MultiResolutionSTFTLoss(w_sc=0.0).resolution_terms(clean, noisy)
    assert [sorted(t) for t in terms] == [["log_mag"]] * 3
    terms = MultiResolutionSTFTLoss(w_log_mag=0.0, w_lin_mag=2.0).resolution_terms(clean, noisy)
    assert [sorted(t) for t in terms] == [["lin_mag", "sc"]] * 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fft_sizes=[512], hop_sizes=[50, 120], win_lengths=[240]), "equal length"),
        (dict(scale="mel"), "sample_rate"),
        (dict(scale="mel", sample_rate=16000), "n_bins"),
        (dict(scale="mel", sample_rate=16000, n_bins=[40, 80]), "n_bins"),
        (dict(scale="bark"), "scale"),
        (dict(frequency_weighting="a"), "sample_rate"),
        (dict(w_sc=0, w_log_mag=0), "At least one"),
        (dict(w_sc=-1), "w_sc"),
        (dict(distance="l3"), "distance"),
    ],
)
def test_mrstft_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiResolutionSTFTLoss(**kwargs)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="power"):
        SpectrogramMSE(power=3)
    with pytest.raises(ValueError, match="eps"):
        LogSpectrogramLoss(eps=0)
    with pytest.raises(ValueError, match="distance"):
        LogSpectrogramLoss(distance="huber")


# --- against auraloss's published definitions ---------------------------------


@pytest.fixture(scope="module")
def auraloss_freq():
    pytest.importorskip(
        "torch", reason="torch (CPU) + auraloss are in the test extras; CI installs them"
    )
    auraloss = pytest.importorskip(
        "auraloss", reason="auraloss is in the test extras; CI installs it"
    )
    return auraloss.freq


def torch_call(module, clean, noisy):
    import torch

    return float(module(torch.tensor(noisy)[None, None], torch.tensor(clean)[None, None]))


def test_mrstft_matches_auraloss(pair, auraloss_freq):
    clean, noisy = pair
    ours = np.asarray(MultiResolutionSTFTLoss(reduction="none")(clean, noisy))
    theirs = auraloss_freq.MultiResolutionSTFTLoss(**PWG)
    for i in range(len(clean)):
        assert ours[i] == pytest.approx(torch_call(theirs, clean[i], noisy[i]), rel=1e-4)


def test_mel_mrstft_matches_auraloss(pair, auraloss_freq):
    clean, noisy = pair
    ours = np.asarray(
        MultiResolutionSTFTLoss(scale="mel", n_bins=64, sample_rate=16000, reduction="none")(
            clean, noisy
        )
    )
    theirs = auraloss_freq.MultiResolutionSTFTLoss(**PWG, scale="mel", n_bins=64, sample_rate=16000)
    for i in range(len(clean)):
        assert ours[i] == pytest.approx(torch_call(theirs, clean[i], noisy[i]), rel=1e-4)


def test_per_resolution_mel_bins_match_auraloss_single_resolutions(pair, auraloss_freq):
    clean, noisy = pair
    bins = [40, 64, 96]
    ours = np.asarray(
        MultiResolutionSTFTLoss(scale="mel", n_bins=bins, sample_rate=16000, reduction="none")(
            clean, noisy
        )
    )
    singles = [
        auraloss_freq.STFTLoss(
            fft_size=n, hop_size=h, win_length=w, scale="mel", n_bins=b, sample_rate=16000
        )
        for n, h, w, b in zip(PWG["fft_sizes"], PWG["hop_sizes"], PWG["win_lengths"], bins)
    ]
    for i in range(len(clean)):
        want = np.mean([torch_call(s, clean[i], noisy[i]) for s in singles])
        assert ours[i] == pytest.approx(want, rel=1e-4)


def test_single_terms_match_auraloss(pair, auraloss_freq):
    clean, noisy = pair
    cfg = spectral.STFTConfig(frame_length=1024, hop_length=256)
    sc_ours = np.asarray(SpectralConvergence(stft_config=cfg, reduction="none")(clean, noisy))
    log_ours = np.asarray(LogSpectrogramLoss(stft_config=cfg, reduction="none")(clean, noisy))
    sc_only = auraloss_freq.STFTLoss(
        fft_size=1024, hop_size=256, win_length=1024, w_sc=1.0, w_log_mag=0.0
    )
    log_only = auraloss_freq.STFTLoss(
        fft_size=1024, hop_size=256, win_length=1024, w_sc=0.0, w_log_mag=1.0
    )
    for i in range(len(clean)):
        assert sc_ours[i] == pytest.approx(torch_call(sc_only, clean[i], noisy[i]), rel=1e-4)
        assert log_ours[i] == pytest.approx(torch_call(log_only, clean[i], noisy[i]), rel=1e-4)
