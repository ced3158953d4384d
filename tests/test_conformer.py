import json
import os
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from spectral_restore import spectral
from spectral_restore.losses import CombinedLoss, SpectrogramMSE
from spectral_restore.models import build_model
from spectral_restore.models.conformer import (
    MASK_BOUND,
    PRESETS,
    ConformerBlock,
    MagnitudePhaseConformer,
)
from spectral_restore.models.discriminators import LearnableSigmoid

RATE = 16000


def conv(inputs, outputs, kernel=(1, 1)):
    return inputs * outputs * kernel[0] * kernel[1] + outputs


def conformer_parameters(c, multiplier, expansion, kernel):
    """One conformer block (Gulati et al. 2020), counted from its definition."""
    layer_norm = 2 * c
    feed_forward = layer_norm + conv(c, multiplier * c) + conv(multiplier * c, c)
    attention = layer_norm + 4 * (c * c + c)  # query, key, value and output projections
    inner = expansion * c
    # The depthwise convolution has no bias (batch norm follows).
    convolution = layer_norm + conv(c, 2 * inner) + inner * kernel + 2 * inner + conv(inner, c)
    return 2 * feed_forward + attention + convolution + layer_norm


def expected_trainable_parameters(s, bins=257):
    """Trainable parameters of the network of ``s`` counted layer by layer from the
    architecture's description: instance norm and PReLU have 2 and 1 per channel, and
    a convolution followed by instance norm has no bias."""
    c, d, stride = s["channels"], s["full_resolution_channels"], s["freq_stride"]
    dense = sum(c * (i + 1) * c * 9 + 2 * c + c for i in range(s["dense_depth"]))
    # Three channels in: the compressed magnitude, real and imaginary parts.
    encoder = 3 * d + 3 * d + d * c * (stride + 1) + 3 * c + dense
    blocks = (
        s["num_blocks"]
        * 2
        * conformer_parameters(c, s["ffn_multiplier"], s["conv_expansion"], s["conv_kernel"])
    )
    upsample = c * d * (stride + 1) + 3 * d  # transposed convolution, instance norm, PReLU
    magnitude_decoder = (
        dense + upsample + conv(d, 1) + bins
    )  # head and the learnable sigmoid's slopes
    phase_decoder = dense + upsample + 2 * conv(d, 1)
    gate = c + 1 if s["gate"] else 0  # one dense logit per frame from the mean over frequency
    return encoder + blocks + magnitude_decoder + phase_decoder + gate


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def moved_off_identity(model, seed=7, scale=0.05):
    """Perturbs every trainable weight so that the output differs from the input."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(
            np.asarray(variable) + rng.normal(0.0, scale, variable.shape).astype(np.float32)
        )
    return model


@pytest.fixture(scope="module")
def small():
    return build_model("conformer", "small")


@pytest.fixture(scope="module")
def perturbed():
    return moved_off_identity(build_model("conformer", "small"))


def speech_like(batch, length, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / RATE
    tone = (
        0.1
        * np.sin(2 * np.pi * rng.uniform(100, 300, (batch, 1)) * t)
        * (1 + np.sin(2 * np.pi * 3 * t))
    )
    return (tone + 0.02 * rng.standard_normal((batch, length))).astype(np.float32)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_parameter_count_per_preset(preset):
    model = MagnitudePhaseConformer(preset)
    model(np.zeros((1, 1024), np.float32))
    assert trainable_count(model) == expected_trainable_parameters(PRESETS[preset])
    if preset == "base":
        assert 1.8e6 <= trainable_count(model) <= 2.3e6  # MP-SENet: 2.05 M


@pytest.mark.parametrize("length", [300, 1000, 16001, 33333])
def test_untrained_model_is_the_identity_at_any_length(small, length):
    x = speech_like(2, length, seed=length)
    for training in (False, True):
        y = np.asarray(small(x, training=training))
        assert y.shape == x.shape
        # Mask 1 and unchanged phase; only the compression floor perturbs silence-level bins.
        assert np.max(np.abs(y - x)) < 1e-3


@pytest.mark.parametrize("length", [300, 16001])
def test_output_shape_of_a_moved_model(perturbed, length):
    x = speech_like(3, length)
    y = np.asarray(perturbed(x))
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert np.max(np.abs(y - x)) > 1e-2


def test_the_mask_sigmoid_matches_numpy_and_is_bounded():
    layer = LearnableSigmoid(MASK_BOUND)
    x = np.random.default_rng(0).normal(0.0, 30.0, (2, 5, 7)).astype(np.float32)
    layer(x)
    slope = np.linspace(-2.0, 3.0, 7).astype(np.float32)
    layer.slope.assign(slope)
    y = np.asarray(layer(x))
    np.testing.assert_allclose(
        y, 2.0 / (1.0 + np.exp(-slope * x.astype(np.float64))), rtol=1e-5, atol=1e-6
    )
    assert np.all(y >= 0.0) and np.all(y <= 2.0)


@pytest.mark.parametrize("training", [True, False])
def test_estimate_is_the_gated_mask_times_the_magnitude_and_the_atan2_phase(perturbed, training):
    """The formula in numpy, with the gate's bias moved so that its frames lie on both
    sides of ``gate_threshold`` 0.5: training blends by the soft gate ``g``, inference
    by ``max(g - 0.5, 0) / 0.5``, so frames with ``g <= 0.5`` come out as the input bit
    for bit."""
    x = speech_like(2, 4000)
    real, imag = spectral.compress_complex(*spectral.stft(x), 0.3)
    real, imag = np.asarray(real), np.asarray(imag)
    magnitude = np.sqrt(np.maximum(real**2 + imag**2, 1e-12)).astype(np.float32)
    bias = perturbed.gate_head.bias
    saved = np.asarray(bias)
    assert perturbed.gate_threshold == 0.0  # the default
    try:
        perturbed.gate_threshold = 0.5
        soft = perturbed.decode(magnitude, real, imag, training=training)[3]
        logit = np.log(1 / np.asarray(soft) - 1)
        bias.assign(saved + np.median(logit).astype(np.float32))
        decoded = perturbed.decode(magnitude, real, imag, training=training)
        mask, r, i, gate = (np.asarray(v) for v in decoded)
        estimate = perturbed.restore_spectrogram(real, imag, training=training)
        est_real, est_imag = (np.asarray(v) for v in estimate)
    finally:
        bias.assign(saved)
        perturbed.gate_threshold = 0.0
    assert mask.shape == real.shape and np.all(mask > 0) and np.all(mask < 2)
    assert np.std(mask) > 1e-3  # not the identity's constant 1
    assert gate.shape == real.shape[:2] + (1,) and np.all(gate > 0) and np.all(gate < 1)
    assert np.std(gate) > 1e-4  # a decision per frame, not a constant
    below = gate[..., 0] < 0.5
    assert 0.2 < below.mean() < 0.8
    blend = gate if training else np.maximum(gate - 0.5, 0) / 0.5
    estimate_phase = np.arctan2(imag / magnitude + i, real / magnitude + r)
    expected_real = blend * mask * magnitude * np.cos(estimate_phase) + (1 - blend) * real
    expected_imag = blend * mask * magnitude * np.sin(estimate_phase) + (1 - blend) * imag
    np.testing.assert_allclose(est_real, expected_real, atol=1e-5)
    np.testing.assert_allclose(est_imag, expected_imag, atol=1e-5)
    passed = np.all(est_real == real, axis=-1) & np.all(est_imag == imag, axis=-1)
    np.testing.assert_array_equal(passed, np.zeros_like(below) if training else below)


def test_gate_closed_passes_the_input_and_open_gives_the_decoders_estimate(perturbed):
    """g -> 0 is the input itself whatever the decoders say; g -> 1 their estimate alone."""
    x = speech_like(1, 4000, seed=3)
    real, imag = (np.asarray(v) for v in spectral.compress_complex(*spectral.stft(x), 0.3))
    magnitude = np.sqrt(np.maximum(real**2 + imag**2, 1e-12)).astype(np.float32)
    bias = perturbed.gate_head.bias
    saved = np.asarray(bias)
    try:
        bias.assign(np.full_like(saved, -60.0))
        closed = [np.asarray(v) for v in perturbed.restore_spectrogram(real, imag)]
        bias.assign(np.full_like(saved, 60.0))
        opened = [np.asarray(v) for v in perturbed.restore_spectrogram(real, imag)]
        mask, r, i, _ = (np.asarray(v) for v in perturbed.decode(magnitude, real, imag))
    finally:
        bias.assign(saved)
    np.testing.assert_allclose(closed[0], real, atol=1e-6)
    np.testing.assert_allclose(closed[1], imag, atol=1e-6)
    phase = np.arctan2(imag / magnitude + i, real / magnitude + r)
    np.testing.assert_allclose(opened[0], mask * magnitude * np.cos(phase), atol=1e-5)
    np.testing.assert_allclose(opened[1], mask * magnitude * np.sin(phase), atol=1e-5)
    assert np.max(np.abs(opened[0] - real)) > 1e-3


def test_save_load_round_trip_gives_identical_output(perturbed, tmp_path):
    x = speech_like(2, 5000)
    path = tmp_path / "conformer.keras"
    perturbed.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is MagnitudePhaseConformer
    assert loaded.get_config() == perturbed.get_config()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(perturbed(x)))


def test_a_threshold_set_on_a_loaded_model_applies_and_is_saved(perturbed, tmp_path):
    """``gate_threshold`` set after loading: above every frame's gate, the model returns
    its input (through the STFT and back, within 1e-5); saved and loaded again, it keeps
    the threshold and the output."""
    x = speech_like(1, 4000, seed=5)
    perturbed.save(tmp_path / "soft.keras")
    loaded = keras.saving.load_model(tmp_path / "soft.keras")
    assert np.max(np.abs(np.asarray(loaded(x)) - x)) > 1e-3
    loaded.gate_threshold = 0.9999
    passed = np.asarray(loaded(x))
    np.testing.assert_allclose(passed, x, atol=1e-5)
    loaded.save(tmp_path / "thresholded.keras")
    again = keras.saving.load_model(tmp_path / "thresholded.keras")
    assert again.gate_threshold == 0.9999
    np.testing.assert_array_equal(np.asarray(again(x)), passed)


def test_explicit_hyperparameters_without_a_preset_round_trip_through_the_config():
    settings = dict(PRESETS["small"], num_blocks=1, conv_kernel=5)
    model = MagnitudePhaseConformer(None, **settings)
    model(np.zeros((1, 1024), np.float32))
    assert trainable_count(model) == expected_trainable_parameters(settings)
    rebuilt = MagnitudePhaseConformer.from_config(model.get_config())
    assert {k: getattr(rebuilt, k) for k in settings} == settings


def test_a_config_saved_before_the_gate_existed_loads_without_one():
    config = MagnitudePhaseConformer("small").get_config()
    assert config["gate"] is True and config["gate_threshold"] == 0.0
    config["gate_threshold"] = 0.5
    assert MagnitudePhaseConformer.from_config(config).gate_threshold == 0.5
    del config["gate_threshold"]
    assert MagnitudePhaseConformer.from_config(config).gate_threshold == 0.0
    del config["gate"]
    assert MagnitudePhaseConformer.from_config(config).gate is False


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="preset"):
        MagnitudePhaseConformer("huge")
    with pytest.raises(ValueError, match="Without a preset"):
        MagnitudePhaseConformer(None, channels=16)
    with pytest.raises(ValueError, match="freq_stride"):
        MagnitudePhaseConformer("small", freq_stride=3)
    with pytest.raises(ValueError, match="num_heads"):
        MagnitudePhaseConformer("small", channels=16, num_heads=3)
    with pytest.raises(ValueError, match="conv_kernel"):
        MagnitudePhaseConformer("small", conv_kernel=8)
    with pytest.raises(ValueError, match="channels"):
        MagnitudePhaseConformer("small", channels=0)
    with pytest.raises(ValueError, match="samples"):
        MagnitudePhaseConformer("small")(np.zeros((2, 3, 100), np.float32))
    with pytest.raises(TypeError, match="remat"):
        MagnitudePhaseConformer("small", remat="yes")
    with pytest.raises(TypeError, match="gate"):
        MagnitudePhaseConformer("small", gate=1)
    for threshold in (1.0, -0.1):
        with pytest.raises(ValueError, match=f"gate_threshold={threshold}"):
            MagnitudePhaseConformer("small", gate_threshold=threshold)
    with pytest.raises(ValueError, match="gate_supervision=-0.1"):
        MagnitudePhaseConformer("small", gate_supervision=-0.1)
    with pytest.raises(ValueError, match="gate_supervision=0.1, gate=False"):
        MagnitudePhaseConformer("base", gate_supervision=0.1)


def numpy_attention(layer, x):
    """Multi-head softmax attention of ``x`` [batch, length, channels] with the
    projections of the Keras ``MultiHeadAttention`` ``layer``, in float64."""
    x = x.astype(np.float64)

    def project(dense):
        kernel, bias = (np.asarray(w, np.float64) for w in dense.weights)
        return np.einsum("btc,chd->bthd", x, kernel) + bias

    query, key, value = (
        project(layer._query_dense),
        project(layer._key_dense),
        project(layer._value_dense),
    )
    scores = np.einsum("bthd,bshd->bhts", query, key) / np.sqrt(query.shape[-1])
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    heads = np.einsum("bhts,bshd->bthd", weights, value)
    kernel, bias = (np.asarray(w, np.float64) for w in layer._output_dense.weights)
    return np.einsum("bthd,hdc->btc", heads, kernel) + bias


@pytest.mark.every_backend
@pytest.mark.parametrize("training", [False, True])
def test_attention_is_fused_and_equals_softmax_attention(training):
    """With dropout (as the base preset) the attention goes through
    ``keras.ops.dot_product_attention`` (a fused kernel where the backend has one: no
    [length, length] weights kept) also in training, and equals the explicit softmax
    attention; the dropout falls on its output."""
    from keras.src import ops as keras_ops

    block = ConformerBlock(8, num_heads=2, ffn_multiplier=2, conv_kernel=3, dropout=0.2)
    x = np.random.default_rng(4).normal(0.0, 1.0, (3, 11, 8)).astype(np.float32)
    block(x)
    fused = keras_ops.dot_product_attention
    calls = []

    def counted(*args, **kwargs):
        calls.append(tuple(kwargs["query"].shape))
        return fused(*args, **kwargs)

    with mock.patch.object(keras_ops, "dot_product_attention", counted):
        y = np.asarray(block.attention(x, x, training=training))
    assert calls == [(3, 11, 2, 4)]
    np.testing.assert_allclose(y, numpy_attention(block.attention, x), rtol=1e-5, atol=1e-5)
    assert block.attention_dropout.rate == 0.2


def tiny_conformer(remat):
    """A one-block conformer with dropout, its weights moved off the identity, the
    same for every call (seeded)."""
    keras.utils.set_random_seed(11)
    model = MagnitudePhaseConformer(
        None,
        channels=8,
        full_resolution_channels=4,
        dense_depth=1,
        num_blocks=1,
        num_heads=2,
        ffn_multiplier=2,
        conv_expansion=2,
        conv_kernel=3,
        freq_stride=16,
        dropout=0.2,
        gate=True,
        remat=remat,
        name="tiny",
    )
    model(np.zeros((1, 1024), np.float32))
    return moved_off_identity(model, seed=5)


@pytest.mark.every_backend
def test_remat_gives_the_same_training_step():
    """One SGD step (learning rate 1: the weights move by the gradient) with and
    without rematerialised conformer blocks: same loss, weights, batch-norm
    statistics and dropout seeds; and the setting round-trips through the config."""
    clean = speech_like(2, 3000)
    noisy = (clean + 0.05 * np.random.default_rng(1).standard_normal(clean.shape)).astype(
        np.float32
    )
    results = {}
    for remat in (False, True):
        model = tiny_conformer(remat)
        model.compile(
            optimizer=keras.optimizers.SGD(1.0), loss=SpectrogramMSE(compress_exponent=0.3)
        )
        before = [np.asarray(w) for w in model.trainable_weights]
        loss = float(model.train_on_batch(noisy, clean))
        results[remat] = (
            loss,
            [np.asarray(w) - b for w, b in zip(model.trainable_weights, before)],
            [np.asarray(v) for v in model.non_trainable_variables],
        )
    assert MagnitudePhaseConformer.from_config(model.get_config()).remat is True
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-6)
    moved = [np.max(np.abs(step)) for step in results[False][1]]
    assert max(moved) > 1e-3
    for plain, recomputed in zip(results[False][1], results[True][1]):
        np.testing.assert_allclose(recomputed, plain, atol=1e-4 * max(moved))
    for plain, recomputed in zip(results[False][2], results[True][2]):
        np.testing.assert_allclose(recomputed, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.every_backend
def test_gate_supervision_adds_the_gates_cross_entropy_against_the_damaged_frames():
    """With ``gate_supervision`` w, the training loss is the compiled loss plus
    ``w`` times the mean binary cross-entropy of the per-frame gate (as trained) against
    targets computed here in numpy from the two STFTs: 1 where the input differs from
    the target by more than 1e-3 of the frame's energy (+ 1e-8), else 0: the noisy half
    of the first example; none of the second, clean example, nor the digital silence
    both start with. ``train_on_batch`` (SGD at rate 0) reports the same loss, so the
    trainer's compiled step scores the gate; the setting round-trips through the config."""
    rng = np.random.default_rng(3)
    clean = speech_like(2, 4000)
    clean[:, :800] = 0.0
    noisy = clean.copy()
    noisy[0, 2000:] += (0.05 * rng.standard_normal(2000)).astype(np.float32)
    weight = 0.25
    keras.utils.set_random_seed(5)
    model = moved_off_identity(build_model("conformer", "small", gate_supervision=weight))
    assert MagnitudePhaseConformer.from_config(model.get_config()).gate_supervision == weight

    x_real, x_imag = (np.asarray(v, np.float64) for v in spectral.stft(noisy))
    y_real, y_imag = (np.asarray(v, np.float64) for v in spectral.stft(clean))
    distortion = np.sum((x_real - y_real) ** 2 + (x_imag - y_imag) ** 2, axis=-1)
    targets = distortion > 1e-3 * np.sum(y_real**2 + y_imag**2, axis=-1) + 1e-8
    assert not targets[1].any() and not targets[0, :3].any()
    assert 0.3 < targets[0].mean() < 0.7  # the noisy half

    real, imag = spectral.compress_complex(*spectral.stft(noisy), 0.3)
    real, imag = np.asarray(real), np.asarray(imag)
    magnitude = np.sqrt(np.maximum(real**2 + imag**2, 1e-12)).astype(np.float32)
    gate = np.asarray(model.decode(magnitude, real, imag, training=True)[3], np.float64)[..., 0]
    assert gate.shape == targets.shape and np.std(gate) > 1e-4
    cross_entropy = -np.mean(targets * np.log(gate) + (1 - targets) * np.log(1 - gate))

    loss = SpectrogramMSE(compress_exponent=0.3)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    predicted = model(noisy, training=True)
    expected = float(loss(clean, predicted)) + weight * cross_entropy
    total = model.compute_loss(x=noisy, y=clean, y_pred=predicted, training=True)
    assert float(total) == pytest.approx(expected, rel=1e-4)
    assert float(model.train_on_batch(noisy, clean)) == pytest.approx(expected, rel=1e-4)


def test_gate_supervision_has_finite_gradients_on_silence():
    """The supervised training loss (compiled loss plus the gate's cross-entropy) and
    its gradients stay finite on silent input and target, and on speech against
    silence and the reverse."""
    model = moved_off_identity(build_model("conformer", "small", gate_supervision=0.5))
    model.compile(optimizer="sgd", loss=SpectrogramMSE(compress_exponent=0.3))
    silence = np.zeros((2, 4000), np.float32)
    speech = speech_like(2, 4000)
    for noisy, clean in [(silence, silence), (speech, silence), (silence, speech)]:
        with tf.GradientTape() as tape:
            predicted = model(noisy, training=True)
            value = model.compute_loss(x=noisy, y=clean, y_pred=predicted, training=True)
        gradients = tape.gradient(value, model.trainable_variables)
        assert np.isfinite(float(value))
        assert all(g is not None and np.all(np.isfinite(np.asarray(g))) for g in gradients)


def test_every_backend_case_under_jax(rerun_under_jax):
    rerun_under_jax()


def loss_and_gradients(model, noisy, clean):
    loss = SpectrogramMSE(compress_exponent=0.3)
    with tf.GradientTape() as tape:
        value = loss(clean, model(noisy, training=True))
    return value, tape.gradient(value, model.trainable_variables)


@pytest.mark.parametrize("which", ["untrained", "perturbed"])
def test_finite_gradients_on_silence(small, perturbed, which):
    model = small if which == "untrained" else perturbed
    silence = np.zeros((2, 4000), np.float32)
    value, gradients = loss_and_gradients(model, silence, silence)
    assert np.isfinite(float(value))
    assert all(g is not None and np.all(np.isfinite(np.asarray(g))) for g in gradients)
    # Also a silent target for speech-like input, and the reverse.
    for noisy, clean in [(speech_like(2, 4000), silence), (silence, speech_like(2, 4000))]:
        value, gradients = loss_and_gradients(model, noisy, clean)
        assert np.isfinite(float(value)) and all(
            np.all(np.isfinite(np.asarray(g))) for g in gradients
        )


def test_one_training_step_under_tensorflow():
    clean = speech_like(4, 6000)
    noisy = (clean + 0.05 * np.random.default_rng(1).standard_normal(clean.shape)).astype(
        np.float32
    )
    model = build_model("conformer", "small")
    # SGD: Adam's per-variable updates take Keras half a minute to trace for this model.
    model.compile(
        optimizer=keras.optimizers.SGD(1e-2),
        loss=CombinedLoss(
            {"recon/mse": (SpectrogramMSE(compress_exponent=0.3), 0.9), "time/l1": 0.2}
        ),
    )
    heads = [w for w in model.trainable_weights if "head" in w.path and "kernel" in w.path]
    assert heads and all(np.all(np.asarray(w) == 0) for w in heads)
    logs = model.train_on_batch(noisy, clean, return_dict=True)
    assert set(logs) == {"loss", "recon/mse", "time/l1"} and np.isfinite(logs["loss"])
    assert all(np.any(np.asarray(w) != 0) for w in heads)  # the zero-initialised heads moved
    assert all(np.all(np.isfinite(np.asarray(w))) for w in model.weights)


JAX_SCRIPT = r"""
import json, sys
import numpy as np
import jax
import keras
assert keras.backend.backend() == "jax"
from spectral_restore.losses import SpectrogramMSE
from spectral_restore.models import build_model
data = np.load(sys.argv[1])
noisy, clean = data["noisy"], data["clean"]
model = build_model("conformer", "small", name="under_test")
model.load_weights(sys.argv[2])
loss = SpectrogramMSE(compress_exponent=0.3)
out = {"restored": np.asarray(model(noisy)).tolist()}
trainable = [v.value for v in model.trainable_variables]
non_trainable = [v.value for v in model.non_trainable_variables]


def objective(trainable):
    restored, _ = model.stateless_call(trainable, non_trainable, noisy, training=True)
    return loss(clean, restored)


value, gradients = jax.value_and_grad(objective)(trainable)
out["loss"] = float(value)
out["gradients"] = {v.path: np.asarray(g).ravel().tolist() for v, g in zip(model.trainable_variables, gradients)}
model.compile(optimizer=keras.optimizers.SGD(1e-2), loss=loss)
out["step_loss"] = float(model.train_on_batch(noisy, clean))
out["finite"] = all(bool(np.all(np.isfinite(np.asarray(w)))) for w in model.weights)
print(json.dumps(out))
"""


@pytest.mark.large
def test_same_output_loss_gradients_and_a_training_step_under_jax(tmp_path):
    pytest.importorskip("jax", reason="jax is in the test extras; CI installs it")
    # A fixed name: the variables' paths, which key the gradients, start with it.
    perturbed = moved_off_identity(build_model("conformer", "small", name="under_test"), seed=3)
    clean = speech_like(2, 3000)
    noisy = (clean + 0.05 * np.random.default_rng(2).standard_normal(clean.shape)).astype(
        np.float32
    )
    np.savez(tmp_path / "pair.npz", clean=clean, noisy=noisy)
    perturbed.save_weights(tmp_path / "weights.weights.h5")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            JAX_SCRIPT,
            str(tmp_path / "pair.npz"),
            str(tmp_path / "weights.weights.h5"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from_jax = json.loads(result.stdout.strip().splitlines()[-1])
    restored = np.asarray(perturbed(noisy))
    assert np.max(np.abs(restored - noisy)) > 1e-3  # not the identity
    np.testing.assert_allclose(from_jax["restored"], restored, atol=1e-5)
    value, gradients = loss_and_gradients(perturbed, noisy, clean)
    assert from_jax["loss"] == pytest.approx(float(value), rel=1e-4)
    assert from_jax["step_loss"] == pytest.approx(float(value), rel=1e-4) and from_jax["finite"]
    for variable, gradient in zip(perturbed.trainable_variables, gradients):
        ours = np.asarray(gradient).ravel()
        # Relative to the variable's largest gradient (1 %: sums with cancellation, through
        # atan2, round differently); the attention's key biases get zero up to rounding
        # (softmax ignores a shift common to all keys).
        scale = np.max(np.abs(ours)) + 1e-6
        np.testing.assert_allclose(
            from_jax["gradients"][variable.path], ours, atol=1e-2 * scale, err_msg=variable.path
        )


def test_export_of_the_small_preset(perturbed, tmp_path):
    from spectral_restore.export import export_saved_model
    from spectral_restore.inference import AudioRestorer

    path = str(tmp_path / "export")
    metadata = export_saved_model(perturbed, path, chunk_seconds=0.5, overlap_seconds=0.125)
    assert metadata["model_class"] == "MagnitudePhaseConformer" and metadata["preset"] == "small"
    serve = tf.saved_model.load(path).signatures["serving_default"]
    short = speech_like(2, 7000)
    restored = serve(waveform=tf.constant(short))["restored"].numpy()
    np.testing.assert_allclose(restored, np.asarray(perturbed(short)), atol=1e-5)
    long = speech_like(1, 21000, seed=3)  # several chunks
    from_export = serve(waveform=tf.constant(long))["restored"].numpy()
    assert from_export.shape == long.shape and np.all(np.isfinite(from_export))
    from_keras = AudioRestorer(perturbed, chunk_seconds=0.5, overlap_seconds=0.125)(long)
    np.testing.assert_allclose(from_export, from_keras, atol=1e-5)
