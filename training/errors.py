"""Errors that are the user's to fix: a config key, an override, a file, a model, an option.

The ``spectral-restore`` command prints a :class:`UsageError` as one line and exits
with status 2, as ``argparse`` does with a bad option; any other exception is a bug
and keeps its traceback. Library functions raise ``ValueError``, ``TypeError`` or
``FileNotFoundError`` for bad arguments: :func:`user_input` marks the few places
where the application hands the library something the user named (a config value,
a model file, a folder) so that those errors, and only those, reach the user as
usage errors.
"""

import contextlib


class UsageError(ValueError):
    """What the user asked for cannot be done: the message says what was wrong and how to fix it."""


@contextlib.contextmanager
def user_input(what):
    """Re-raises ``ValueError``, ``TypeError`` and ``FileNotFoundError`` from the block
    as :class:`UsageError` prefixed with ``what`` (e.g. ``"config model.preset"``),
    the original chained so that ``--debug`` shows where it came from.

    Wrap only the code that checks or opens what the user named, never the work
    done with it afterwards: an error there is a bug and must keep its traceback.

    Example:
    >>> with user_input("--chunk-seconds"):
    ...     float("ten")
    Traceback (most recent call last):
    ...
    training.errors.UsageError: --chunk-seconds: could not convert string to float: 'ten'
    """
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise UsageError(f"{what}: {err}") from err


__all__ = ["UsageError", "user_input"]
