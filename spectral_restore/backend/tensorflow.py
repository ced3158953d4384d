"""TensorFlow's versions of the backend-specific pieces (imported only under that backend)."""

import tensorflow as tf


def is_traced(x):
    """Whether ``x`` is a symbolic graph tensor (inside ``tf.function`` or ``tf.data``)."""
    return tf.is_symbolic_tensor(x)
