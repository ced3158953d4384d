"""Shared machinery of the spectral losses: input formats, STFTs, per-example means."""

import keras
from keras import ops

from spectral_restore import spectral
from spectral_restore.checks import check_choice

INPUT_FORMATS = ("waveform", "spectrogram")
ELEMENTWISE_DISTANCES = ("l1", "l2")


def as_waveform(x, name):
    """Accepts ``[batch, samples]`` or ``[batch, samples, 1]`` and returns ``[batch, samples]``."""
    if len(x.shape) == 3 and x.shape[-1] == 1:
        x = ops.squeeze(x, axis=-1)
    if len(x.shape) != 2:
        raise ValueError(
            f"`{name}` must be a waveform batch [batch, samples] (or [batch, samples, 1]). "
            f"Received shape {tuple(x.shape)}"
        )
    return x


def per_example_mean(x):
    """Mean over every axis but the first: one value per example."""
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


def per_example_sum(x):
    return ops.sum(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


def elementwise_distance(a, b, kind):
    """Element-wise ``|a - b|`` ("l1") or ``(a - b)^2`` ("l2")."""
    return ops.abs(a - b) if kind == "l1" else ops.square(a - b)


def safe_norm(x, floor=1e-12):
    """Per-example Frobenius norm ``sqrt(max(sum x^2, floor))``: finite gradient at 0."""
    return ops.sqrt(ops.maximum(per_example_sum(ops.square(x)), floor))


class SpectralLoss(keras.losses.Loss):
    """Base of the losses that compare STFTs of ``y_true`` and ``y_pred``.

    Args:
        stft_config: STFTConfig, dict or None. Analysis settings. Defaults to
            ``STFTConfig()`` (512-sample Hann, hop 128).
        input_format: str. "waveform" (``[batch, samples]``) or "spectrogram"
            (``[batch, frames, bins, 2]``, real and imaginary parts of an STFT
            taken with ``stft_config``). Defaults to "waveform".
        reduction: str. Keras reduction of the per-example values.
            Defaults to "sum_over_batch_size".
        name: str or None. Defaults to the snake-cased class name.
        dtype: compute dtype. Defaults to float32 (also under mixed precision).
    """

    supports_spectrogram = True

    def __init__(
        self,
        stft_config=None,
        input_format="waveform",
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.stft_config = spectral.as_stft_config(stft_config)
        self.input_format = check_choice("input_format", input_format, INPUT_FORMATS)
        if input_format == "spectrogram" and not self.supports_spectrogram:
            raise ValueError(
                f"{type(self).__name__} needs waveforms; input_format='spectrogram' is not supported"
            )

    def spectra(self, y_true, y_pred):
        """``(real_true, imag_true, real_pred, imag_pred)``, each ``[batch, frames, bins]``."""
        if self.input_format == "spectrogram":
            for name, value in (("y_true", y_true), ("y_pred", y_pred)):
                if len(value.shape) != 4 or value.shape[-1] != 2:
                    raise ValueError(
                        f"`{name}` must be a spectrogram [batch, frames, bins, 2]. Received shape {tuple(value.shape)}"
                    )
                if value.shape[-2] is not None and value.shape[-2] != self.stft_config.num_bins:
                    raise ValueError(
                        f"`{name}` has {value.shape[-2]} bins; stft_config gives {self.stft_config.num_bins}"
                    )
            return (*spectral.unstack_complex(y_true), *spectral.unstack_complex(y_pred))
        y_true = as_waveform(y_true, "y_true")
        y_pred = as_waveform(y_pred, "y_pred")
        return (*spectral.stft(y_true, self.stft_config), *spectral.stft(y_pred, self.stft_config))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"stft_config": self.stft_config.get_config(), "input_format": self.input_format}
        )
        return config
