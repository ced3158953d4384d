"""Configs: a base YAML file, override files that `extends` it, and `key.sub=value` overrides."""

import contextlib
import copy
import difflib
import json
import os

import yaml

from training.errors import UsageError, user_input

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def _unknown(kind, where, known, context=""):
    """The UsageError of an unknown key or section ``where`` (dotted) among ``known``,
    with the closest known name as the likely fix."""
    prefix, _, name = where.rpartition(".")
    close = difflib.get_close_matches(name, [str(key) for key in known], n=1)
    if close:
        return UsageError(
            f"unknown config {kind} {where!r}{context}; did you mean "
            f"{'.'.join(filter(None, [prefix, close[0]]))!r}?"
        )
    return UsageError(
        f"unknown config {kind} {where!r}{context}; known here: {', '.join(map(str, known))}"
    )


def _merge(base, override, source, path=""):
    """``override`` (read from ``source``, named in errors) merged into ``base``."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in merged:
            raise _unknown("key", where, merged, f" in {source}")
        if isinstance(merged[key], dict) and isinstance(value, dict) and path + key != "loss":
            merged[key] = _merge(merged[key], value, source, where + ".")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_file(path):
    if not os.path.exists(path) and os.path.exists(os.path.join(CONFIG_DIR, path)):
        path = os.path.join(CONFIG_DIR, path)
    if not os.path.exists(path):
        names = ", ".join(sorted(name for name in os.listdir(CONFIG_DIR) if name.endswith(".yaml")))
        raise UsageError(
            f"config file not found: {path} (give a path, or one of training/configs/: {names})"
        )
    with open(path) as f:
        data = _yaml(f, f"config file {path}") or {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: a config must be a mapping of sections (model:, data:, loss:, training:)"
        )
    parent = data.pop("extends", None)
    if parent is None:
        return data
    candidate = os.path.join(os.path.dirname(path), parent)
    if not os.path.exists(candidate):
        candidate = os.path.join(CONFIG_DIR, parent)
    return _merge(_load_file(candidate), data, path)


def parse_override(text):
    """``"training.epochs=3"`` -> ``(["training", "epochs"], 3)`` (the value is YAML)."""
    key, equals, value = text.partition("=")
    keys = key.strip().split(".")
    if not equals or not all(keys):
        raise UsageError(
            f"an override must look like section.key=value (e.g. training.epochs=3); received {text!r}"
        )
    return keys, _yaml(value, f"the value of override {text!r}")


def _yaml(text, what):
    """``text`` (a string or file) read as YAML; a UsageError naming ``what`` if it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise UsageError(
            f"{what} is not valid YAML: {getattr(err, 'problem', None) or err}{at} "
            "(quote values holding spaces, colons or braces)"
        ) from err


def _check_number(where, default, value):
    """``value`` for the key ``where`` whose default is ``default``: a number key
    takes a number or null (``training.epochs=ten`` fails now, not after the data
    loaded). A float key also takes the text of a float, which YAML 1.1 reads as
    text when it has no dot (``1e-3``)."""
    if isinstance(default, bool) or not isinstance(default, (int, float)) or value is None:
        return value
    if isinstance(default, float) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    wanted = (int,) if isinstance(default, int) else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise UsageError(
            f"config key {where!r} takes {kind} (default {default!r}); received {value!r}"
        )
    return value


def load_config(path=None, overrides=()):
    """The merged config: ``base.yaml`` (or ``path`` and what it extends) plus overrides.
    Keys not in the base config are errors, so a typo cannot silently do nothing;
    the loss section is replaced whole by an override file (it names the terms)."""
    return _apply_overrides(_load_file(path or os.path.join(CONFIG_DIR, "base.yaml")), overrides)


def load_run_config(path, overrides=()):
    """The config a training run saved (``config.json`` in its output folder), with
    ``base.yaml``'s defaults for keys added since, plus ``section.key=value`` overrides."""
    with open(path) as f, user_input(f"{path} is not a saved run config (JSON)"):
        saved = json.load(f)
    if not isinstance(saved, dict):
        raise UsageError(f"{path}: a saved run config must be a mapping")
    return _apply_overrides(
        _merge(_load_file(os.path.join(CONFIG_DIR, "base.yaml")), saved, path), overrides
    )


def _apply_overrides(config, overrides):
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for depth, key in enumerate(keys[:-1]):
            if key not in node or not isinstance(node[key], dict):
                sections = [name for name, child in node.items() if isinstance(child, dict)]
                raise _unknown(
                    "section", ".".join(keys[: depth + 1]), sections, f" in override {text!r}"
                )
            node = node[key]
        if keys[0] != "loss":
            if keys[-1] not in node:
                raise _unknown("key", ".".join(keys), node, f" in override {text!r}")
            value = _check_number(".".join(keys), node[keys[-1]], value)
        node[keys[-1]] = value
    return config


def register_dataset_builders(source):
    """Registers the project's TFDS builders with TFDS when ``source`` names a TFDS
    dataset (``"tfds:NAME"``): the library looks datasets up by name and imports no
    builder (builders import the library, not the other way round)."""
    if isinstance(source, str) and source.startswith("tfds:"):
        import tfds_builders  # noqa: F401 - importing registers every builder


def build_loss(loss_config):
    """A CombinedLoss from the ``loss`` section: ``name: weight`` or ``name: {weight, args}``."""
    from spectral_restore.losses import CombinedLoss
    from spectral_restore.losses.combined import TERM_FACTORIES, check_term_name

    terms = {}
    for name, spec in loss_config.items():
        with user_input(f"config loss term {name!r}"):
            check_term_name(name)
        if name not in TERM_FACTORIES:
            raise _unknown("loss term", name, sorted(TERM_FACTORIES))
        if isinstance(spec, dict):
            unknown = set(spec) - {"weight", "args"}
            if unknown:
                raise UsageError(
                    f"config loss term {name!r}: unknown fields {sorted(unknown)} (use weight, args)"
                )
            weight, args = spec.get("weight", 1.0), spec.get("args", {})
        else:
            weight, args = spec, {}
        # The term's constructor checks its arguments; what it rejects came from the config.
        with user_input(f"config loss term {name!r}"):
            terms[name] = (TERM_FACTORIES[name](**args), float(weight))
    return CombinedLoss(terms)
