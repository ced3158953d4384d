"""Independent numpy references the tests compare against."""

import numpy as np
import scipy.signal

# scipy's names of the windows STFTConfig offers.
SCIPY_WINDOWS = {
    "hann": "hann",
    "hamming": "hamming",
    "blackman": "blackman",
    "rectangular": "boxcar",
}


def reference_window(cfg):
    """The analysis window from scipy's definitions (periodic, as used for spectral
    analysis), zero-padded on both sides to ``fft_length``: not the code under test."""
    window = scipy.signal.get_window(SCIPY_WINDOWS[cfg.window], cfg.frame_length, fftbins=True)
    left = (cfg.fft_length - cfg.frame_length) // 2
    return np.pad(window, (left, cfg.fft_length - cfg.frame_length - left))


def numpy_stft(x, cfg):
    """Independent reference: scipy's window, numpy padding, framing and rfft."""
    window = reference_window(cfg)
    if cfg.center:
        pad = cfg.fft_length // 2
        if cfg.pad_mode == "reflect":
            # numpy's reflect needs pad < len; repeat the mirroring otherwise.
            while pad > 0:
                step = min(pad, len(x) - 1) if len(x) > 1 else 0
                if step == 0:
                    x = np.pad(x, (pad, pad), mode="edge")
                    break
                x = np.pad(x, (step, step), mode="reflect")
                pad -= step
        else:
            x = np.pad(x, (pad, pad))
    frames = 1 + (len(x) - cfg.fft_length) // cfg.hop_length
    out = np.stack(
        [
            np.fft.rfft(window * x[t * cfg.hop_length : t * cfg.hop_length + cfg.fft_length])
            for t in range(frames)
        ]
    )
    return out


def numpy_magnitude(z, power_floor):
    return np.sqrt(np.maximum(np.abs(z) ** 2, power_floor))


def numpy_spectra(y_true, y_pred, cfg):
    """Per example complex STFTs (float64) of two waveform batches."""
    return (
        np.stack([numpy_stft(row.astype(np.float64), cfg) for row in y_true]),
        np.stack([numpy_stft(row.astype(np.float64), cfg) for row in y_pred]),
    )


def chunked_crossfade(model, wave, chunk, overlap):
    """Chunking and crossfade of a restoration server written out in numpy, one
    chunk at a time: chunk k covers ``[k * hop, k * hop + chunk)`` (zero-padded past
    the end), is restored by ``model`` alone and weighted by ``sin^2`` ramps of
    ``overlap`` samples; the weighted sum is divided by the summed weights.
    Inputs of at most ``chunk`` samples are restored whole."""
    length = wave.shape[1]
    if length <= chunk:
        return np.asarray(model(wave))
    hop = chunk - overlap
    total = np.zeros(wave.shape, np.float64)
    norm = np.zeros(length)
    n = np.arange(overlap)
    weight = np.ones(chunk)
    weight[:overlap] = np.sin(np.pi * (n + 0.5) / (2 * overlap)) ** 2
    weight[chunk - overlap :] = np.cos(np.pi * (n + 0.5) / (2 * overlap)) ** 2
    start = 0
    while True:
        piece = np.zeros((wave.shape[0], chunk), np.float32)
        stop = min(start + chunk, length)
        piece[:, : stop - start] = wave[:, start:stop]
        restored = np.asarray(model(piece))
        total[:, start:stop] += (weight * restored)[:, : stop - start]
        norm[start:stop] += weight[: stop - start]
        if start + chunk >= length:
            break
        start += hop
    return total / norm


def binomial_tolerance(count, probability):
    """Five standard deviations of a binomial count of ``count`` draws with success
    ``probability``: a correct sampler misses it about once in 1.7 million runs."""
    return 5.0 * np.sqrt(count * probability * (1.0 - probability))
