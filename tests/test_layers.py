"""Tests of ``spectral_restore.models.layers`` under the active Keras backend (CI's
JAX stage runs this file under JAX, tests/jax_stage.txt)."""

import keras
import numpy as np
import pytest

from spectral_restore.models.layers import Conv2DTranspose

# (kernel, strides, padding): the CRN presets' decoders, the conformer presets'
# frequency upsampling, and a time stride with an even kernel for the general case.
CONFIGURATIONS = [
    ((3, 3), (1, 2), "same"),
    ((3, 5), (1, 2), "same"),
    ((1, 17), (1, 16), "valid"),
    ((1, 3), (1, 2), "valid"),
    ((4, 3), (2, 3), "same"),
    ((4, 3), (2, 3), "valid"),
    ((2, 1), (3, 2), "valid"),
]


def transposed_convolution(x, kernel, bias, strides, padding):
    """Transposed convolution by its definition, in numpy: every input pixel adds its
    channels times the kernel at ``stride * position`` of the full output; "same" keeps
    ``input * stride`` outputs from the forward convolution's left padding
    ``max(K - s, 0) // 2``, "valid" ``input * stride + max(K - s, 0)`` from the start."""
    batch, height, width, _ = x.shape
    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    full = np.zeros(
        (batch, (height - 1) * sh + kh + sh, (width - 1) * sw + kw + sw, kernel.shape[2])
    )
    for u in range(height):
        for v in range(width):
            for a in range(kh):
                for b in range(kw):
                    full[:, u * sh + a, v * sw + b] += x[:, u, v] @ kernel[a, b].T
    starts, lengths = [], []
    for n, k, s in ((height, kh, sh), (width, kw, sw)):
        overlap = max(k - s, 0)
        starts.append(overlap // 2 if padding == "same" else 0)
        lengths.append(n * s if padding == "same" else n * s + overlap)
    return full[:, starts[0] : starts[0] + lengths[0], starts[1] : starts[1] + lengths[1]] + bias


def random_pair(kernel, strides, padding, inputs, use_bias=True, seed=0):
    """Keras's layer and this one, built for ``inputs`` channels, with the same random weights."""
    rng = np.random.default_rng(seed)
    reference = keras.layers.Conv2DTranspose(
        5, kernel, strides=strides, padding=padding, use_bias=use_bias
    )
    layer = Conv2DTranspose(5, kernel, strides=strides, padding=padding, use_bias=use_bias)
    reference.build((None, None, None, inputs))
    layer.build((None, None, None, inputs))
    weights = [rng.standard_normal(tuple(v.shape)).astype("float32") for v in reference.weights]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return reference, layer, weights


@pytest.mark.parametrize("width", [7, 8])
@pytest.mark.parametrize("kernel, strides, padding", CONFIGURATIONS)
def test_matches_keras_and_the_definition(kernel, strides, padding, width):
    x = np.random.default_rng(width).standard_normal((2, 5, width, 3)).astype("float32")
    reference, layer, (kernel_values, bias) = random_pair(kernel, strides, padding, 3)
    expected = transposed_convolution(x.astype("float64"), kernel_values, bias, strides, padding)
    got = np.asarray(layer(x))
    assert got.shape == expected.shape == tuple(layer.compute_output_shape(x.shape))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got, np.asarray(reference(x)), atol=1e-5, rtol=1e-5)


def test_without_bias_with_activation_and_in_a_functional_model():
    x = np.random.default_rng(1).standard_normal((3, 6, 9, 4)).astype("float32")
    reference, layer, (kernel_values,) = random_pair((1, 3), (1, 2), "valid", 4, use_bias=False)
    expected = transposed_convolution(x.astype("float64"), kernel_values, 0.0, (1, 2), "valid")
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5, rtol=1e-5)
    relu = Conv2DTranspose(5, (3, 3), strides=(1, 2), padding="same", activation="relu")
    inputs = keras.Input((None, 9, 4))  # unknown frame count, as the restorers' spectrograms
    model = keras.Model(inputs, relu(inputs))
    assert tuple(model.output.shape) == (None, None, 18, 5)
    relu_reference = keras.layers.Conv2DTranspose(
        5, (3, 3), strides=(1, 2), padding="same", activation="relu"
    )
    relu_reference.build(x.shape)
    relu_reference.set_weights(relu.get_weights())
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(relu_reference(x)), atol=1e-5)
    assert np.min(np.asarray(model(x))) == 0.0


def test_variables_are_those_of_keras_layer_and_it_round_trips():
    """Same variable names, paths, shapes, dtypes and seeded initial values as
    ``keras.layers.Conv2DTranspose``, so weights move between the two; the config
    round-trips through Keras's serialization."""

    def made(cls):
        layer = cls(
            16,
            (3, 5),
            strides=(1, 2),
            padding="same",
            name="decoder_0",
            kernel_initializer=keras.initializers.GlorotUniform(seed=3),
            bias_initializer=keras.initializers.RandomNormal(seed=4),
        )
        layer.build((None, None, 32, 64))
        return layer

    reference, layer = made(keras.layers.Conv2DTranspose), made(Conv2DTranspose)
    assert (
        [(v.name, v.path, tuple(v.shape), v.dtype) for v in layer.weights]
        == [(v.name, v.path, tuple(v.shape), v.dtype) for v in reference.weights]
        == [
            ("kernel", "decoder_0/kernel", (3, 5, 16, 64), "float32"),
            ("bias", "decoder_0/bias", (16,), "float32"),
        ]
    )
    for mine, theirs in zip(layer.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert layer.count_params() == reference.count_params() == 3 * 5 * 16 * 64 + 16
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "spectral_restore>Conv2DTranspose"
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is Conv2DTranspose and again.get_config() == layer.get_config()
    # Keras's own layer still deserializes to Keras's class.
    theirs = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(reference))
    assert type(theirs) is keras.layers.Conv2DTranspose


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"output_padding": (0, 1)}, "output_padding"),
        ({"dilation_rate": 2}, "dilation_rate"),
        ({"data_format": "channels_first"}, "data_format"),
    ],
)
def test_unsupported_arguments_raise(arguments, name):
    with pytest.raises(ValueError, match=name):
        Conv2DTranspose(4, (3, 3), strides=(1, 2) if name != "dilation_rate" else 1, **arguments)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_the_policy_dtype_with_float32_variables(policy):
    x = np.random.default_rng(2).standard_normal((2, 5, 8, 6)).astype("float32")
    keras.mixed_precision.set_global_policy(policy)
    try:
        reference, layer, _ = random_pair((3, 5), (1, 2), "same", 6)
        expected, got = reference(x), layer(x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert [v.dtype for v in layer.weights] == ["float32", "float32"]
    assert (
        keras.backend.standardize_dtype(got.dtype)
        == keras.backend.standardize_dtype(expected.dtype)
        == policy[6:]
    )
    # Half precision: a few units in the last place of outputs of magnitude ~10.
    np.testing.assert_allclose(
        np.asarray(got, "float32"), np.asarray(expected, "float32"), atol=0.1, rtol=0.02
    )
