"""JAX's versions of the backend-specific pieces (imported only under that backend)."""

import jax


def is_traced(x):
    """Whether ``x`` is a tracer (under ``jit``, ``vmap``, ``grad``...)."""
    return isinstance(x, jax.core.Tracer)
