"""The few pieces that differ between Keras backends, behind one neutral interface.

Code that needs TensorFlow or JAX itself lives in the modules named for that backend
(``spectral_restore.backend.tensorflow``, ``spectral_restore.backend.jax``), which are
imported only when that backend is active; everything else in the package calls the
functions here and stays backend-neutral.
"""

import importlib.util

import keras


def name():
    """The active Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def tensorflow_available():
    """Whether TensorFlow is installed (it is optional under the JAX and PyTorch backends)."""
    return importlib.util.find_spec("tensorflow") is not None


def require_tensorflow(feature):
    """Raises a clear error when ``feature`` (a phrase such as "SavedModel export")
    needs TensorFlow and it is not installed."""
    if not tensorflow_available():
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed (active Keras backend: {name()}). "
            "Install it with `pip install 'spectral-restore[tensorflow]'`."
        )


def is_traced(x):
    """Whether ``x`` is a symbol being traced into a compiled function (a graph tensor
    inside ``tf.function`` or ``tf.data``, a tracer under ``jax.jit``) rather than a
    value at hand (eager execution; always under PyTorch).

    Code that branches on a tensor's value takes a Python branch when this is False:
    ``keras.ops.cond`` would otherwise make eager JAX trace and compile both sides on
    every call.

    Example:
    >>> is_traced(keras.ops.ones(2))
    False
    """
    if name() == "tensorflow":
        from spectral_restore.backend import tensorflow as implementation
    elif name() == "jax":
        from spectral_restore.backend import jax as implementation
    else:
        return False
    return implementation.is_traced(x)
