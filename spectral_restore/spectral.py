"""Spectral core: STFT settings, stft/istft, magnitude and phase, compression, filterbanks.

Everything here is written with ``keras.ops`` so it runs under any Keras backend.
A complex spectrogram is carried as a ``(real, imag)`` pair of float tensors of
shape ``[..., frames, bins]``; :func:`stack_complex` / :func:`unstack_complex`
convert to and from the ``[..., frames, bins, 2]`` layout used by models.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from spectral_restore.checks import check_choice

WINDOWS = ("hann", "hamming", "blackman", "rectangular")
PAD_MODES = ("reflect", "constant")

# Power below which a bin counts as silent (magnitude 1e-6, -120 dB re full scale).
# Magnitudes and phases are clamped here so sqrt/atan2 have finite gradients at 0.
POWER_FLOOR = 1e-12


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class STFTConfig:
    """Settings of a short-time Fourier transform.

    Frames are taken every ``hop_length`` samples; with ``center=True`` the signal
    is first padded by ``fft_length // 2`` samples on each side (``pad_mode``), so
    frame ``t`` is centred on sample ``t * hop_length`` and a signal of ``L``
    samples gives ``1 + L // hop_length`` frames (the librosa / torch.stft
    convention). A window shorter than ``fft_length`` is zero-padded on both
    sides to ``fft_length``.

    Args:
        frame_length: int. Window length in samples. Defaults to 512.
        hop_length: int. Frame step in samples. Defaults to 128.
        fft_length: int or None. FFT size, >= ``frame_length``; ``None`` means
            ``frame_length``. Defaults to None.
        window: str. One of "hann", "hamming", "blackman" (periodic forms) or
            "rectangular". Defaults to "hann".
        center: bool. Pad so frames are centred on multiples of the hop.
            Defaults to True.
        pad_mode: str. "reflect" (mirror without repeating the edge sample, as
            numpy's "reflect") or "constant" (zeros). Defaults to "reflect".

    Example:
    >>> cfg = STFTConfig(frame_length=400, hop_length=160, fft_length=512)
    >>> cfg.num_bins, cfg.num_frames(16000)
    (257, 101)
    """

    frame_length: int = 512
    hop_length: int = 128
    fft_length: int = None
    window: str = "hann"
    center: bool = True
    pad_mode: str = "reflect"

    def __post_init__(self):
        _check_positive_int("frame_length", self.frame_length)
        _check_positive_int("hop_length", self.hop_length)
        if self.fft_length is None:
            object.__setattr__(self, "fft_length", int(self.frame_length))
        _check_positive_int("fft_length", self.fft_length)
        if self.fft_length < self.frame_length:
            raise ValueError(
                "`fft_length` must be >= `frame_length`. Received: "
                f"fft_length={self.fft_length}, frame_length={self.frame_length}"
            )
        if self.hop_length > self.frame_length:
            raise ValueError(
                "`hop_length` must be <= `frame_length` or samples are skipped. Received: "
                f"hop_length={self.hop_length}, frame_length={self.frame_length}"
            )
        check_choice("window", self.window, WINDOWS)
        check_choice("pad_mode", self.pad_mode, PAD_MODES)

    @property
    def num_bins(self):
        """Number of one-sided frequency bins, ``fft_length // 2 + 1``."""
        return self.fft_length // 2 + 1

    def num_frames(self, num_samples):
        """Frames produced for a signal of ``num_samples`` samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + max(num_samples - self.fft_length, 0) // self.hop_length

    def window_array(self):
        """The analysis window, zero-padded to ``fft_length``, as a float64 numpy array."""
        n = np.arange(self.frame_length)
        phase = 2.0 * np.pi * n / self.frame_length
        if self.window == "hann":
            win = 0.5 - 0.5 * np.cos(phase)
        elif self.window == "hamming":
            win = 0.54 - 0.46 * np.cos(phase)
        elif self.window == "blackman":
            win = 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2.0 * phase)
        else:
            win = np.ones(self.frame_length)
        left = (self.fft_length - self.frame_length) // 2
        right = self.fft_length - self.frame_length - left
        return np.pad(win, (left, right))

    def get_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def as_stft_config(value):
    """Accepts an :class:`STFTConfig`, a dict of its fields or None (defaults)."""
    if value is None:
        return STFTConfig()
    if isinstance(value, STFTConfig):
        return value
    if isinstance(value, dict):
        return STFTConfig(**value)
    raise TypeError(
        f"`stft_config` must be an STFTConfig, a dict or None. Received type {type(value).__name__}"
    )


def _reflect_indices(length, pad):
    """Indices that extend ``range(length)`` by ``pad`` mirrored samples on each side.

    Works for any length >= 1 (the mirror is repeated when ``pad >= length``),
    with dynamic ``length`` inside a compiled function.
    """
    positions = ops.arange(-pad, length + pad, dtype="int32")
    period = ops.maximum(2 * (length - 1), 1)
    folded = ops.mod(positions, period)
    return ops.where(folded > length - 1, period - folded, folded)


def _pad_signal(x, config):
    pad = config.fft_length // 2
    if config.pad_mode == "constant":
        rank = len(x.shape)
        return ops.pad(x, [(0, 0)] * (rank - 1) + [(pad, pad)])
    length = x.shape[-1]
    if length is not None and length > pad:
        # Static and long enough: two mirrored slices (cheaper than a gather and its gradient).
        head = ops.flip(x[..., 1 : pad + 1], axis=-1)
        tail = ops.flip(x[..., length - pad - 1 : length - 1], axis=-1)
        return ops.concatenate([head, x, tail], axis=-1)
    return ops.take(x, _reflect_indices(ops.shape(x)[-1], pad), axis=-1)


def _check_waveform(x, name="waveform"):
    x = ops.convert_to_tensor(x)
    if len(x.shape) < 1:
        raise ValueError(f"`{name}` must have a time axis, got a scalar.")
    if keras.backend.standardize_dtype(x.dtype) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def stft(x, config=None):
    """Short-time Fourier transform of real waveforms.

    Formula: ``X[t, k] = sum_n w[n] x[t*hop + n - P] exp(-2j*pi*k*n/N)`` with
    ``N = fft_length``, ``P = N // 2`` when centred (else 0), ``w`` the window
    zero-padded to ``N``.

    Args:
        x: tensor ``[..., samples]``, float. Waveforms.
        config: STFTConfig, dict or None. Defaults to ``STFTConfig()``.

    Returns:
        ``(real, imag)``, each ``[..., frames, fft_length // 2 + 1]``.

    Example:
    >>> real, imag = stft(np.zeros((2, 16000), "float32"))
    >>> tuple(real.shape)
    (2, 126, 257)
    """
    config = as_stft_config(config)
    x = _check_waveform(x)
    if config.center:
        x = _pad_signal(x, config)
    window = config.window_array()
    return ops.stft(
        x,
        sequence_length=config.fft_length,
        sequence_stride=config.hop_length,
        fft_length=config.fft_length,
        window=ops.convert_to_tensor(window, dtype=x.dtype),
        center=False,
    )


def _overlap_add(frames, hop):
    """Sums frames ``[..., T, N]`` placed every ``hop`` samples -> ``[..., (T-1)*hop + N]``."""
    frame_size = frames.shape[-1]
    chunks = -(-frame_size // hop)
    padded_size = chunks * hop
    lead = list(frames.shape[:-2])
    rank = len(frames.shape)
    if padded_size != frame_size:
        frames = ops.pad(frames, [(0, 0)] * (rank - 1) + [(0, padded_size - frame_size)])
    num_frames = ops.shape(frames)[-2]
    total = None
    for c in range(chunks):
        piece = frames[..., c * hop : (c + 1) * hop]
        piece = ops.pad(piece, [(0, 0)] * (rank - 2) + [(c, chunks - 1 - c), (0, 0)])
        total = piece if total is None else total + piece
    batch_shape = [ops.shape(frames)[i] for i in range(len(lead))]
    out = ops.reshape(total, batch_shape + [(num_frames + chunks - 1) * hop])
    return out[..., : (num_frames - 1) * hop + frame_size]


def istft(real, imag, config=None, length=None):
    """Inverse STFT by weighted overlap-add (least-squares inverse of :func:`stft`).

    Formula: ``y[n] = sum_t w[n - t*hop] * ifft(X[t])[n - t*hop] / sum_t w[n - t*hop]^2``,
    i.e. the Griffin-Lim least-squares estimate; for an unmodified STFT it
    returns the input exactly wherever the window sum is non-zero (every
    sample, for the supported windows with ``hop_length <= frame_length``).
    Window-sum values below 1e-10 are left undivided.

    Args:
        real: tensor ``[..., frames, bins]``. Real part.
        imag: tensor ``[..., frames, bins]``. Imaginary part.
        config: STFTConfig, dict or None. Must match the forward transform.
        length: int or None. Samples to return; ``None`` gives
            ``(frames - 1) * hop_length`` for centred transforms. Defaults to None.

    Returns:
        Waveforms ``[..., samples]``.

    Example:
    >>> x = np.random.default_rng(0).standard_normal((1, 1000)).astype("float32")
    >>> y = istft(*stft(x), length=1000)
    >>> bool(np.max(np.abs(ops.convert_to_numpy(y) - x)) < 1e-5)
    True
    """
    config = as_stft_config(config)
    real = ops.convert_to_tensor(real)
    imag = ops.convert_to_tensor(imag)
    if real.shape[-1] is not None and real.shape[-1] != config.num_bins:
        raise ValueError(
            f"The spectrogram has {real.shape[-1]} bins but the STFT config gives "
            f"{config.num_bins} (fft_length={config.fft_length})."
        )
    frames = ops.irfft((real, imag), fft_length=config.fft_length)
    window = ops.convert_to_tensor(config.window_array(), dtype=frames.dtype)
    signal = _overlap_add(frames * window, config.hop_length)
    num_frames = ops.shape(real)[-2]
    window_sum = _overlap_add(
        ops.ones((num_frames, 1), dtype=frames.dtype) * window**2, config.hop_length
    )
    signal = signal / ops.where(window_sum > 1e-10, window_sum, ops.ones_like(window_sum))
    start = config.fft_length // 2 if config.center else 0
    if length is None:
        if config.center:
            end = ops.shape(signal)[-1] - config.fft_length // 2
            return signal[..., start:end]
        return signal
    signal_length = ops.shape(signal)[-1]
    available = signal_length - start
    if isinstance(available, int) and isinstance(length, int) and available < length:
        signal = ops.pad(signal, [(0, 0)] * (len(signal.shape) - 1) + [(0, length - available)])
    return signal[..., start : start + length]


def stack_complex(real, imag):
    """``(real, imag)`` -> one tensor ``[..., frames, bins, 2]``."""
    return ops.stack([real, imag], axis=-1)


def unstack_complex(spectrogram):
    """``[..., frames, bins, 2]`` -> ``(real, imag)``; raises if the last axis is not 2."""
    spectrogram = ops.convert_to_tensor(spectrogram)
    if spectrogram.shape[-1] != 2:
        raise ValueError(
            "A complex spectrogram must have a last axis of size 2 (real, imag). "
            f"Received shape {tuple(spectrogram.shape)}"
        )
    return spectrogram[..., 0], spectrogram[..., 1]


def power(real, imag, floor=POWER_FLOOR):
    """Power spectrum ``max(re^2 + im^2, floor)``; ``floor`` keeps logs and roots finite."""
    return ops.maximum(ops.square(real) + ops.square(imag), floor)


def magnitude(real, imag, floor=POWER_FLOOR):
    """Magnitude ``sqrt(max(re^2 + im^2, floor))``.

    The floor (default 1e-12, magnitude 1e-6) makes the gradient finite, and
    zero, for silent bins instead of the 0/0 of ``d|z|/dz`` at ``z = 0``.
    """
    return ops.sqrt(power(real, imag, floor))


def phase(real, imag, floor=POWER_FLOOR):
    """Phase ``atan2(im, re)`` in radians; bins with power below ``floor`` get phase 0.

    Silent bins are replaced by ``1 + 0j`` before ``atan2`` so the gradient there is
    zero rather than NaN.
    """
    silent = ops.square(real) + ops.square(imag) < floor
    safe_real = ops.where(silent, ops.ones_like(real), real)
    safe_imag = ops.where(silent, ops.zeros_like(imag), imag)
    return ops.arctan2(safe_imag, safe_real)


def compress_magnitude(mag, exponent=0.3):
    """Power-law compression ``mag ** exponent`` (expects a floored magnitude)."""
    return ops.power(mag, exponent)


def compress_complex(real, imag, exponent=0.3, floor=POWER_FLOOR):
    """Compresses the magnitude by a power law and keeps the phase.

    Formula: ``|X|^c * exp(j * angle(X)) = X * max(|X|^2, floor)^((c - 1) / 2)``,
    as in CMGAN / MP-SENet (``c = 0.3``).

    Returns:
        ``(real, imag)`` of the compressed spectrogram.
    """
    scale = ops.power(power(real, imag, floor), (exponent - 1.0) / 2.0)
    return real * scale, imag * scale


def hz_to_mel(frequencies, htk=False):
    """Hz -> mel. HTK: ``2595 log10(1 + f/700)``; Slaney (default): linear below
    1 kHz (``3 f / 200``), logarithmic above (``15 + 27 ln(f / 1000) / ln(6.4)``)."""
    f = np.asarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    linear = 3.0 * f / 200.0
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(f >= 1000.0, log_part, linear)


def mel_to_hz(mels, htk=False):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = 200.0 * m / 3.0
    log_part = 1000.0 * np.exp(np.log(6.4) * (m - 15.0) / 27.0)
    return np.where(m >= 15.0, log_part, linear)


def _triangular_filters(edges_hz, bin_hz):
    lower = edges_hz[:-2, None]
    center = edges_hz[1:-1, None]
    upper = edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / np.maximum(center - lower, 1e-10)
    falling = (upper - bin_hz[None, :]) / np.maximum(upper - center, 1e-10)
    return np.maximum(0.0, np.minimum(rising, falling))


def _check_band_range(sample_rate, fmin, fmax):
    sample_rate = _check_positive_int("sample_rate", sample_rate)
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(
            "Need 0 <= fmin < fmax <= sample_rate / 2. Received: "
            f"fmin={fmin}, fmax={fmax}, sample_rate={sample_rate}"
        )
    return sample_rate, float(fmin), fmax


def mel_filterbank(
    num_mels, sample_rate, fft_length, fmin=0.0, fmax=None, htk=False, norm="slaney"
):
    """Triangular mel filterbank matrix ``[fft_length // 2 + 1, num_mels]``.

    Filters are triangles between ``num_mels + 2`` points equally spaced on the
    mel scale from ``fmin`` to ``fmax`` (default Nyquist). ``norm="slaney"``
    scales each by ``2 / (f_upper - f_lower)`` (constant energy per band);
    ``norm=None`` leaves unit peaks. Matches ``librosa.filters.mel(...).T``.

    Apply as ``mel_spec = ops.matmul(magnitude_spec, fb)``.

    Reference: Slaney, "Auditory Toolbox" (1998); Young et al., "The HTK Book".
    """
    num_mels = _check_positive_int("num_mels", num_mels)
    fft_length = _check_positive_int("fft_length", fft_length)
    sample_rate, fmin, fmax = _check_band_range(sample_rate, fmin, fmax)
    if norm not in ("slaney", None):
        raise ValueError(f"`norm` must be 'slaney' or None. Received: norm={norm!r}")
    bin_hz = np.linspace(0.0, sample_rate / 2.0, fft_length // 2 + 1)
    mel_edges = np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), num_mels + 2)
    edges_hz = mel_to_hz(mel_edges, htk)
    weights = _triangular_filters(edges_hz, bin_hz)
    if norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.T.astype(np.float32)


def hz_to_bark(frequencies):
    """Hz -> Bark, Traunmüller (1990): ``z = 26.81 f / (1960 + f) - 0.53`` with
    his corrections below 2 Bark (``z + 0.15 (2 - z)``) and above 20.1 Bark
    (``z + 0.22 (z - 20.1)``)."""
    f = np.asarray(frequencies, dtype=np.float64)
    z = 26.81 * f / (1960.0 + f) - 0.53
    z = np.where(z < 2.0, z + 0.15 * (2.0 - z), z)
    return np.where(z > 20.1, z + 0.22 * (z - 20.1), z)


def bark_to_hz(barks):
    """Inverse of :func:`hz_to_bark`."""
    z = np.asarray(barks, dtype=np.float64)
    z = np.where(z < 2.0, (z - 0.3) / 0.85, z)
    z = np.where(z > 20.1, (z + 4.422) / 1.22, z)
    return 1960.0 * (z + 0.53) / (26.28 - z)


def _scale_filterbank(to_scale, from_scale, num_bands, sample_rate, fft_length, fmin, fmax, shape):
    num_bands = _check_positive_int("num_bands", num_bands)
    fft_length = _check_positive_int("fft_length", fft_length)
    sample_rate, fmin, fmax = _check_band_range(sample_rate, fmin, fmax)
    bin_hz = np.linspace(0.0, sample_rate / 2.0, fft_length // 2 + 1)
    if shape == "triangular":
        edges = from_scale(np.linspace(to_scale(fmin), to_scale(fmax), num_bands + 2))
        weights = _triangular_filters(edges, bin_hz)
    elif shape == "rectangular":
        edges = from_scale(np.linspace(to_scale(fmin), to_scale(fmax), num_bands + 1))
        edges[0], edges[-1] = fmin, fmax
        upper_ok = bin_hz[None, :] < edges[1:, None]
        upper_ok[-1] = bin_hz <= edges[-1]
        weights = ((bin_hz[None, :] >= edges[:-1, None]) & upper_ok).astype(np.float64)
    else:
        raise ValueError(
            f"`shape` must be 'triangular' or 'rectangular'. Received: shape={shape!r}"
        )
    return weights.T.astype(np.float32)


def bark_filterbank(num_bands, sample_rate, fft_length, fmin=0.0, fmax=None, shape="triangular"):
    """Bark-scale filterbank matrix ``[fft_length // 2 + 1, num_bands]``.

    Band edges are ``num_bands + 1`` (rectangular) or ``num_bands + 2``
    (triangular) points equally spaced in Bark (:func:`hz_to_bark`) between
    ``fmin`` and ``fmax``. ``shape="rectangular"`` sums the bins whose centre
    frequency lies in ``[lower, upper)`` (the last band includes ``fmax``), as
    critical-band power in P.862 is a sum over FFT bins; ``"triangular"`` gives
    unit-peak overlapping triangles like a mel bank.

    Reference: Traunmüller, "Analytical expressions for the tonotopic sensory
    scale", JASA 88 (1990); Zwicker & Fastl, "Psychoacoustics", ch. 6.
    """
    return _scale_filterbank(
        hz_to_bark, bark_to_hz, num_bands, sample_rate, fft_length, fmin, fmax, shape
    )


def erb_filterbank(num_bands, sample_rate, fft_length, fmin=0.0, fmax=None, shape="triangular"):
    """ERB-rate filterbank matrix ``[fft_length // 2 + 1, num_bands]``; as
    :func:`bark_filterbank` with edges equally spaced on the ERB-rate scale
    ``21.4 log10(1 + 0.00437 f)`` (Glasberg & Moore, Hearing Research 47, 1990)."""
    from spectral_restore.psychoacoustics import erb_rate_to_hz, hz_to_erb_rate

    return _scale_filterbank(
        hz_to_erb_rate, erb_rate_to_hz, num_bands, sample_rate, fft_length, fmin, fmax, shape
    )


__all__ = [
    "STFTConfig",
    "as_stft_config",
    "stft",
    "istft",
    "stack_complex",
    "unstack_complex",
    "power",
    "magnitude",
    "phase",
    "compress_magnitude",
    "compress_complex",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "hz_to_bark",
    "bark_to_hz",
    "bark_filterbank",
    "erb_filterbank",
]
