"""Directional derivatives: automatic differentiation against finite differences.

A check compares ``<grad f(x), d>`` with the slope of ``t -> f(x + t d)`` at 0
measured from values of ``f`` alone. The slope is the intercept at ``t = 0`` of a
Theil-Sen line through the secant slopes ``(f(t_k+1) - f(t_k)) / step`` of
``2 * count + 1`` equally spaced points ``t_k = k * step``: with no kink or jump
on the line it is the central difference's ``f'(0) + O(step^2)``, its rounding
noise averaged over the points; an isolated jump or kink on the line (a clamp, a
threshold, an absolute value crossing 0) moves one or two secants and is
outvoted. Written for any Keras backend (TensorFlow, JAX, PyTorch).
"""

import keras
import numpy as np
import scipy.stats
from keras import ops


def gradients(function, arrays):
    """Gradients of the scalar ``function(*tensors)`` with respect to each of
    ``arrays`` (numpy), as float64 numpy arrays; fails if any gradient is missing."""
    backend = keras.backend.backend()
    tensors = [as_tensor(a) for a in arrays]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = function(*tensors)
        grads = tape.gradient(value, tensors)
    elif backend == "jax":
        import jax

        grads = jax.grad(lambda args: function(*args))(tensors)
    elif backend == "torch":
        tensors = [t.detach().requires_grad_(True) for t in tensors]
        function(*tensors).backward()
        grads = [t.grad for t in tensors]
    else:
        raise NotImplementedError(f"no gradient helper for the {backend} backend")
    missing = [i for i, g in enumerate(grads) if g is None]
    assert not missing, f"no gradient reaches argument(s) {missing}"
    return [np.asarray(ops.convert_to_numpy(g), np.float64) for g in grads]


def as_tensor(array):
    """A backend tensor of ``array``'s own dtype (Keras on JAX would make float64 float32)."""
    array = np.asarray(array)
    return ops.convert_to_tensor(array, dtype=array.dtype.name)


def line_slope(values, step):
    """Slope at ``t = 0`` of values sampled at ``t_k = k * step``, ``k = -count .. count``."""
    values = np.asarray(values, np.float64)
    count = (len(values) - 1) // 2
    secants = np.diff(values) / step
    midpoints = (np.arange(-count, count) + 0.5) * step
    slope, intercept, _, _ = scipy.stats.theilslopes(secants, midpoints)
    return float(intercept)


def relative_error(analytic, numeric):
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-300)


def random_direction(rng, like, envelope=None):
    """Gaussian noise shaped like ``like``, optionally times ``envelope``, scaled to
    ``like``'s root-mean-square (so a step is relative to the signal's level)."""
    direction = rng.standard_normal(np.shape(like))
    if envelope is not None:
        direction = direction * envelope
    return direction * np.sqrt(np.mean(np.square(like)) / np.mean(np.square(direction)))


def gain_curve_direction(rng, signal, hop=160):
    """``signal`` times a random gain curve (Gaussian knots every ``hop`` samples,
    linearly interpolated), scaled to ``signal``'s root-mean-square: a random change
    of the level of every 10 ms (at 16 kHz) of the signal. Along these directions a
    level-aligned score such as PESQ changes much faster than along white noise, so
    the finite differences rise above float32 rounding."""
    signal = np.asarray(signal, np.float64)
    knots = rng.standard_normal(signal.shape[-1] // hop + 2)
    curve = np.interp(np.arange(signal.shape[-1]) / hop, np.arange(len(knots)), knots)
    direction = signal * curve
    return direction * np.sqrt(np.mean(np.square(signal)) / np.mean(np.square(direction)))


def speech_envelope(signal, width=160):
    """Moving average of ``|signal|`` over ``width`` samples along the last axis:
    directions shaped by it perturb speech where it is, as a restorer's error does."""
    kernel = np.ones(width) / width
    return np.apply_along_axis(
        lambda row: np.convolve(np.abs(row), kernel, mode="same"), -1, signal
    ) + 1e-3 * np.std(signal)


def directional_check(batched, point, direction, step, count=10):
    """``(analytic, numeric)`` directional derivative of ``f`` at ``point`` along
    ``direction``, where ``batched(points)`` returns ``f`` of each of a batch of
    points ``[n, *point.shape]`` (one value per point)."""
    dtype = point.dtype
    (grad,) = gradients(lambda x: ops.sum(batched(x)), [point[None]])
    analytic = float(np.sum(grad[0] * direction))
    offsets = np.arange(-count, count + 1) * step
    line = (
        point[None].astype(np.float64)
        + offsets.reshape((-1,) + (1,) * point.ndim) * direction[None]
    ).astype(dtype)
    values = np.asarray(ops.convert_to_numpy(batched(as_tensor(line))), np.float64)
    return analytic, line_slope(values, step)


def assert_directional_derivatives(batched, point, directions, step, rtol, count=10):
    """Checks the directional derivatives of ``batched`` (see :func:`directional_check`)
    along every direction: ``||numeric - analytic|| <= rtol * ||analytic||`` over the
    set of directions (one direction that happens to be nearly orthogonal to the
    gradient does not make the comparison meaningless). Returns the relative error."""
    pairs = np.array([directional_check(batched, point, d, step, count) for d in directions])
    analytic, numeric = pairs[:, 0], pairs[:, 1]
    error = float(np.linalg.norm(numeric - analytic) / np.linalg.norm(analytic))
    print(
        f"directional derivatives {analytic} vs finite differences {numeric}: relative error {error:.2e} (tolerance {rtol:g})"
    )
    assert np.linalg.norm(analytic) > 0, (
        "the gradient is zero along every direction: nothing was checked"
    )
    assert error <= rtol, (
        f"gradient off by {error:.2e} (tolerance {rtol:g}): {analytic} vs {numeric}"
    )
    return error


def assert_weight_derivatives(function, values, seeds, step, rtol, count=10):
    """As :func:`assert_directional_derivatives`, for ``function(list_of_tensors)`` (a
    scalar, e.g. a loss of ``model.stateless_call``'s output) and ``values`` (numpy
    arrays, e.g. the trainable weights) along one random direction per seed, each
    array's part scaled to its own root-mean-square (0.1 where it is 0)."""
    values = [np.asarray(v) for v in values]
    grads = gradients(lambda *tensors: function(list(tensors)), values)
    analytic, numeric = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        directions = [
            (np.sqrt(np.mean(np.square(v, dtype=np.float64))) or 0.1) * rng.standard_normal(v.shape)
            for v in values
        ]
        analytic.append(float(sum(np.sum(g * d) for g, d in zip(grads, directions))))
        line = []
        for k in range(-count, count + 1):
            moved = [
                as_tensor((v.astype(np.float64) + k * step * d).astype(v.dtype))
                for v, d in zip(values, directions)
            ]
            line.append(float(ops.convert_to_numpy(function(moved))))
        numeric.append(line_slope(line, step))
    analytic, numeric = np.array(analytic), np.array(numeric)
    error = float(np.linalg.norm(numeric - analytic) / np.linalg.norm(analytic))
    print(
        f"weight derivatives {analytic} vs finite differences {numeric}: relative error {error:.2e} (tolerance {rtol:g})"
    )
    assert np.linalg.norm(analytic) > 0, (
        "the gradient is zero along every direction: nothing was checked"
    )
    assert error <= rtol, (
        f"gradient off by {error:.2e} (tolerance {rtol:g}): {analytic} vs {numeric}"
    )
    return error
