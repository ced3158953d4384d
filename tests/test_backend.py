import keras
import numpy as np
import pytest

from spectral_restore import backend


def peak_and_position(x):
    """Host code under test: per example, the peak magnitude (float64, cast by
    host_call) and the index of the peak (int64)."""
    return np.abs(x).max(axis=1), np.abs(x).argmax(axis=1)


def signed_energy(x):
    return (x * np.abs(x)).sum(axis=1, keepdims=True) + np.zeros((1, 3))


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(3).standard_normal((4, 50)).astype("float32")


def compiled(fn):
    """``fn`` compiled as the active backend compiles a training step."""
    if backend.name() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    if backend.name() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def call_both(x):
    return backend.host_call(
        peak_and_position, x, result_shape=((None,), (None,)), result_dtype=("float32", "int32")
    )


def call_one(x):
    return backend.host_call(signed_energy, x, result_shape=(None, 3), result_dtype="float32")


@pytest.mark.every_backend
@pytest.mark.parametrize("compile_it", [False, True], ids=["eager", "compiled"])
def test_host_call_matches_numpy_eagerly_and_compiled(batch, compile_it):
    both, one = (compiled(call_both), compiled(call_one)) if compile_it else (call_both, call_one)
    peak, position = both(batch)
    assert keras.backend.standardize_dtype(peak.dtype) == "float32"
    assert keras.backend.standardize_dtype(position.dtype) == "int32"
    np.testing.assert_array_equal(np.asarray(peak), np.abs(batch).max(axis=1))
    np.testing.assert_array_equal(np.asarray(position), np.abs(batch).argmax(axis=1))
    energy = np.asarray(one(batch))
    assert energy.shape == (4, 3)
    np.testing.assert_allclose(
        energy, np.repeat((batch * np.abs(batch)).sum(axis=1, keepdims=True), 3, axis=1), rtol=1e-6
    )
    # Another batch size through the same compiled function: None follows the first argument.
    peak, _ = both(batch[:2])
    np.testing.assert_array_equal(np.asarray(peak), np.abs(batch[:2]).max(axis=1))


@pytest.mark.every_backend
def test_no_gradient_flows_through_the_host_call(batch):
    """d/dx sum(x * h(x)) is h(x) when h runs on the host: h is a constant to autodiff."""
    expected = np.repeat(np.abs(batch).max(axis=1, keepdims=True), batch.shape[1], axis=1)

    def objective(x):
        peak, _ = call_both(x)
        return keras.ops.sum(x * peak[:, None])

    if backend.name() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(batch)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = objective(x)
        grad = tape.gradient(value, x)
    elif backend.name() == "jax":
        import jax

        grad = jax.jit(jax.grad(objective))(batch)
    else:
        pytest.skip(f"no autodiff check written for the {backend.name()} backend")
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6)


def test_the_result_description_is_checked(batch):
    with pytest.raises(ValueError, match="one shape per dtype"):
        backend.host_call(
            peak_and_position, batch, result_shape=((None,),), result_dtype=("float32", "int32")
        )
    with pytest.raises(ValueError, match="result_shape"):
        backend.host_call(signed_energy, batch, result_shape=(None, -3), result_dtype="float32")
    with pytest.raises(ValueError, match="at least one argument"):
        backend.host_call(np.zeros, result_shape=(3,), result_dtype="float32")


def test_every_backend_case_under_jax(rerun_under_jax):
    rerun_under_jax()
