"""Figures: spectrogram panels for listening tests and reports (matplotlib, Agg)."""

import numpy as np


def spectrogram_db(samples, sample_rate, frame_length=512, hop_length=128, floor_db=-100.0):
    """Magnitude spectrogram in dB re full scale, ``[bins, frames]`` (numpy)."""
    from spectral_restore import spectral

    real, imag = spectral.stft(
        np.asarray(samples, np.float32)[None], spectral.STFTConfig(frame_length, hop_length)
    )
    mag = np.asarray(spectral.magnitude(real, imag))[0].T
    reference = np.sum(spectral.STFTConfig(frame_length, hop_length).window_array()) / 2.0
    return np.maximum(20.0 * np.log10(np.maximum(mag / reference, 1e-12)), floor_db)


def plot_spectrograms(panels, sample_rate, path, title=None, vmin=-100.0):
    """Saves stacked spectrograms, one per ``(label, samples)`` in ``panels``, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 2.6 * len(panels)), squeeze=False, constrained_layout=True
    )
    image = None
    for axis, (label, samples) in zip(axes[:, 0], panels):
        db = spectrogram_db(samples, sample_rate)
        duration = len(samples) / sample_rate
        image = axis.imshow(
            db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmin,
            vmax=0.0,
            extent=[0.0, duration, 0.0, sample_rate / 2000.0],
        )
        axis.set_ylabel("kHz")
        axis.set_title(label, fontsize=10)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB FS", shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
