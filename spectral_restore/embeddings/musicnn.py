"""musicnn (Pons & Serra) as a Keras 3 network, with a loader for the TF1 checkpoints
that the ``musicnn`` wheel ships (``pip install --no-deps musicnn``).

The wheel's models were trained on MagnaTagATune (``MTT_*``) and the Million Song
Dataset (``MSD_*``) to predict 50 tags from 3 s log-mel patches at 16 kHz. Two
architectures: ``musicnn`` (musically motivated timbral/temporal front end, a dense
1-D CNN mid end, global max+mean pooling and two dense layers; any number of frames)
and ``vgg`` (five 3x3 conv blocks; exactly 187 frames).

Layer names are the TF1 variable scopes of the original graph (``conv2d_5``,
``batch_normalization_9``, ``1CNN`` ...), so checkpoint variables load by name.

Reference: J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks
for music audio tagging", ISMIR late-breaking demo, 2019 (arXiv:1909.06654).
"""

import importlib.util
import os

import keras
import numpy as np
from keras import layers, ops

from spectral_restore import spectral
from spectral_restore.audio_io import resample
from spectral_restore.checks import check_choice

SAMPLE_RATE = 16000
FFT_LENGTH = 512
HOP_LENGTH = 256
NUM_MELS = 96
# Frames in the 3 s patches the models were trained on (and the only length vgg takes).
PATCH_FRAMES = 187
NUM_TAGS = 50

# model name -> (architecture, keyword arguments of the network)
MODELS = {
    "MTT_musicnn": ("musicnn", {"midend_filters": 64, "backend_units": 200}),
    "MSD_musicnn": ("musicnn", {"midend_filters": 64, "backend_units": 200}),
    "MSD_musicnn_big": ("musicnn", {"midend_filters": 512, "backend_units": 500}),
    "MTT_vgg": ("vgg", {"filters": 128}),
    "MSD_vgg": ("vgg", {"filters": 128}),
}
MUSICNN_FEATURES = (
    "timbral",
    "temporal",
    "cnn1",
    "cnn2",
    "cnn3",
    "mean_pool",
    "max_pool",
    "penultimate",
    "logits",
    "taggram",
)
VGG_FEATURES = ("pool1", "pool2", "pool3", "pool4", "pool5", "logits", "taggram")
# Batch normalisation of tf.compat.v1.layers (the original's): epsilon 1e-3.
BN_EPSILON = 1e-3


def log_mel(waveform):
    """musicnn's input: ``log10(1 + 10000 * mel)`` of 16 kHz waveforms ``[batch, samples]``.

    Formula: power spectrogram of a centred 512-point periodic Hann STFT (hop 256,
    zero padding at the edges), 96 Slaney mel bands (0-8 kHz, Slaney-normalised),
    then ``log10(1 + 10000 * m)``; as ``librosa.feature.melspectrogram`` (librosa >=
    0.10) followed by musicnn's compression, without its float16 rounding.
    Returns ``[batch, 1 + samples // 256, 96]``.
    """
    config = spectral.STFTConfig(
        frame_length=FFT_LENGTH, hop_length=HOP_LENGTH, center=True, pad_mode="constant"
    )
    real, imag = spectral.stft(ops.cast(waveform, "float32"), config)
    power = ops.square(real) + ops.square(imag)
    filters = spectral.mel_filterbank(NUM_MELS, SAMPLE_RATE, FFT_LENGTH)
    mel = ops.matmul(power, ops.convert_to_tensor(filters))
    return ops.log10(1.0 + 10000.0 * mel)


def _pad_time(x, before, after):
    return ops.pad(x, [(0, 0), (before, after)] + [(0, 0)] * (len(x.shape) - 2))


@keras.saving.register_keras_serializable(package="spectral_restore")
class MusicnnNetwork(keras.Model):
    """The musicnn or vgg tagger on log-mel input ``[batch, frames, 96]``.

    Call: ``features = net(log_mel)``, a dict of the activations the original
    ``musicnn.extractor`` exposes (``MUSICNN_FEATURES`` or ``VGG_FEATURES``; the
    frequency-collapsed maps squeezed as there) plus ``logits`` and ``taggram``
    (sigmoid of the logits). Batch normalisation always uses its moving statistics:
    the network is a frozen feature extractor. Runs in float32.

    Args:
        architecture: str. "musicnn" or "vgg". Defaults to "musicnn".
        num_tags: int. Output tags. Defaults to 50.
        midend_filters, backend_units: int. musicnn widths (64/200; 512/500 for the
            big MSD model).
        filters: int. vgg width. Defaults to 128.
    """

    def __init__(
        self,
        architecture="musicnn",
        num_tags=NUM_TAGS,
        midend_filters=64,
        backend_units=200,
        filters=128,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if architecture not in ("musicnn", "vgg"):
            raise ValueError(
                f"`architecture` must be 'musicnn' or 'vgg'. Received: {architecture!r}"
            )
        self.architecture = architecture
        self.num_tags = int(num_tags)
        self.widths = {
            "midend_filters": int(midend_filters),
            "backend_units": int(backend_units),
            "filters": int(filters),
        }
        self.feature_names = MUSICNN_FEATURES if architecture == "musicnn" else VGG_FEATURES
        self.named_layers = {}
        if architecture == "musicnn":
            self._build_musicnn_layers(midend_filters, backend_units)
        else:
            self._build_vgg_layers(filters)
        self.trainable = False

    def _add(self, layer):
        self.named_layers[layer.name] = layer
        return layer

    def _bn(self, index):
        name = "batch_normalization" if index == 0 else f"batch_normalization_{index}"
        return self._add(layers.BatchNormalization(epsilon=BN_EPSILON, name=name, dtype="float32"))

    def _conv(self, index, filters, kernel, padding, name=None):
        name = name or ("conv2d" if index == 0 else f"conv2d_{index}")
        return self._add(
            layers.Conv2D(
                filters, kernel, padding=padding, activation="relu", name=name, dtype="float32"
            )
        )

    def _build_musicnn_layers(self, midend_filters, backend_units):
        # Front end: 1.6 x 128 timbral filters spanning 40% and 70% of the mel axis,
        # 1.6 x 32 temporal filters of 128, 64 and 32 frames (the original's int() widths).
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_norm = self._bn(0)
        self.timbral_blocks = [
            (self._conv(0, timbral, (7, int(0.4 * NUM_MELS)), "valid"), self._bn(1)),
            (self._conv(1, timbral, (7, int(0.7 * NUM_MELS)), "valid"), self._bn(2)),
        ]
        self.temporal_blocks = [
            (self._conv(2 + i, temporal, (length, 1), "same"), self._bn(3 + i))
            for i, length in enumerate((128, 64, 32))
        ]
        frontend_width = 2 * timbral + 3 * temporal
        widths = (frontend_width, midend_filters, midend_filters)
        self.midend_blocks = [
            (self._conv(5 + i, midend_filters, (7, width), "valid"), self._bn(6 + i))
            for i, width in enumerate(widths)
        ]
        self.pool_norm = self._bn(9)
        self.dense = self._add(
            layers.Dense(backend_units, activation="relu", name="dense", dtype="float32")
        )
        self.dense_norm = self._bn(10)
        self.logits_layer = self._add(layers.Dense(self.num_tags, name="dense_1", dtype="float32"))

    def _build_vgg_layers(self, filters):
        self.input_norm = self._bn(0)
        self.vgg_blocks = [
            (self._conv(0, filters, (3, 3), "same", name=f"{i + 1}CNN"), self._bn(i + 1))
            for i in range(5)
        ]
        self.vgg_pools = [
            layers.MaxPooling2D(pool, strides, dtype="float32")
            for pool, strides in (((4, 1), 2), ((2, 2), 2), ((2, 2), 2), ((2, 2), 2), ((4, 4), 4))
        ]
        self.logits_layer = self._add(layers.Dense(self.num_tags, name="dense", dtype="float32"))

    def call(self, log_mel_input):
        x = ops.cast(log_mel_input, "float32")
        if len(x.shape) != 3 or x.shape[-1] != NUM_MELS:
            raise ValueError(
                f"musicnn takes log-mel input [batch, frames, {NUM_MELS}]. Received shape {x.shape}"
            )
        x = self.input_norm(x[..., None], training=False)
        if self.architecture == "vgg":
            return self._call_vgg(x)
        return self._call_musicnn(x)

    def _call_musicnn(self, x):
        padded = _pad_time(x, 3, 3)
        timbral = [
            ops.max(norm(conv(padded), training=False), axis=2)
            for conv, norm in self.timbral_blocks
        ]
        temporal = [
            ops.max(norm(conv(x), training=False), axis=2) for conv, norm in self.temporal_blocks
        ]
        frontend = ops.concatenate(timbral + temporal, axis=-1)
        midend = []
        previous = frontend
        for i, (conv, norm) in enumerate(self.midend_blocks):
            out = norm(conv(_pad_time(previous[..., None], 3, 3)), training=False)[:, :, 0, :]
            previous = out if i == 0 else out + previous
            midend.append(previous)
        stacked = ops.concatenate([frontend] + midend, axis=-1)
        max_pool = ops.max(stacked, axis=1)
        mean_pool = ops.mean(stacked, axis=1)
        # The original flattens [features, (max, mean)]: max and mean interleave.
        pooled = ops.reshape(ops.stack([max_pool, mean_pool], axis=-1), (-1, 2 * stacked.shape[-1]))
        pooled = self.pool_norm(pooled, training=False)
        penultimate = self.dense_norm(self.dense(pooled), training=False)
        logits = self.logits_layer(penultimate)
        return {
            "timbral": ops.concatenate(timbral, axis=-1),
            "temporal": ops.concatenate(temporal, axis=-1),
            "cnn1": midend[0],
            "cnn2": midend[1],
            "cnn3": midend[2],
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": ops.sigmoid(logits),
        }

    def _call_vgg(self, x):
        if x.shape[1] is not None and x.shape[1] != PATCH_FRAMES:
            raise ValueError(
                f"The vgg models take exactly {PATCH_FRAMES} frames. Received {x.shape[1]}"
            )
        outputs = {}
        for i, ((conv, norm), pool) in enumerate(zip(self.vgg_blocks, self.vgg_pools)):
            x = pool(norm(conv(x), training=False))
            outputs[f"pool{i + 1}"] = x
        logits = self.logits_layer(ops.reshape(x, (-1, int(np.prod(x.shape[1:])))))
        outputs.update(logits=logits, taggram=ops.sigmoid(logits))
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "architecture": self.architecture,
            "num_tags": self.num_tags,
            **self.widths,
        }

    def embed(self, waveform, sample_rate=SAMPLE_RATE):
        """Features of waveforms ``[batch, samples]`` at ``sample_rate``.

        Resamples to 16 kHz and computes :func:`log_mel` inside (differentiable).
        musicnn sees the whole clip at once; vgg sees consecutive 187-frame
        patches (the last one zero-padded, log-mel 0 being silence) and its
        features get a patch axis after the batch axis.
        """
        x = resample(ops.cast(waveform, "float32"), sample_rate, SAMPLE_RATE)
        mel = log_mel(x)
        if self.architecture == "musicnn":
            return self(mel)
        frames = mel.shape[1]
        patches = max(1, -(-frames // PATCH_FRAMES))
        mel = _pad_time(mel, 0, patches * PATCH_FRAMES - frames)
        features = self(ops.reshape(mel, (-1, PATCH_FRAMES, NUM_MELS)))
        return {
            name: ops.reshape(value, (-1, patches) + tuple(value.shape[1:]))
            for name, value in features.items()
        }


def installed_checkpoint(model):
    """The checkpoint prefix of ``model`` inside the installed ``musicnn`` wheel."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or spec.origin is None:
        raise ValueError(
            "The musicnn checkpoints come with the `musicnn` wheel: install it with "
            "`pip install --no-deps musicnn==0.1.0` (its own dependency pins are outdated), "
            "or pass checkpoint='path/to/MTT_musicnn/' (the folder of the .index/.data files)."
        )
    return os.path.join(os.path.dirname(spec.origin), model, "")


def _checkpoint_reader(prefix):
    import tensorflow as tf

    if not os.path.exists(prefix + ".index"):
        raise ValueError(
            f"No TF checkpoint at {prefix!r}: expected the file {prefix + '.index'!r}. The musicnn "
            "wheel stores each model as <model>/.index and <model>/.data-00000-of-00001; "
            "MSD_musicnn_big is only in the musicnn source repository."
        )
    return tf.compat.v1.train.NewCheckpointReader(prefix)


WEIGHT_VARIABLES = {
    "Conv2D": ("kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def load_musicnn(model="MTT_musicnn", checkpoint=None):
    """A :class:`MusicnnNetwork` with the pretrained weights of ``model``.

    Args:
        model: str. One of ``MODELS``: "MTT_musicnn" (default), "MSD_musicnn",
            "MTT_vgg", "MSD_vgg" (in the wheel) or "MSD_musicnn_big" (source only).
        checkpoint: str or None. Checkpoint prefix (a folder path ending in "/" as the
            wheel stores them); None reads the installed ``musicnn`` package.

    Every variable of the network is read by its TF1 name and checked for shape;
    optimiser slots in the checkpoint are ignored.
    """
    check_choice("model", model, tuple(sorted(MODELS)))
    architecture, kwargs = MODELS[model]
    prefix = checkpoint if checkpoint is not None else installed_checkpoint(model)
    reader = _checkpoint_reader(os.fspath(prefix))
    available = reader.get_variable_to_shape_map()
    network = MusicnnNetwork(architecture, **kwargs, name=model)
    network(np.zeros((1, PATCH_FRAMES, NUM_MELS), "float32"))
    for name, layer in network.named_layers.items():
        values = []
        for variable, weight in zip(WEIGHT_VARIABLES[type(layer).__name__], layer.weights):
            key = f"{name}/{variable}"
            if key not in available:
                raise ValueError(
                    f"Checkpoint {prefix!r} lacks {key!r}: it is not a {model} checkpoint"
                )
            if tuple(available[key]) != tuple(weight.shape):
                raise ValueError(
                    f"Checkpoint {prefix!r}: {key!r} has shape {tuple(available[key])}, "
                    f"the {model} network needs {tuple(weight.shape)}"
                )
            values.append(reader.get_tensor(key))
        layer.set_weights(values)
    return network


__all__ = [
    "MODELS",
    "MusicnnNetwork",
    "installed_checkpoint",
    "load_musicnn",
    "log_mel",
]
