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
