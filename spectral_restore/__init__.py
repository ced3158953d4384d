"""spectral-restore: restore damaged audio through its spectrogram, amplitude and phase."""

__version__ = "0.1.0"
