"""The spectral front end that every restoration architecture shares.

Waveform in, waveform out: STFT -> power-law compressed complex spectrogram ->
the architecture's backbone (``restore_spectrogram``) -> decompression -> inverse
STFT to the input's exact length. An architecture subclasses :class:`SpectralModel`,
names its presets in ``PRESETS`` and implements ``restore_spectrogram``; presets,
configuration, input damage and serialization are handled here once.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from spectral_restore import spectral
from spectral_restore._typing import Tensor
from spectral_restore.data import artifacts  # noqa: F401 - registers ArtifactLayer, which `input_damage` loads as
from spectral_restore.models.terms import LossTermsMixin

# Power-law exponent of the magnitude the backbones see (CMGAN, MP-SENet: 0.3).
COMPRESSION = 0.3


def resolve_settings(presets, preset, explicit):
    """The hyperparameters of ``preset`` (a key of ``presets`` or None) overridden by
    the non-None values of ``explicit``; raises ValueError for an unknown preset or,
    without a preset, for hyperparameters left unset."""
    if preset is not None and preset not in presets:
        raise ValueError(f"`preset` must be one of {sorted(presets)} or None. Received: {preset!r}")
    settings = dict(presets[preset]) if preset else {}
    settings.update({key: value for key, value in explicit.items() if value is not None})
    missing = set(explicit) - set(settings)
    if missing:
        raise ValueError(f"Without a preset, give {sorted(missing)}")
    return settings


class SpectralModel(LossTermsMixin, keras.Model):
    """Restores waveforms ``[batch, samples]`` through their compressed complex spectrogram.

    Formula: with ``C = |X|^c e^{j angle X}`` the compressed STFT of the input
    (``c = 0.3``) and ``C_hat = restore_spectrogram(C)`` the backbone's estimate,
    the output is ``iSTFT(|C_hat|^{1/c} e^{j angle C_hat})``, cut to the input length.
    The transforms run in float32 whatever the dtype policy.

    Subclasses set ``PRESETS`` (name -> hyperparameters; every preset names the same
    keys), store their hyperparameters as attributes of the same names and implement
    ``restore_spectrogram(real, imag, training)``: float32 compressed ``(real, imag)``
    ``[batch, frames, bins]`` in, the compressed estimate of the same shape out.

    Args:
        stft_config: STFTConfig or dict. Defaults to 512-sample Hann, hop 128.
        sample_rate: int. The rate the model is trained for. Defaults to 16000.
        input_damage: ArtifactLayer or None. Damages the input batch in training
            only, so the damage is synthesized on the accelerator inside
            ``train_step`` (pair with ``make_dataset(..., damage="model")``).
            Defaults to None.

    Compiled with a :class:`~spectral_restore.losses.CombinedLoss`, ``fit`` logs
    every term by name next to ``loss`` (computed once per step).
    """

    PRESETS = {}

    def __init__(
        self,
        stft_config: spectral.STFTConfig | dict[str, Any] | None = None,
        sample_rate: int = 16000,
        input_damage: keras.layers.Layer | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(input_damage, dict):
            input_damage = keras.saving.deserialize_keras_object(input_damage)
        self.input_damage = input_damage
        self.stft_config = spectral.as_stft_config(stft_config)
        self.sample_rate = int(sample_rate)

    def restore_spectrogram(
        self, real: Tensor, imag: Tensor, training: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Compressed input ``(real, imag)`` ``[batch, frames, bins]`` -> compressed estimate."""
        raise NotImplementedError(f"{type(self).__name__} must implement restore_spectrogram")

    def call(self, waveform: Tensor, training: bool = False) -> Tensor:
        waveform = ops.convert_to_tensor(waveform)
        if len(waveform.shape) != 2:
            raise ValueError(
                f"{type(self).__name__} takes waveforms [batch, samples]; received shape {tuple(waveform.shape)}"
            )
        if self.input_damage is not None and training:
            waveform = self.input_damage(waveform, training=True)
        waveform = ops.cast(waveform, self.compute_dtype)
        real, imag = spectral.stft(ops.cast(waveform, "float32"), self.stft_config)
        real, imag = spectral.compress_complex(real, imag, COMPRESSION)
        est_real, est_imag = self.restore_spectrogram(real, imag, training=training)
        est_real, est_imag = spectral.compress_complex(
            ops.cast(est_real, "float32"), ops.cast(est_imag, "float32"), 1.0 / COMPRESSION
        )
        restored = spectral.istft(
            est_real, est_imag, self.stft_config, length=ops.shape(waveform)[-1]
        )
        return ops.cast(restored, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        names = next(iter(self.PRESETS.values()))
        config.update({"preset": self.preset})
        config.update({name: _plain(getattr(self, name)) for name in names})
        config.update(
            {
                "stft_config": self.stft_config.get_config(),
                "sample_rate": self.sample_rate,
                "input_damage": None
                if self.input_damage is None
                else keras.saving.serialize_keras_object(self.input_damage),
            }
        )
        return config


def _plain(value):
    """Tuples as lists, as a JSON config holds them."""
    return list(value) if isinstance(value, tuple) else value


def built(model: SpectralModel) -> SpectralModel:
    """``model`` with its weights created by one call on a short silent batch."""
    model(ops.zeros((1, model.stft_config.fft_length * 2)))
    return model
