"""TensorFlow's versions of the backend-specific pieces (imported only under that backend)."""

import tensorflow as tf


def host_call(fn, args, shapes, dtypes):
    """``fn`` (numpy in, a tuple of numpy arrays out) through ``tf.numpy_function``;
    each result reshaped to its shape, a ``None`` size taken from the first
    argument at run time (an unknown batch in a graph)."""
    results = tf.numpy_function(
        fn, list(args), [tf.as_dtype(dtype) for dtype in dtypes], stateful=False
    )
    if len(dtypes) == 1:  # numpy_function returns a lone tensor, not a list, for one result
        results = [results]
    reference = tf.shape(args[0])
    return tuple(
        tf.reshape(
            result, [reference[axis] if size is None else size for axis, size in enumerate(shape)]
        )
        for result, shape in zip(results, shapes)
    )


def is_traced(x):
    """Whether ``x`` is a symbolic graph tensor (inside ``tf.function`` or ``tf.data``)."""
    return tf.is_symbolic_tensor(x)
