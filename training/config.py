"""Configs: a base YAML file, override files that `extends` it, and `key.sub=value` overrides."""

import copy
import json
import os

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def _merge(base, override, path=""):
    merged = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in merged:
            raise ValueError(f"Unknown config key {where!r}; known keys here: {sorted(merged)}")
        if isinstance(merged[key], dict) and isinstance(value, dict) and path + key != "loss":
            merged[key] = _merge(merged[key], value, where + ".")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_file(path):
    if not os.path.exists(path) and os.path.exists(os.path.join(CONFIG_DIR, path)):
        path = os.path.join(CONFIG_DIR, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    candidate = os.path.join(os.path.dirname(path), parent)
    if not os.path.exists(candidate):
        candidate = os.path.join(CONFIG_DIR, parent)
    return _merge(_load_file(candidate), data)


def parse_override(text):
    """``"training.epochs=3"`` -> ``(["training", "epochs"], 3)`` (the value is YAML)."""
    if "=" not in text:
        raise ValueError(f"An override must look like section.key=value; received {text!r}")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def load_config(path=None, overrides=()):
    """The merged config: ``base.yaml`` (or ``path`` and what it extends) plus overrides.
    Keys not in the base config are errors, so a typo cannot silently do nothing;
    the loss section is replaced whole by an override file (it names the terms)."""
    return _apply_overrides(_load_file(path or os.path.join(CONFIG_DIR, "base.yaml")), overrides)


def load_run_config(path, overrides=()):
    """The config a training run saved (``config.json`` in its output folder), with
    ``base.yaml``'s defaults for keys added since, plus ``section.key=value`` overrides."""
    with open(path) as f:
        saved = json.load(f)
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: a saved config must be a mapping")
    return _apply_overrides(_merge(_load_file(os.path.join(CONFIG_DIR, "base.yaml")), saved), overrides)


def _apply_overrides(config, overrides):
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for key in keys[:-1]:
            if key not in node or not isinstance(node[key], dict):
                raise ValueError(f"Unknown config section {'.'.join(keys[:-1])!r} in override {text!r}")
            node = node[key]
        if keys[0] != "loss" and keys[-1] not in node:
            raise ValueError(f"Unknown config key {'.'.join(keys)!r} in override {text!r}")
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
        check_term_name(name)
        if name not in TERM_FACTORIES:
            raise ValueError(f"Unknown loss term {name!r}; known: {sorted(TERM_FACTORIES)}")
        if isinstance(spec, dict):
            unknown = set(spec) - {"weight", "args"}
            if unknown:
                raise ValueError(f"Loss term {name!r}: unknown fields {sorted(unknown)} (use weight, args)")
            terms[name] = (TERM_FACTORIES[name](**spec.get("args", {})), float(spec.get("weight", 1.0)))
        else:
            terms[name] = (TERM_FACTORIES[name](), float(spec))
    return CombinedLoss(terms)
