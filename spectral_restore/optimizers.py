"""Optimizers and learning-rate schedules from plain settings.

:func:`build_optimizer` is the one place a Keras optimizer is made from a name and
hyperparameters (training configs' ``training.optimizer`` and
``training.discriminator_optimizer``, and the GAN's defaults);
:func:`learning_rate_schedule` turns ``training.lr_schedule`` into the learning rate
it receives. Schedules are Keras ``LearningRateSchedule`` objects of the optimizer's
own update count (``optimizer.iterations``), so they are saved with the optimizer and
a resumed run continues on the same curve.
"""

import keras

OPTIMIZERS = {
    # Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015.
    "adam": keras.optimizers.Adam,
    # Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.
    "adamw": keras.optimizers.AdamW,
}
SCHEDULES = ("none", "exponential", "cosine")
HYPERPARAMETERS = ("beta_1", "beta_2", "epsilon", "weight_decay", "global_clipnorm")


def build_optimizer(name="adam", learning_rate=1e-3, **hyperparameters):
    """A Keras optimizer by name.

    Formula (Adam, per weight ``w`` with gradient ``g`` at update ``t``):
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``w -= lr_t sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``; AdamW first
    decays the weight, decoupled from the gradient: ``w -= lr_t * weight_decay * w``
    (as PyTorch's ``AdamW``).

    Args:
        name: str. "adam" or "adamw" (``OPTIMIZERS``). Defaults to "adam".
        learning_rate: float or ``keras.optimizers.schedules.LearningRateSchedule``
            (see :func:`learning_rate_schedule`). Defaults to 1e-3.
        **hyperparameters: any of ``HYPERPARAMETERS``: ``beta_1``, ``beta_2``,
            ``epsilon``, ``weight_decay`` (adamw only; Adam's would be the same
            decoupled decay, so it is refused there: one way to ask for it) and
            ``global_clipnorm``. A value of None leaves the Keras class's default.

    Returns:
        A ``keras.optimizers.Optimizer``.

    Example:
    >>> optimizer = build_optimizer("adamw", 5e-4, beta_1=0.8, beta_2=0.99, weight_decay=0.01)
    >>> type(optimizer).__name__, optimizer.beta_1, optimizer.weight_decay
    ('AdamW', 0.8, 0.01)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer `name` {name!r}; known: {sorted(OPTIMIZERS)}")
    unknown = sorted(set(hyperparameters) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(
            f"Unknown optimizer hyperparameters {unknown}; known: {list(HYPERPARAMETERS)}"
        )
    options = {key: value for key, value in hyperparameters.items() if value is not None}
    if name == "adam":
        weight_decay = options.pop("weight_decay", 0.0)
        if weight_decay:
            raise ValueError(
                "`weight_decay` needs the optimizer 'adamw' (decoupled weight decay). "
                f"Received: name='adam', weight_decay={weight_decay!r}"
            )
    return OPTIMIZERS[name](learning_rate=learning_rate, **options)


def learning_rate_schedule(
    learning_rate,
    name="none",
    steps_per_epoch=None,
    total_steps=None,
    decay_rate=0.99,
    final_fraction=0.0,
):
    """The learning rate of a named schedule, as an optimizer takes it.

    Formula, with ``t`` the optimizer's update count and ``lr`` = ``learning_rate``:
    "none": ``lr``; "exponential": ``lr * decay_rate ^ floor(t / steps_per_epoch)``
    (PyTorch's ``ExponentialLR`` stepped after every epoch); "cosine":
    ``lr * (f + (1 - f) (1 + cos(pi min(t, T) / T)) / 2)`` with ``T = total_steps``
    and ``f = final_fraction`` (Loshchilov & Hutter, "SGDR: stochastic gradient
    descent with warm restarts", ICLR 2017, without restarts).

    Args:
        learning_rate: float. The rate at update 0.
        name: str. "none", "exponential" or "cosine" (``SCHEDULES``). Defaults to "none".
        steps_per_epoch: int. For "exponential": updates per decay. Defaults to None.
        total_steps: int. For "cosine": updates to the end of the decay. Defaults to None.
        decay_rate: float in (0, 1]. For "exponential". Defaults to 0.99.
        final_fraction: float in [0, 1]. For "cosine": the rate's final share of
            ``learning_rate``. Defaults to 0.

    Returns:
        ``learning_rate`` itself for "none", else a ``LearningRateSchedule``.

    Example:
    >>> schedule = learning_rate_schedule(5e-4, "exponential", steps_per_epoch=100, decay_rate=0.99)
    >>> round(float(schedule(250)), 8)  # two decays: 5e-4 * 0.99^2
    0.00049005
    """
    if name not in SCHEDULES:
        raise ValueError(
            f"Unknown learning-rate schedule `name` {name!r}; known: {list(SCHEDULES)}"
        )
    if name == "none":
        return learning_rate
    if name == "exponential":
        if (
            isinstance(steps_per_epoch, bool)
            or not isinstance(steps_per_epoch, int)
            or steps_per_epoch <= 0
        ):
            raise ValueError(
                f"`steps_per_epoch` must be a positive integer. Received: steps_per_epoch={steps_per_epoch!r}"
            )
        if not 0.0 < decay_rate <= 1.0:
            raise ValueError(f"`decay_rate` must be in (0, 1]. Received: decay_rate={decay_rate!r}")
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=steps_per_epoch, decay_rate=decay_rate, staircase=True
        )
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(
            f"`total_steps` must be a positive integer. Received: total_steps={total_steps!r}"
        )
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(
            f"`final_fraction` must be in [0, 1]. Received: final_fraction={final_fraction!r}"
        )
    return keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=total_steps, alpha=final_fraction
    )
