"""Spectrogram discriminators for adversarial training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers, ops

from spectral_restore import spectral
from spectral_restore._typing import DiscriminatorOutputs, Tensor
from spectral_restore.audio_io import resample

register = keras.saving.register_keras_serializable(package="spectral_restore")

DEFAULT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))


@register
class SpectrogramDiscriminator(keras.layers.Layer):
    """One resolution: a 2-D conv stack over the power-law compressed magnitude
    (``|X|^0.3``) of one STFT; returns ``(logits [batch, frames, bins'], features)``."""

    def __init__(
        self,
        fft_length: int = 1024,
        hop_length: int = 256,
        frame_length: int = 1024,
        channels: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fft_length, self.hop_length, self.frame_length = (
            int(fft_length),
            int(hop_length),
            int(frame_length),
        )
        self.channels = int(channels)
        self.stft_config = spectral.STFTConfig(
            frame_length=self.frame_length, hop_length=self.hop_length, fft_length=self.fft_length
        )
        self.convs = [
            layers.Conv2D(self.channels, (3, 9), padding="same", name="conv_0"),
            layers.Conv2D(self.channels, (3, 9), strides=(1, 2), padding="same", name="conv_1"),
            layers.Conv2D(self.channels, (3, 9), strides=(1, 2), padding="same", name="conv_2"),
            layers.Conv2D(self.channels, (3, 9), strides=(1, 2), padding="same", name="conv_3"),
            layers.Conv2D(self.channels, (3, 3), padding="same", name="conv_4"),
        ]
        self.head = layers.Conv2D(1, (3, 3), padding="same", name="logits")

    def call(self, waveform: Tensor) -> tuple[Tensor, list[Tensor]]:
        real, imag = spectral.stft(ops.cast(waveform, "float32"), self.stft_config)
        x = spectral.compress_magnitude(spectral.magnitude(real, imag), 0.3)[..., None]
        x = ops.cast(x, self.compute_dtype)
        features = []
        for conv in self.convs:
            x = ops.leaky_relu(conv(x), negative_slope=0.1)
            features.append(x)
        logits = self.head(x)[..., 0]
        return ops.cast(logits, "float32"), features

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fft_length": self.fft_length,
            "hop_length": self.hop_length,
            "frame_length": self.frame_length,
            "channels": self.channels,
        }


@register
class MultiResolutionDiscriminator(keras.Model):
    """Spectrogram discriminators at several STFT resolutions (as in UnivNet's
    multi-resolution spectrogram discriminator, Jang et al., Interspeech 2021).

    Call: ``outputs = D(waveform)``, a list with one ``(logits, feature_maps)`` per
    resolution.

    Args:
        resolutions: list of (fft_length, hop_length, frame_length). Defaults to
            (512, 128, 512), (1024, 256, 1024), (256, 64, 256).
        channels: int. Convolution channels. Defaults to 32.
    """

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = DEFAULT_RESOLUTIONS,
        channels: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.channels = int(channels)
        self.discriminators = [
            SpectrogramDiscriminator(n, h, w, channels=self.channels, name=f"resolution_{n}_{h}")
            for n, h, w in self.resolutions
        ]

    def call(self, waveform: Tensor, training: bool = False) -> DiscriminatorOutputs:
        return [d(waveform) for d in self.discriminators]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "resolutions": [list(r) for r in self.resolutions],
            "channels": self.channels,
        }


@register
class LearnableSigmoid(keras.layers.Layer):
    """``beta * sigmoid(slope * x)`` with a trainable slope (MetricGAN+, Fu et al.,
    Interspeech 2021: beta = 1.2 lets the output reach slightly above 1)."""

    def __init__(self, beta=1.2, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)

    def build(self, input_shape):
        self.slope = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="slope")

    def call(self, x):
        return self.beta * ops.sigmoid(self.slope * x)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@register
class MetricDiscriminator(keras.Model):
    """A learned quality metric (MetricGAN, Fu et al., ICML 2019; CMGAN's layout):
    ``D((clean, estimate))`` predicts the normalised wide-band PESQ of ``estimate``
    (:func:`~spectral_restore.p862.mapping.normalised_mos`), about 0..1, one value
    per example.

    Both waveforms are resampled to 16 kHz inside (models at 22.05, 44.1 or 48 kHz
    use it unchanged), turned into power-law compressed magnitude spectrograms
    (``|X|^0.3``, 512-sample Hann frames, hop 128), stacked as two channels and
    passed through four stride-2 4x4 convolutions (``channels`` x 1, 2, 4, 8, each
    with instance normalisation and PReLU), global max pooling, a dense layer,
    dropout 0.3, and a learnable sigmoid.

    Args:
        sample_rate: int. Rate of the waveforms it is given. Defaults to 16000.
        channels: int. Width of the first convolution. Defaults to 16.
    """

    INTERNAL_RATE = 16000

    def __init__(self, sample_rate: int = 16000, channels: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        if self.sample_rate < 8000:
            raise ValueError(f"`sample_rate` must be >= 8000. Received: {sample_rate}")
        self.stft_config = spectral.STFTConfig(frame_length=512, hop_length=128)
        self.convs = []
        for i, width in enumerate((1, 2, 4, 8)):
            self.convs.append(
                (
                    layers.Conv2D(
                        self.channels * width, 4, strides=2, padding="same", name=f"conv_{i}"
                    ),
                    layers.GroupNormalization(groups=-1, name=f"instance_norm_{i}"),
                    layers.PReLU(shared_axes=[1, 2], name=f"prelu_{i}"),
                )
            )
        self.hidden = layers.Dense(self.channels * 4, name="dense")
        self.hidden_activation = layers.PReLU(name="dense_prelu")
        self.dropout = layers.Dropout(0.3)
        self.score = layers.Dense(1, name="score")
        self.squash = LearnableSigmoid(name="learnable_sigmoid")

    def spectrogram(self, waveform: Tensor) -> Tensor:
        waveform = resample(ops.cast(waveform, "float32"), self.sample_rate, self.INTERNAL_RATE)
        real, imag = spectral.stft(waveform, self.stft_config)
        return spectral.compress_magnitude(spectral.magnitude(real, imag), 0.3)

    def call(self, inputs: tuple[Tensor, Tensor], training: bool = False) -> Tensor:
        clean, estimate = inputs
        x = ops.stack([self.spectrogram(clean), self.spectrogram(estimate)], axis=-1)
        x = ops.cast(x, self.compute_dtype)
        for conv, norm, activation in self.convs:
            x = activation(norm(conv(x)))
        x = ops.max(x, axis=(1, 2))
        x = self.dropout(self.hidden_activation(self.hidden(x)), training=training)
        return ops.cast(self.squash(self.score(x))[:, 0], "float32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sample_rate": self.sample_rate, "channels": self.channels}
