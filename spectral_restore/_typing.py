"""Type aliases of the public signatures: names for annotations only, checked by no code."""

from collections.abc import Sequence
from typing import Any

# Whatever keras.ops accepts as an array: a tf.Tensor, jax.Array, torch.Tensor,
# numpy array or nested list. Keras 3 publishes no tensor type, so this is Any
# under a name that says what is meant.
Tensor = Any

# What a (multi-resolution) discriminator returns: one (logits, feature maps) pair
# per resolution.
DiscriminatorOutputs = Sequence[tuple[Tensor, Sequence[Tensor]]]

# A dtype name ("float32") or a keras.DTypePolicy; None for the default.
DType = Any

# Where audio comes from: an array [clips, samples] or a list of 1-D arrays, a folder
# or a list of audio files, a folder pair {"damaged": DIR, "clean": DIR}, "tfds:NAME",
# or (for the tf.data pipeline) a tf.data.Dataset of waveforms.
AudioSource = Any

# A stateless random seed: two integers (shape [2]).
Seed = Any
