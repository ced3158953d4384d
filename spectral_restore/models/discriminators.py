"""Spectrogram discriminators for adversarial training."""

import keras
from keras import layers, ops

from spectral_restore import spectral

register = keras.saving.register_keras_serializable(package="spectral_restore")

DEFAULT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))


@register
class SpectrogramDiscriminator(keras.layers.Layer):
    """One resolution: a 2-D conv stack over the power-law compressed magnitude
    (``|X|^0.3``) of one STFT; returns ``(logits [batch, frames, bins'], features)``."""

    def __init__(self, fft_length=1024, hop_length=256, frame_length=1024, channels=32, **kwargs):
        super().__init__(**kwargs)
        self.fft_length, self.hop_length, self.frame_length = int(fft_length), int(hop_length), int(frame_length)
        self.channels = int(channels)
        self.stft_config = spectral.STFTConfig(frame_length=self.frame_length, hop_length=self.hop_length, fft_length=self.fft_length)
        self.convs = [
            layers.Conv2D(self.channels, (3, 9), padding="same", name="conv_0"),
            layers.Conv2D(self.channels, (3, 9), strides=(1, 2), padding="same", name="conv_1"),
            layers.Conv2D(self.channels, (3, 9), strides=(1, 2), padding="same", name="conv_2"),
            layers.Conv2D(self.channels, (3, 9), strides=(1, 2), padding="same", name="conv_3"),
            layers.Conv2D(self.channels, (3, 3), padding="same", name="conv_4"),
        ]
        self.head = layers.Conv2D(1, (3, 3), padding="same", name="logits")

    def call(self, waveform):
        real, imag = spectral.stft(ops.cast(waveform, "float32"), self.stft_config)
        x = spectral.compress_magnitude(spectral.magnitude(real, imag), 0.3)[..., None]
        x = ops.cast(x, self.compute_dtype)
        features = []
        for conv in self.convs:
            x = ops.leaky_relu(conv(x), negative_slope=0.1)
            features.append(x)
        logits = self.head(x)[..., 0]
        return ops.cast(logits, "float32"), features

    def get_config(self):
        return {
            **super().get_config(),
            "fft_length": self.fft_length, "hop_length": self.hop_length,
            "frame_length": self.frame_length, "channels": self.channels,
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

    def __init__(self, resolutions=DEFAULT_RESOLUTIONS, channels=32, **kwargs):
        super().__init__(**kwargs)
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.channels = int(channels)
        self.discriminators = [
            SpectrogramDiscriminator(n, h, w, channels=self.channels, name=f"resolution_{n}_{h}")
            for n, h, w in self.resolutions
        ]

    def call(self, waveform, training=False):
        return [d(waveform) for d in self.discriminators]

    def get_config(self):
        return {**super().get_config(), "resolutions": [list(r) for r in self.resolutions], "channels": self.channels}
