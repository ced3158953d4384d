"""The OpenL3 audio network (Cramer et al., 2019) in Keras 3, with a loader for the
official ``.h5`` weight files.

The ``openl3`` package cannot be installed offline (its build downloads the weights),
so the project defines the network itself: a spectrogram front end computed in
``keras.ops`` from 1 s windows at 48 kHz, then four conv blocks (64, 128, 256, 512
filters, 3x3, batch norm, ReLU; 2x2 max pooling after the first three) ending in the
``audio_embedding_layer`` conv, max-pooled and flattened to 512 or 6144 values.

Front ends (as the openl3 0.4 release computes them with kapre 0.3):
- ``linear``: |STFT| of 512-point periodic Hann frames, hop 242, no padding: 257 x 197.
- ``mel128`` / ``mel256``: |STFT| (2048 points, hop 242, zero-padded at the end to
  199 frames) times a Slaney mel filterbank (0-24 kHz): 128 or 256 x 199.
Both then ``10 log10(max(S, 1e-10))`` minus its maximum over the window, floored at
-80 dB (openl3's ``kapre_v0_1_4_magnitude_to_decibel``: ten, not twenty, times the
log of a magnitude).

Reference: A. L. Cramer, H.-H. Wu, J. Salamon, J. P. Bello, "Look, Listen and Learn
More: Design Choices for Deep Audio Embeddings", ICASSP 2019.
"""

import gzip
import importlib.util
import io
import os

import keras
import numpy as np
from keras import layers, ops

from spectral_restore import spectral
from spectral_restore.audio_io import resample
from spectral_restore.checks import check_choice

SAMPLE_RATE = 48000
WINDOW = SAMPLE_RATE  # 1 s
HOP_LENGTH = 242
INPUT_REPRS = ("linear", "mel128", "mel256")
CONTENT_TYPES = ("music", "env")
EMBEDDING_SIZES = (512, 6144)
# (freq, time) max-pooling of the last conv map that gives each embedding size.
POOL_SIZES = {
    "linear": {6144: (8, 8), 512: (32, 24)},
    "mel128": {6144: (4, 8), 512: (16, 24)},
    "mel256": {6144: (8, 8), 512: (32, 24)},
}
FEATURES = ("pool1", "pool2", "pool3", "audio_embedding_layer", "embedding")
BLOCK_FILTERS = (64, 128, 256, 512)
BN_EPSILON = 1e-3  # Keras 2's default, which the official networks used
DYNAMIC_RANGE_DB = 80.0
# The decibel conversion's floor; under a square root as a power floor it keeps the
# gradient of |X| finite at zero and changes no value above it.
MAGNITUDE_FLOOR = 1e-10
WEIGHTS_URL = "https://github.com/marl/openl3/raw/models/openl3_audio_{}_{}-v0_4_0.h5.gz"


def spectrogram(windows, input_repr="mel256"):
    """OpenL3's input for 1 s windows at 48 kHz ``[n, 48000]``: ``[n, freq, time, 1]`` in dB.

    See the module docstring for the formulas; differentiable (the -80 dB floor has
    zero gradient below it).
    """
    check_choice("input_repr", input_repr, INPUT_REPRS)
    windows = ops.cast(windows, "float32")
    if input_repr == "linear":
        config = spectral.STFTConfig(frame_length=512, hop_length=HOP_LENGTH, center=False)
        real, imag = spectral.stft(windows, config)
        spec = spectral.magnitude(real, imag, floor=MAGNITUDE_FLOOR**2)
    else:
        fft_length = 2048
        frames = -(-WINDOW // HOP_LENGTH)
        windows = ops.pad(windows, [(0, 0), (0, (frames - 1) * HOP_LENGTH + fft_length - WINDOW)])
        config = spectral.STFTConfig(frame_length=fft_length, hop_length=HOP_LENGTH, center=False)
        real, imag = spectral.stft(windows, config)
        filters = spectral.mel_filterbank(int(input_repr[3:]), SAMPLE_RATE, fft_length)
        spec = ops.matmul(
            spectral.magnitude(real, imag, floor=MAGNITUDE_FLOOR**2), ops.convert_to_tensor(filters)
        )
    decibels = 10.0 * ops.log10(ops.maximum(spec, MAGNITUDE_FLOOR))
    decibels = decibels - ops.max(decibels, axis=(1, 2), keepdims=True)
    decibels = ops.maximum(decibels, -DYNAMIC_RANGE_DB)
    return ops.transpose(decibels, (0, 2, 1))[..., None]


@keras.saving.register_keras_serializable(package="spectral_restore")
class OpenL3Network(keras.Model):
    """The OpenL3 audio embedding network on spectrogram input ``[n, freq, time, 1]``.

    Call: ``features = net(spectrogram)``, a dict with ``pool1``..``pool3`` (the
    pooled outputs of the first three blocks), ``audio_embedding_layer`` (the last
    conv map, before pooling) and ``embedding`` (``[n, embedding_size]``). Batch
    normalisation uses its moving statistics (a frozen feature extractor); float32.
    :meth:`embed` takes waveforms instead.

    Args:
        input_repr: str. "linear", "mel128" or "mel256". Defaults to "mel256".
        embedding_size: int. 512 or 6144. Defaults to 6144.
    """

    def __init__(self, input_repr="mel256", embedding_size=6144, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.input_repr = check_choice("input_repr", input_repr, INPUT_REPRS)
        self.embedding_size = check_choice("embedding_size", embedding_size, EMBEDDING_SIZES)
        self.feature_names = FEATURES
        self.weighted_layers = [
            layers.BatchNormalization(
                epsilon=BN_EPSILON, name="batch_normalization", dtype="float32"
            )
        ]
        for block, filters in enumerate(BLOCK_FILTERS):
            for position in range(2):
                index = 2 * block + position + 1
                last = index == 2 * len(BLOCK_FILTERS)
                self.weighted_layers.append(
                    layers.Conv2D(
                        filters,
                        (3, 3),
                        padding="same",
                        dtype="float32",
                        name="audio_embedding_layer" if last else f"conv2d_{index}",
                    )
                )
                if not last:
                    self.weighted_layers.append(
                        layers.BatchNormalization(
                            epsilon=BN_EPSILON, name=f"batch_normalization_{index}", dtype="float32"
                        )
                    )
        self.block_pool = layers.MaxPooling2D((2, 2), strides=2, dtype="float32")
        self.embedding_pool = layers.MaxPooling2D(
            POOL_SIZES[input_repr][embedding_size], padding="same", dtype="float32"
        )
        self.trainable = False

    def call(self, spectrogram_input):
        x = ops.cast(spectrogram_input, "float32")
        if len(x.shape) != 4:
            raise ValueError(
                f"OpenL3 takes spectrograms [n, freq, time, 1]. Received shape {x.shape}"
            )
        features = {}
        x = self.weighted_layers[0](x, training=False)
        convs = self.weighted_layers[1:]
        for block in range(len(BLOCK_FILTERS)):
            first_conv, first_norm, second_conv = convs[4 * block : 4 * block + 3]
            x = ops.relu(first_norm(first_conv(x), training=False))
            x = second_conv(x)
            if block == len(BLOCK_FILTERS) - 1:
                break
            x = ops.relu(convs[4 * block + 3](x, training=False))
            x = self.block_pool(x)
            features[f"pool{block + 1}"] = x
        features["audio_embedding_layer"] = x
        pooled = self.embedding_pool(x)
        features["embedding"] = ops.reshape(pooled, (-1, int(np.prod(pooled.shape[1:]))))
        return features

    def get_config(self):
        return {
            **super().get_config(),
            "input_repr": self.input_repr,
            "embedding_size": self.embedding_size,
        }

    def embed(self, waveform, sample_rate=SAMPLE_RATE, hop_seconds=0.5, center=True):
        """Features of waveforms ``[batch, samples]`` at ``sample_rate``.

        Resamples to 48 kHz, pads half a window before the signal when ``center``
        (as openl3 does) and zeros after it so every sample is seen, cuts 1 s windows
        every ``hop_seconds`` and runs them together; each feature gets a window
        axis after the batch axis. Differentiable with respect to ``waveform``.
        """
        if not hop_seconds > 0:
            raise ValueError(f"`hop_seconds` must be > 0. Received: {hop_seconds!r}")
        x = resample(ops.cast(waveform, "float32"), sample_rate, SAMPLE_RATE)
        hop = max(1, round(hop_seconds * SAMPLE_RATE))
        length = x.shape[-1] + (WINDOW // 2 if center else 0)
        count = 1 if length <= WINDOW else 1 + -(-(length - WINDOW) // hop)
        x = ops.pad(
            x, [(0, 0), (WINDOW // 2 if center else 0, (count - 1) * hop + WINDOW - length)]
        )
        starts = np.arange(count)[:, None] * hop + np.arange(WINDOW)[None, :]
        windows = ops.reshape(
            ops.take(x, ops.convert_to_tensor(starts, "int32"), axis=1), (-1, WINDOW)
        )
        features = self(spectrogram(windows, self.input_repr))
        return {
            name: ops.reshape(value, (-1, count) + tuple(value.shape[1:]))
            for name, value in features.items()
        }


def _open_h5(path):
    import h5py

    if str(path).endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return h5py.File(io.BytesIO(handle.read()), "r")
    return h5py.File(path, "r")


def _decode(names):
    return [name.decode("utf8") if isinstance(name, bytes) else str(name) for name in names]


def read_weight_file(path):
    """``[(layer_name, [arrays])]`` of a Keras 2 HDF5 weight file, in its layer order.

    Reads the layout ``save_weights`` writes (root attribute ``layer_names``; per
    layer a group with attribute ``weight_names`` and one dataset per name) and the
    same layout under ``model_weights`` (a whole saved model). Layers without
    weights are left out.
    """
    with _open_h5(path) as handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path} is not a Keras HDF5 weight file: no 'layer_names' attribute")
        layers_read = []
        for name in _decode(root.attrs["layer_names"]):
            group = root[name]
            arrays = [
                np.asarray(group[weight]) for weight in _decode(group.attrs.get("weight_names", []))
            ]
            if arrays:
                layers_read.append((name, arrays))
    return layers_read


def weight_file_name(input_repr, content_type):
    return f"openl3_audio_{input_repr}_{content_type}.h5"


def find_weight_file(input_repr, content_type, weights=None):
    """The weight file to load: ``weights`` (a file, or a folder holding the official
    name, ``.h5`` or ``.h5.gz``), else the installed ``openl3`` package's file."""
    name = weight_file_name(input_repr, content_type)
    if weights is not None:
        weights = os.fspath(weights)
        candidates = (
            [weights]
            if os.path.isfile(weights)
            else [
                os.path.join(weights, name),
                os.path.join(weights, name + ".gz"),
            ]
        )
    else:
        spec = importlib.util.find_spec("openl3")
        folder = os.path.dirname(spec.origin) if spec and spec.origin else None
        candidates = [os.path.join(folder, name)] if folder else []
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    where = (
        f"in {weights!r}"
        if weights is not None
        else "(no weights path given, no openl3 package installed)"
    )
    raise ValueError(
        f"OpenL3 weights {name} not found {where}. Download "
        f"{WEIGHTS_URL.format(input_repr, content_type)} (or `pip install openl3`, whose build "
        "downloads them) and pass its path, .h5 or .h5.gz, as `weights`."
    )


def load_openl3(input_repr="mel256", content_type="music", embedding_size=6144, weights=None):
    """An :class:`OpenL3Network` with official (or same-layout) weights.

    Args:
        input_repr: str. "linear", "mel128" or "mel256". Defaults to "mel256".
        content_type: str. "music" or "env" (which weight file). Defaults to "music".
        embedding_size: int. 512 or 6144. Defaults to 6144.
        weights: str or None. A weight file (.h5 or .h5.gz) or a folder with
            ``openl3_audio_<input_repr>_<content_type>.h5``; None looks in the
            installed ``openl3`` package.

    The file's layers are matched to the network's in order: front-end layers of
    older kapre releases (names containing "spectrogram") are skipped, every
    remaining layer must have the shapes of the network's layer at its place, and
    the last must be named ``audio_embedding_layer``.
    """
    check_choice("content_type", content_type, CONTENT_TYPES)
    path = find_weight_file(input_repr, content_type, weights)
    network = OpenL3Network(input_repr, embedding_size, name=f"openl3_{input_repr}_{content_type}")
    frames = 197 if input_repr == "linear" else -(-WINDOW // HOP_LENGTH)
    bins = 257 if input_repr == "linear" else int(input_repr[3:])
    network(np.zeros((1, bins, frames, 1), "float32"))
    stored = [
        (name, arrays) for name, arrays in read_weight_file(path) if "spectrogram" not in name
    ]
    if len(stored) != len(network.weighted_layers) or stored[-1][0] != "audio_embedding_layer":
        raise ValueError(
            f"{path} holds {len(stored)} layers with weights ending in {stored[-1][0] if stored else None!r}; "
            f"an OpenL3 audio network has {len(network.weighted_layers)} ending in 'audio_embedding_layer'"
        )
    for layer, (name, arrays) in zip(network.weighted_layers, stored):
        wanted = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if wanted != found:
            raise ValueError(
                f"{path}: layer {name!r} has weight shapes {found}, the {input_repr} network's "
                f"{layer.name!r} needs {wanted}"
            )
        layer.set_weights(arrays)
    return network


__all__ = [
    "CONTENT_TYPES",
    "EMBEDDING_SIZES",
    "INPUT_REPRS",
    "OpenL3Network",
    "find_weight_file",
    "load_openl3",
    "read_weight_file",
    "spectrogram",
]
