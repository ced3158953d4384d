"""The few pieces that differ between Keras backends, behind one neutral interface.

Code that needs TensorFlow or JAX itself lives in the modules named for that backend
(``spectral_restore.backend.tensorflow``, ``spectral_restore.backend.jax``), which are
imported only when that backend is active; everything else in the package calls the
functions here and stays backend-neutral.
"""

import importlib.util
import logging

import keras
import numpy as np


def name():
    """The active Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def tensorflow_available():
    """Whether TensorFlow is installed (it is optional under the JAX and PyTorch backends)."""
    return importlib.util.find_spec("tensorflow") is not None


def require_tensorflow(feature):
    """Raises a clear ``ModuleNotFoundError`` when ``feature`` (a phrase such as
    "SavedModel export") needs TensorFlow and it is not installed."""
    if not tensorflow_available():
        # ModuleNotFoundError (an ImportError) names the missing module, as Python's own does.
        raise ModuleNotFoundError(
            f"{feature} needs TensorFlow, which is not installed (active Keras backend: {name()}). "
            "Install it with `pip install 'spectral-restore[tensorflow]'`.",
            name="tensorflow",
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
            logging.getLogger(__name__).info(
                "TensorFlow keeps its GPUs (already initialised): %s", err
            )
    return tf


def _implementation():
    """The module of the active backend's own pieces, or None (PyTorch: eager only)."""
    if name() == "tensorflow":
        from spectral_restore.backend import tensorflow as implementation
    elif name() == "jax":
        from spectral_restore.backend import jax as implementation
    else:
        implementation = None
    return implementation


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
    implementation = _implementation()
    return False if implementation is None else implementation.is_traced(x)


def host_call(fn, *args, result_shape, result_dtype):
    """Runs numpy code on the host from inside a compiled step, on any backend.

    TensorFlow: ``tf.numpy_function`` (eagerly and in ``tf.function``; not under
    XLA, ``jit_compile=True``); JAX: ``jax.pure_callback`` (eagerly and under
    ``jit``); other backends: ``fn`` called directly on numpy copies. No gradient
    flows through the call (the arguments are stop-gradient'd), and ``fn`` must be
    pure: JAX may call it more or fewer times than the code reads.

    Args:
        fn: callable. Takes one numpy array per argument, returns one array or a
            tuple of arrays (cast to ``result_dtype``).
        *args: tensors or arrays.
        result_shape: tuple. The result's shape, or one shape per result when
            ``result_dtype`` is a tuple. A ``None`` entry is the first argument's
            size on that axis (its batch for axis 0), so TensorFlow graphs with an
            unknown batch size work; under JAX every shape is static anyway.
        result_dtype: str or tuple of str. The result's dtype, or one per result.

    Returns:
        A tensor, or a tuple of tensors when ``result_dtype`` is a tuple.

    Example:
    >>> import numpy as np
    >>> peak = host_call(lambda x: np.abs(x).max(axis=1), np.array([[1.0, -3.0], [2.0, 0.5]], "float32"),
    ...                  result_shape=(None,), result_dtype="float32")
    >>> np.asarray(peak).tolist()
    [3.0, 2.0]
    """
    several = not isinstance(result_dtype, str)
    dtypes = tuple(result_dtype) if several else (result_dtype,)
    shapes = tuple(tuple(shape) for shape in result_shape) if several else (tuple(result_shape),)
    if len(shapes) != len(dtypes):
        raise ValueError(
            f"`result_shape` must give one shape per dtype of `result_dtype` ({len(dtypes)}). "
            f"Received: result_shape={result_shape}"
        )
    if not args:
        raise ValueError(
            "host_call needs at least one argument: None in `result_shape` refers to the first"
        )
    for shape in shapes:
        if not all(size is None or (isinstance(size, int) and size >= 0) for size in shape):
            raise ValueError(
                f"`result_shape` entries must be sizes (int >= 0) or None. Received: {result_shape}"
            )

    def on_numpy(*arrays):
        results = fn(*arrays)
        results = tuple(results) if several else (results,)
        if len(results) != len(dtypes):
            raise ValueError(
                f"host_call's function returned {len(results)} results; `result_dtype` names {len(dtypes)}"
            )
        return tuple(np.asarray(result, dtype) for result, dtype in zip(results, dtypes))

    args = tuple(keras.ops.stop_gradient(keras.ops.convert_to_tensor(arg)) for arg in args)
    implementation = _implementation()
    if implementation is not None:
        # Sizes known when tracing are filled in here; a size still None is left to
        # the backend (TensorFlow reads it from the first argument at run time).
        known = tuple(static_shape(shape, tuple(args[0].shape)) for shape in shapes)
        results = implementation.host_call(on_numpy, args, known, dtypes)
    else:
        arrays = tuple(keras.ops.convert_to_numpy(arg) for arg in args)
        results = on_numpy(*arrays)
        for result, shape in zip(results, shapes):
            expected = static_shape(shape, arrays[0].shape)
            if result.shape != expected:
                raise ValueError(
                    f"host_call's function returned shape {result.shape}; `result_shape` says {expected}"
                )
        results = tuple(keras.ops.convert_to_tensor(result) for result in results)
    return tuple(results) if several else results[0]


def static_shape(shape, reference):
    """``shape`` with each ``None`` replaced by ``reference``'s size on that axis."""
    return tuple(reference[axis] if size is None else size for axis, size in enumerate(shape))
