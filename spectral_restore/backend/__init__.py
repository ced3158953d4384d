"""The few pieces that differ between Keras backends, behind one neutral interface.

Code that needs TensorFlow or JAX itself lives in the modules named for that backend
(``spectral_restore.backend.tensorflow``, ``spectral_restore.backend.jax``), which are
imported only when that backend is active; everything else in the package calls the
functions here and stays backend-neutral.
"""

import importlib.util
import logging

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


def host_tensorflow(feature):
    """TensorFlow for host-side work under any backend (reading TFDS data, writing
    TensorBoard summaries), after :func:`require_tensorflow` with ``feature``.

    Under another backend TensorFlow is hidden from the GPUs before its first op:
    left to see them, it would reserve their memory, which the active backend needs.
    """
    require_tensorflow(feature)
    import tensorflow as tf

    if name() != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError as err:
            logging.getLogger(__name__).info("TensorFlow keeps its GPUs (already initialised): %s", err)
    return tf
