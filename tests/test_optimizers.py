"""Optimizers and learning-rate schedules built from settings (``spectral_restore.optimizers``)
and from training configs (``training.train.build_optimizers``)."""

import keras
import numpy as np
import pytest

from spectral_restore.optimizers import build_optimizer, learning_rate_schedule
from training.config import load_config
from training.train import build_optimizers


def rate_at(optimizer, step):
    """The learning rate ``optimizer`` uses at update ``step``."""
    optimizer.iterations.assign(step)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def test_schedules_follow_their_formulas():
    lr = 5e-4
    assert learning_rate_schedule(lr) == lr
    exponential = learning_rate_schedule(lr, "exponential", steps_per_epoch=100, decay_rate=0.9)
    for step in (0, 99, 100, 250, 1000):
        assert float(exponential(step)) == pytest.approx(lr * 0.9 ** (step // 100), rel=1e-6)
    cosine = learning_rate_schedule(lr, "cosine", total_steps=400, final_fraction=0.1)
    for step in (0, 100, 200, 400, 600):
        expected = lr * (0.1 + 0.9 * (1 + np.cos(np.pi * min(step, 400) / 400)) / 2)
        assert float(cosine(step)) == pytest.approx(expected, rel=1e-5)


def test_bad_names_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown optimizer `name` 'sgd'"):
        build_optimizer("sgd")
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer("adam", momentum=0.9)
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer("adam", weight_decay=0.01)
    with pytest.raises(ValueError, match="Unknown learning-rate schedule `name` 'step'"):
        learning_rate_schedule(1e-3, "step")
    with pytest.raises(ValueError, match="steps_per_epoch=0"):
        learning_rate_schedule(1e-3, "exponential", steps_per_epoch=0)
    with pytest.raises(ValueError, match="decay_rate=1.5"):
        learning_rate_schedule(1e-3, "exponential", steps_per_epoch=10, decay_rate=1.5)
    with pytest.raises(ValueError, match="total_steps=None"):
        learning_rate_schedule(1e-3, "cosine")
    with pytest.raises(ValueError, match="Unknown optimizer `name` 'lamb'"):
        build_optimizers(load_config("small.yaml", ["training.optimizer.name=lamb"])["training"])


def test_configs_build_the_optimizers_they_name():
    """base.yaml: Adam for the generator (Keras's betas, clipped to clip_norm) and Adam
    with betas 0.8/0.99 for both discriminators, constant rates. The same keys choose
    AdamW and a per-epoch exponential decay of every optimizer."""
    training = load_config()["training"]
    built = build_optimizers(training)
    generator = built["generator"]
    assert type(generator) is keras.optimizers.Adam
    assert (generator.beta_1, generator.beta_2, generator.global_clipnorm) == (
        0.9,
        0.999,
        training["clip_norm"],
    )
    assert rate_at(generator, 10_000) == pytest.approx(training["learning_rate"])
    for name in ("discriminator", "metric_discriminator"):
        assert type(built[name]) is keras.optimizers.Adam
        assert (built[name].beta_1, built[name].beta_2) == (0.8, 0.99)
        assert rate_at(built[name], 0) == pytest.approx(training["discriminator_learning_rate"])

    overrides = [
        "training.optimizer.name=adamw",
        "training.optimizer.weight_decay=0.02",
        "training.optimizer.beta_1=0.8",
        "training.lr_schedule.name=exponential",
        "training.lr_schedule.decay_rate=0.95",
        "training.steps_per_epoch=7",
    ]
    training = load_config("small.yaml", overrides)["training"]
    built = build_optimizers(training)
    assert type(built["generator"]) is keras.optimizers.AdamW
    assert (built["generator"].beta_1, built["generator"].weight_decay) == (0.8, 0.02)
    for name, learning_rate in (
        ("generator", training["learning_rate"]),
        ("metric_discriminator", training["discriminator_learning_rate"]),
    ):
        for step in (0, 6, 7, 30):
            assert rate_at(built[name], step) == pytest.approx(
                learning_rate * 0.95 ** (step // 7), rel=1e-6
            )


def test_adamw_with_exponential_decay_steps_as_pytorch():
    """MP-SENet's optimiser, built from settings, updates weights as PyTorch's ``AdamW``
    with ``ExponentialLR`` stepped after every epoch does, given the same gradients."""
    torch = pytest.importorskip("torch", reason="torch (CPU) is in the test extras; CI installs it")
    steps_per_epoch, epochs = 2, 4
    rng = np.random.default_rng(0)
    initial = rng.standard_normal(6).astype(np.float32)
    gradients = rng.standard_normal((steps_per_epoch * epochs, 6)).astype(np.float32)

    weight = torch.nn.Parameter(torch.tensor(initial))
    reference = torch.optim.AdamW([weight], lr=5e-4, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.01)
    decay = torch.optim.lr_scheduler.ExponentialLR(reference, gamma=0.5)
    variable = keras.Variable(initial)
    ours = build_optimizer(
        "adamw",
        learning_rate_schedule(
            5e-4, "exponential", steps_per_epoch=steps_per_epoch, decay_rate=0.5
        ),
        beta_1=0.8,
        beta_2=0.99,
        epsilon=1e-8,
        weight_decay=0.01,
    )
    for step, gradient in enumerate(gradients):
        weight.grad = torch.tensor(gradient)
        reference.step()
        if (step + 1) % steps_per_epoch == 0:
            decay.step()
        ours.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
    moved = weight.detach().numpy() - initial
    assert np.min(np.abs(moved)) > 1e-4
    # Keras puts Adam's epsilon outside the bias correction: a difference of order 1e-8 here.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(variable) - initial, moved, rtol=1e-4, atol=1e-7
    )
