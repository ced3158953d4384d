"""JAX's versions of the backend-specific pieces (imported only under that backend)."""

import jax

from spectral_restore.backend import static_shape


def host_call(fn, args, shapes, dtypes):
    """``fn`` (numpy in, a tuple of numpy arrays out) through ``jax.pure_callback``,
    with static result shapes (a ``None`` size is the first argument's); under
    ``vmap`` it is called once per example."""
    specs = tuple(jax.ShapeDtypeStruct(static_shape(shape, args[0].shape), dtype) for shape, dtype in zip(shapes, dtypes))
    return jax.pure_callback(fn, specs, *args, vmap_method="sequential")


def is_traced(x):
    """Whether ``x`` is a tracer (under ``jit``, ``vmap``, ``grad``...)."""
    return isinstance(x, jax.core.Tracer)
