"""Argument checks shared by the whole library: a bad value raises ``ValueError``
naming the argument and the value received."""


def check_choice(name, value, choices):
    """``value`` when it is one of ``choices``.

    Example:
    >>> check_choice("distance", "l1", ("l1", "l2"))
    'l1'
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    return value


def check_non_negative(name, value):
    """``value`` as a float when it is a number >= 0 (not a bool).

    Example:
    >>> check_non_negative("weight", 2)
    2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    return float(value)
