"""JAX's versions of the backend-specific pieces (imported only under that backend)."""

import jax


def host_call(fn, args, shapes, dtypes):
    """``fn`` (numpy in, a tuple of numpy arrays out) through ``jax.pure_callback``,
    with the static result ``shapes`` (every size known: JAX traces static shapes);
    under ``vmap`` it is called once per example."""
    specs = tuple(jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in zip(shapes, dtypes))
    return jax.pure_callback(fn, specs, *args, vmap_method="sequential")


def is_traced(x):
    """Whether ``x`` is a tracer (under ``jit``, ``vmap``, ``grad``...)."""
    return isinstance(x, jax.core.Tracer)
