"""Gradients of every loss family and of the models' differentiable paths, checked
against finite differences (``tests/gradcheck.py``: directional derivatives along
random directions at points away from degenerate cases).

Precision: every spectral loss takes ``dtype="float64"``, so under TensorFlow those
checks run in float64 with a step of 1e-8 of the signal's level and a tolerance of
1e-5 (measured errors <= 2e-7). Under JAX, Keras 3.15's ``ops.mean`` reduces float64
in float32, so there they run in float32: step 1e-4, tolerance 0.1 (measured <= 0.021).
``PESQLoss``, ``AudioEmbeddingLoss``, the restorer and the discriminators compute in
float32 inside; their steps were chosen where float32 rounding and the kinks of clamps
and thresholds both stay small, and each states its tolerance, several times the
error measured there.
"""

import importlib.util

import keras
import numpy as np
import pytest
import scipy.signal
from keras import ops

from spectral_restore import spectral
from spectral_restore.losses import (
    AudioEmbeddingLoss,
    CombinedLoss,
    ComplexSTFTLoss,
    LogSpectrogramLoss,
    LoudnessWeightedLoss,
    MultiResolutionSTFTLoss,
    PESQLoss,
    PhaseConsistencyLoss,
    SpectralConvergence,
    SpectrogramMSE,
    WaveformLoss,
)
from spectral_restore.losses.adversarial import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from spectral_restore.models.discriminators import MetricDiscriminator, MultiResolutionDiscriminator
from spectral_restore.models.restorer import SpectralRestorer

from gradcheck import (
    as_tensor,
    assert_directional_derivatives,
    assert_weight_derivatives,
    gain_curve_direction,
    gradients,
    random_direction,
    speech_envelope,
)

needs_musicnn = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None,
    reason="the musicnn wheel (pip install --no-deps musicnn) ships the checkpoints",
)

if keras.backend.backend() == "jax":
    SPECTRAL_DTYPE, SPECTRAL_STEP, SPECTRAL_RTOL = "float32", 1e-4, 0.1
else:
    SPECTRAL_DTYPE, SPECTRAL_STEP, SPECTRAL_RTOL = "float64", 1e-8, 1e-5


def combined(**kwargs):
    terms = {
        "recon/mrstft": (MultiResolutionSTFTLoss(dtype=SPECTRAL_DTYPE), 1.0),
        "recon/log_mag": (LogSpectrogramLoss(dtype=SPECTRAL_DTYPE), 0.5),
        "phase/complex": (ComplexSTFTLoss(dtype=SPECTRAL_DTYPE), 0.1),
        "phase/anti_wrap": (PhaseConsistencyLoss(dtype=SPECTRAL_DTYPE), 0.3),
        "perc/loudness": (LoudnessWeightedLoss(dtype=SPECTRAL_DTYPE), 1.0),
        "time/l1": (WaveformLoss(dtype=SPECTRAL_DTYPE), 0.2),
    }
    return CombinedLoss(terms, **kwargs)


WAVEFORM_LOSSES = {
    "recon/mse": lambda **kw: SpectrogramMSE(**kw),
    "recon/mse_power": lambda **kw: SpectrogramMSE(power=2, **kw),
    "recon/mse_compressed": lambda **kw: SpectrogramMSE(compress_exponent=0.3, **kw),
    "recon/log_l1": lambda **kw: LogSpectrogramLoss(**kw),
    "recon/log_l2": lambda **kw: LogSpectrogramLoss(distance="l2", **kw),
    "recon/sc": lambda **kw: SpectralConvergence(**kw),
    "recon/mrstft": lambda **kw: MultiResolutionSTFTLoss(**kw),
    "recon/mrstft_mel": lambda **kw: MultiResolutionSTFTLoss(
        scale="mel", n_bins=[40, 64, 80], sample_rate=16000, **kw
    ),
    "recon/mrstft_a_lin": lambda **kw: MultiResolutionSTFTLoss(
        frequency_weighting="a", sample_rate=16000, w_lin_mag=1.0, **kw
    ),
    "time/l1": lambda **kw: WaveformLoss(**kw),
    "time/l2": lambda **kw: WaveformLoss(distance="l2", **kw),
    "phase/complex": lambda **kw: ComplexSTFTLoss(**kw),
    "phase/complex_raw_l1": lambda **kw: ComplexSTFTLoss(
        compress_exponent=None, distance="l1", **kw
    ),
    "phase/anti_wrap": lambda **kw: PhaseConsistencyLoss(**kw),
    "phase/anti_wrap_flat": lambda **kw: PhaseConsistencyLoss(magnitude_weighted=False, **kw),
    "perc/loudness": lambda **kw: LoudnessWeightedLoss(**kw),
    "perc/loudness_k_erb_l2": lambda **kw: LoudnessWeightedLoss(
        weighting="k", bands="erb", distance="l2", **kw
    ),
    "perc/loudness_a_bins": lambda **kw: LoudnessWeightedLoss(
        weighting="a", bands=None, frame_weighting=False, **kw
    ),
    "combined": combined,
}


@pytest.fixture(scope="module")
def waves(speech_16k):
    """Half a second of real speech and a restorer-like estimate of it: 1.3 times
    louder, with noise 26 dB below (no bin or sample where the two are equal)."""
    clean = speech_16k[5000:13000].astype(np.float64)
    noise = np.random.default_rng(0).standard_normal(clean.shape)
    return clean, 1.3 * clean + 0.05 * np.std(clean) * noise


def repeated(array, count):
    """``array`` stacked ``count`` times, as a tensor of its own dtype."""
    return as_tensor(np.repeat(np.asarray(array)[None], count, axis=0))


def loss_at(loss, reference):
    """``f(points)``: the per-example loss of each point against ``reference``."""
    return lambda points: loss(repeated(reference, len(points)), points)


@pytest.mark.parametrize("key", WAVEFORM_LOSSES)
def test_waveform_loss_gradients(key, waves):
    """Gradient with respect to the estimate, the one training uses (some losses take
    weights from the clean signal as constants: the loudness loss's frame weights, the
    phase losses' magnitude weights)."""
    clean, noisy = (x.astype(SPECTRAL_DTYPE) for x in waves)
    loss = WAVEFORM_LOSSES[key](dtype=SPECTRAL_DTYPE, reduction="none")
    directions = [
        random_direction(np.random.default_rng(seed), noisy, speech_envelope(clean))
        for seed in range(3)
    ]
    assert_directional_derivatives(
        loss_at(loss, clean), noisy, directions, SPECTRAL_STEP, SPECTRAL_RTOL
    )


SPECTROGRAM_LOSSES = {
    "phase/consistency": lambda **kw: PhaseConsistencyLoss(
        consistency_weight=1.0,
        instantaneous_phase_weight=0.0,
        group_delay_weight=0.0,
        instantaneous_frequency_weight=0.0,
        **kw,
    ),
    "phase/anti_wrap_and_consistency": lambda **kw: PhaseConsistencyLoss(**kw),
    "phase/complex": lambda **kw: ComplexSTFTLoss(**kw),
    "recon/log_mag": lambda **kw: LogSpectrogramLoss(**kw),
}


@pytest.mark.parametrize("key", SPECTROGRAM_LOSSES)
def test_spectrogram_input_gradients(key, waves):
    """Spectrogram inputs, the consistency term included: the prediction is the STFT of
    the estimate plus complex noise, so it is not the STFT of any waveform."""
    clean, noisy = waves
    cfg = spectral.STFTConfig(frame_length=400, hop_length=100, fft_length=512)
    clean_spec = np.asarray(spectral.stack_complex(*spectral.stft(clean, cfg)))
    noisy_spec = np.asarray(spectral.stack_complex(*spectral.stft(noisy, cfg)))
    magnitude = np.sqrt(np.sum(np.square(noisy_spec), axis=-1, keepdims=True))
    rng = np.random.default_rng(1)
    predicted = (noisy_spec + 0.2 * magnitude * rng.standard_normal(noisy_spec.shape)).astype(
        SPECTRAL_DTYPE
    )
    clean_spec = clean_spec.astype(SPECTRAL_DTYPE)
    loss = SPECTROGRAM_LOSSES[key](
        stft_config=cfg, input_format="spectrogram", dtype=SPECTRAL_DTYPE, reduction="none"
    )
    directions = [
        random_direction(np.random.default_rng(seed), predicted, magnitude) for seed in range(3)
    ]
    assert_directional_derivatives(
        loss_at(loss, clean_spec), predicted, directions, SPECTRAL_STEP, SPECTRAL_RTOL
    )


@pytest.fixture(scope="module")
def two_utterances(speech_16k):
    """``{rate: (clean, degraded)}``: two 1 s utterances of real speech 0.4 s apart; the
    degraded copy has noise 25 dB down, lags by 24 samples in the first utterance and
    by 264 in the second (16 kHz), so P.862's alignment finds two utterances with
    different delays, and the one-delay search leaves bad intervals to re-align."""
    rng = np.random.default_rng(0)
    speech = speech_16k.astype(np.float64)
    clean = np.concatenate(
        [speech[8000:24000], 1e-4 * rng.standard_normal(6400), speech[32000:48000]]
    )
    cut = 19200
    degraded = np.concatenate([np.roll(clean, 24)[:cut], np.roll(clean, 264)[cut:]])
    degraded = degraded + 10 ** (-25 / 20) * np.std(clean) * rng.standard_normal(len(clean))
    pairs = {
        16000: (clean, degraded),
        8000: tuple(scipy.signal.resample_poly(x, 1, 2) for x in (clean, degraded)),
    }
    return {rate: (c.astype(np.float32), d.astype(np.float32)) for rate, (c, d) in pairs.items()}


PESQ_CASES = {
    "wb-16k-one-delay": (16000, "wb", True),
    "wb-16k-utterance": (16000, "wb", "utterance"),
    "nb-16k-one-delay": (16000, "nb", True),
    "nb-8k-one-delay": (8000, "nb", True),
    "nb-8k-utterance": (8000, "nb", "utterance"),
}


@pytest.mark.large
@pytest.mark.parametrize("case", PESQ_CASES)
def test_pesq_loss_gradients_in_both_signals(case, two_utterances):
    """The delays carry no gradient, the score is differentiable in both signals.
    float32 inside: step 3e-4 of the signal's level along random 10 ms gain curves,
    tolerance 0.1 (measured 1e-3 to 4e-2; along white-noise directions the
    differences drown in float32 rounding)."""
    rate, mode, delay_search = PESQ_CASES[case]
    clean, degraded = two_utterances[rate]
    loss = PESQLoss(rate, mode, delay_search=delay_search, reduction="none")
    batched = {
        "degraded": (loss_at(loss, clean), degraded),
        "clean": (lambda points: loss(points, repeated(degraded, len(points))), clean),
    }
    for name, (function, point) in batched.items():
        directions = [
            gain_curve_direction(np.random.default_rng(seed), point, rate // 100)
            for seed in range(3)
        ]
        assert_directional_derivatives(function, point, directions, 3e-4, 0.1)


@pytest.fixture(scope="module")
def locally_misaligned(speech_16k):
    """``{rate: (clean, degraded)}``: 2 s of real speech whose degraded copy has three
    0.25 s stretches 50 ms early or late and noise 35 dB down. One delay cannot align
    them: P.862 finds bad intervals there (46 of 144 frames wide band at 16 kHz, 18
    narrow band at 8 kHz) and re-aligns each."""
    rng = np.random.default_rng(0)
    clean = speech_16k[8000:40000].astype(np.float64)
    degraded = clean.copy()
    for shift, (begin, end) in zip(
        (800, -800, 800), ((3000, 7000), (12000, 16000), (21000, 25000))
    ):
        degraded[begin:end] = np.roll(clean, shift)[begin:end]
    degraded = degraded + 10 ** (-35 / 20) * np.std(clean) * rng.standard_normal(len(clean))
    pairs = {
        16000: (clean, degraded),
        8000: tuple(scipy.signal.resample_poly(x, 1, 2) for x in (clean, degraded)),
    }
    return {rate: (c.astype(np.float32), d.astype(np.float32)) for rate, (c, d) in pairs.items()}


@pytest.mark.large
@pytest.mark.parametrize("rate,mode", [(16000, "wb"), (8000, "nb")])
def test_pesq_loss_gradient_through_realigned_bad_intervals(rate, mode, locally_misaligned):
    """The re-aligned copy of each bad interval carries the degraded signal's gradient
    (step and tolerance as above)."""
    clean, degraded = locally_misaligned[rate]
    loss = PESQLoss(rate, mode, reduction="none")
    directions = [
        gain_curve_direction(np.random.default_rng(seed), degraded, rate // 100)
        for seed in range(3)
    ]
    assert_directional_derivatives(loss_at(loss, clean), degraded, directions, 3e-4, 0.1)


EMBEDDING_CASES = {
    "musicnn_l1": lambda: AudioEmbeddingLoss("musicnn", reduction="none"),
    "musicnn_cosine": lambda: AudioEmbeddingLoss(
        "musicnn", distance="cosine", layers=["cnn3", "penultimate"], reduction="none"
    ),
    "vgg_l2": lambda: AudioEmbeddingLoss(
        "musicnn", embedding_options={"model": "MTT_vgg"}, distance="l2", reduction="none"
    ),
}


@needs_musicnn
@pytest.mark.large
@pytest.mark.parametrize("key", EMBEDDING_CASES)
def test_embedding_loss_gradients(key, speech_16k):
    """float32 inside: step 1e-4, tolerance 0.05 (measured 3e-3 to 7e-3)."""
    clean = speech_16k[8000:24000].astype(np.float64)
    estimate = 1.3 * clean + 0.05 * np.std(clean) * np.random.default_rng(0).standard_normal(
        clean.shape
    )
    clean, estimate = clean.astype(np.float32), estimate.astype(np.float32)
    directions = [
        random_direction(np.random.default_rng(seed), estimate, speech_envelope(clean))
        for seed in range(3)
    ]
    assert_directional_derivatives(
        loss_at(EMBEDDING_CASES[key](), clean), estimate, directions, 1e-4, 0.05
    )


# Two resolutions of discriminator outputs for one example: (logits [5, 7], two feature maps [5, 7, 2]).
LOGIT_SHAPE, FEATURE_SHAPE = (5, 7), (5, 7, 2)
OUTPUT_SIZE = int(np.prod(LOGIT_SHAPE) + 2 * np.prod(FEATURE_SHAPE))


def unpack_outputs(flat):
    """``[n, 2 * OUTPUT_SIZE]`` -> a discriminator output list of two resolutions."""
    outputs, offset = [], 0
    for _ in range(2):
        sizes = [LOGIT_SHAPE, FEATURE_SHAPE, FEATURE_SHAPE]
        parts = []
        for shape in sizes:
            size = int(np.prod(shape))
            parts.append(ops.reshape(flat[:, offset : offset + size], (-1,) + shape))
            offset += size
        outputs.append((parts[0], parts[1:]))
    return outputs


ADVERSARIAL_CASES = {
    "discriminator_lsgan": lambda real, fake: discriminator_loss(
        unpack_outputs(real), unpack_outputs(fake), "lsgan"
    ),
    "discriminator_hinge": lambda real, fake: discriminator_loss(
        unpack_outputs(real), unpack_outputs(fake), "hinge"
    ),
    "generator_lsgan": lambda real, fake: generator_adversarial_loss(unpack_outputs(fake), "lsgan"),
    "generator_hinge": lambda real, fake: generator_adversarial_loss(unpack_outputs(fake), "hinge"),
    "feature_matching": lambda real, fake: feature_matching_loss(
        unpack_outputs(real), unpack_outputs(fake)
    ),
}


@pytest.mark.parametrize("key", ADVERSARIAL_CASES)
def test_adversarial_loss_gradients(key):
    """With respect to the generated audio's discriminator outputs and, for the
    discriminator loss, the real audio's (feature matching stops the real side)."""
    rng = np.random.default_rng(0)
    real, fake = (rng.standard_normal(2 * OUTPUT_SIZE).astype(SPECTRAL_DTYPE) for _ in range(2))
    loss = ADVERSARIAL_CASES[key]
    directions = [rng.standard_normal(fake.shape) for _ in range(3)]
    assert_directional_derivatives(
        lambda points: loss(repeated(real, len(points)), points),
        fake,
        directions,
        SPECTRAL_STEP,
        SPECTRAL_RTOL,
    )
    if key.startswith("discriminator"):
        assert_directional_derivatives(
            lambda points: loss(points, repeated(fake, len(points))),
            real,
            directions,
            SPECTRAL_STEP,
            SPECTRAL_RTOL,
        )


def randomize(model, seed):
    """Every weight drawn at random, each tensor at the scale of its initial values
    (0.3 where those are 0): the zero-initialised heads of a fresh restorer block every
    gradient but theirs, and zero biases put the pre-activations of near-silent frames
    on the leaky ReLU's kink, where a gradient is one-sided."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        scale = np.sqrt(np.mean(np.square(np.asarray(variable.value)))) or 0.3
        variable.assign((scale * rng.standard_normal(variable.shape)).astype(np.float32))
    return model


def small_restorer():
    keras.utils.set_random_seed(4)
    model = SpectralRestorer(
        None,
        channels=(4, 8),
        kernel=(3, 3),
        recurrent_units=16,
        recurrent_layers=1,
        bidirectional=False,
    )
    model(np.zeros((1, 4000), np.float32))
    return randomize(model, 5)


def projected(outputs, projection):
    """A random linear functional of a model's output, one value per example."""
    return ops.sum(ops.reshape(outputs * projection, (ops.shape(outputs)[0], -1)), axis=-1)


@pytest.fixture(scope="module")
def restorer_point(speech_16k):
    """A small restorer with random weights, a noisy input, and a random projection of
    its output (the scalar whose gradient is checked)."""
    model = small_restorer()
    noisy = speech_16k[5000:9000] + 0.01 * np.random.default_rng(1).standard_normal(4000).astype(
        np.float32
    )
    projection = np.random.default_rng(2).standard_normal(noisy.shape).astype(np.float32)
    return model, noisy, projection


def test_restorer_gradient_wrt_input(restorer_point):
    """float32 inside: step 3e-5 of the input's level (larger steps cross the leaky
    ReLUs' kinks: 3e-2 at 1e-4), tolerance 0.02 (measured 3e-3 TensorFlow, 6e-3 JAX).
    The directions' seeds are not the projection's (2): a direction drawn from the
    projection's own noise lines up with the restorer's near-identity path, and its
    derivative, a hundred times the others', hides an error in every other path (a mask
    whose gradient is cut passed)."""
    model, noisy, projection = restorer_point
    envelope = speech_envelope(noisy)
    directions = [
        random_direction(np.random.default_rng(seed), noisy, envelope) for seed in range(3, 6)
    ]
    assert_directional_derivatives(
        lambda points: projected(model(points), projection), noisy, directions, 3e-5, 0.02
    )


@pytest.mark.large
def test_restorer_gradient_wrt_weights(restorer_point):
    """Step 1e-5 of each weight tensor's level, tolerance 0.03 (measured 6e-3 under
    TensorFlow, 2e-3 under JAX; every weight moves at once, so larger steps cross more
    leaky ReLU kinks: 1e-2 at 3e-5). At 0.1 a gradient halved in the mask head's kernel,
    or cut between the encoder and the recurrent layers, passed."""
    model, noisy, projection = restorer_point
    non_trainable = [v.value for v in model.non_trainable_variables]

    def output_functional(trainable):
        restored, _ = model.stateless_call(trainable, non_trainable, noisy[None])
        return ops.sum(projected(restored, projection))

    assert_weight_derivatives(
        output_functional,
        [np.asarray(v.value) for v in model.trainable_variables],
        range(3),
        1e-5,
        0.03,
    )


def discriminator(name):
    """A small discriminator, built; its weights are randomized by the caller."""
    keras.utils.set_random_seed(4)
    if name == "metric":
        model = MetricDiscriminator(16000, channels=4)
        model((np.zeros((1, 4000), np.float32), np.zeros((1, 4000), np.float32)))
    else:
        model = MultiResolutionDiscriminator(
            resolutions=((256, 64, 256), (512, 128, 512)), channels=4
        )
        model(np.zeros((1, 4000), np.float32))
    return model


def discriminator_score(name, model, clean, projections, trainable=None):
    """A scalar per example: the metric discriminator's score, or a random linear
    functional of the multi-resolution discriminator's logits."""

    def call(inputs):
        if trainable is None:
            return model(inputs)
        return model.stateless_call(
            trainable, [v.value for v in model.non_trainable_variables], inputs
        )[0]

    def score(points):
        if name == "metric":
            return call((repeated(clean, len(points)), points))
        return sum(projected(logits, p) for (logits, _), p in zip(call(points), projections))

    return score


@pytest.mark.parametrize("name", ["multi_resolution", "metric"])
def test_discriminator_gradients(name, speech_16k):
    """Score with respect to the estimate and the weights, float32 inside: step 3e-5.
    Estimate: tolerance 0.15 (measured 0.5 % to 1.6 % under TensorFlow, up to 4.9 % under
    JAX: the |X|^0.3 front end and, in the metric discriminator, the global max pooling
    make the score strongly non-linear). Weights: tolerance 0.03 (measured 0.26 % to
    0.54 % under both backends; at 0.15 a gradient halved in one weight tensor, the
    head's kernel or the learnable sigmoid's slope, passed)."""
    model = randomize(discriminator(name), 3)
    clean = speech_16k[5000:13000]
    estimate = (clean + 0.02 * np.random.default_rng(1).standard_normal(clean.shape)).astype(
        np.float32
    )
    rng = np.random.default_rng(2)
    projections = (
        []
        if name == "metric"
        else [
            rng.standard_normal(logits.shape[1:]).astype(np.float32)
            for logits, _ in model(estimate[None])
        ]
    )
    directions = [
        random_direction(np.random.default_rng(seed), estimate, speech_envelope(clean))
        for seed in range(3)
    ]
    assert_directional_derivatives(
        discriminator_score(name, model, clean, projections), estimate, directions, 3e-5, 0.15
    )

    def total(trainable):
        return ops.sum(
            discriminator_score(name, model, clean, projections, trainable)(estimate[None])
        )

    assert_weight_derivatives(
        total, [np.asarray(v.value) for v in model.trainable_variables], range(3), 3e-5, 0.03
    )


def test_adversarial_objectives_reach_every_variable(speech_16k):
    """Generator and discriminator objectives give a finite, non-zero gradient to every
    trainable variable of the model they train (no None, no disconnected layer)."""
    generator, critic = small_restorer(), discriminator("multi_resolution")
    clean = speech_16k[None, 5000:9000]
    noisy = clean + 0.01 * np.random.default_rng(1).standard_normal(clean.shape).astype(np.float32)
    g_variables = [np.asarray(v.value) for v in generator.trainable_variables]
    d_variables = [np.asarray(v.value) for v in critic.trainable_variables]
    g_fixed = [v.value for v in generator.non_trainable_variables]
    d_fixed = [v.value for v in critic.non_trainable_variables]

    def generator_objective(*weights):
        restored, _ = generator.stateless_call(list(weights), g_fixed, noisy)
        real, fake = critic(clean), critic(restored)
        return ops.sum(generator_adversarial_loss(fake) + feature_matching_loss(real, fake))

    def discriminator_objective(*weights):
        restored = ops.stop_gradient(generator(noisy))
        real = critic.stateless_call(list(weights), d_fixed, clean)[0]
        fake = critic.stateless_call(list(weights), d_fixed, restored)[0]
        return ops.sum(discriminator_loss(real, fake))

    for objective, variables, model in (
        (generator_objective, g_variables, generator),
        (discriminator_objective, d_variables, critic),
    ):
        for grad, variable in zip(gradients(objective, variables), model.trainable_variables):
            assert np.all(np.isfinite(grad)), variable.path
            assert np.any(grad != 0), f"{variable.path} gets a zero gradient"
