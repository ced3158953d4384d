"""`spectral-restore evaluate MODEL`: the run's held-out utterances, whole, scored
before and after restoration with every metric of :mod:`spectral_restore.evaluation`,
overall, on the clean utterances themselves (a restorer must do no harm), per
artifact type and per bin of the damaged input's PESQ-WB.

Each utterance of ``data.eval_split`` (held-out voices) is read whole, at any
length, and levelled as training crops are. Clean speech is damaged by ``data.chain``
with a seed of its own (``data.eval_seed + pass``, folded with its index;
``data.eval_repeats`` passes); recorded pairs (a folder pair or a TFDS dataset with
a damaged field) keep their recorded damage, with the chain on top only for
``data.damage_pairs``. The damaged side is restored through the chunking
:class:`~spectral_restore.inference.AudioRestorer` and both are scored with
:func:`~spectral_restore.evaluation.score_conditions`; so is each clean utterance,
once, as its own input (the ``clean`` row). Nothing is dropped: files
that cannot be read or do not pair are listed in the report, and a value a metric
cannot give is counted by reason.
"""

import os

import numpy as np

from spectral_restore.evaluation import folders, report
from spectral_restore.evaluation.scoring import score_conditions
from training.config import register_dataset_builders
from training.errors import UsageError

# Salt of the per-utterance damage seeds, so they share no draws with training's.
_DAMAGE_SALT = 0xE7A1
# Rows of the damaged utterances by the PESQ-WB of their damaged input: [low, high).
INPUT_QUALITY_BINS = (
    ("input PESQ-WB < 2", -np.inf, 2.0),
    ("input PESQ-WB 2-3", 2.0, 3.0),
    ("input PESQ-WB >= 3", 3.0, np.inf),
)


def utterance_seed(eval_seed, repeat, index):
    """The chain seed of utterance ``index`` in pass ``repeat``: int32 ``[2]``."""
    state = np.random.SeedSequence(
        [int(eval_seed) + int(repeat), _DAMAGE_SALT, int(index)]
    ).generate_state(2)
    return (state >> 1).astype(np.int32)


def held_out_utterances(config, stats=None):
    """The evaluation split as an :class:`~spectral_restore.data.source.AudioDataset`
    (whole utterances come from its ``utterance(i)``) and the display name of each clip."""
    from spectral_restore.data.files import FilePair
    from spectral_restore.data.source import AudioDataset

    data = config["data"]
    register_dataset_builders(data["source"])
    dataset = AudioDataset(
        data["source"],
        split=data["eval_split"],
        data_dir=data["data_dir"],
        manual_dir=data["manual_dir"],
        pair_tolerance_seconds=data["pair_tolerance_seconds"],
        sample_rate=config["model"]["sample_rate"],
        batch_size=1,
        damage="none",
        shuffle=False,
        stats=stats,
    )
    names = []
    for index, clip in enumerate(dataset.clips):
        if isinstance(clip, FilePair):
            names.append(clip.name)
        else:
            names.append(
                os.path.basename(clip)
                if isinstance(clip, str)
                else f"{data['eval_split']}[{index}]"
            )
    return dataset, names


def damage_chain(config, dataset):
    """The chain that damages the held-out utterances: the config's, or None for
    recorded pairs evaluated as recorded (``data.damage_pairs`` false)."""
    from spectral_restore.data.artifacts import ArtifactChain

    data = config["data"]
    if dataset.paired and not data["damage_pairs"]:
        return None
    return ArtifactChain(data["chain"], sample_rate=config["model"]["sample_rate"])


def held_out_items(config, dataset, names, restorer, damage, count, progress=True):
    """``(name, clean, {"input": damaged, "restored": restored})`` of the first
    ``count`` held-out utterances in every pass (one pass for recorded pairs without
    the chain), then of the same clean utterances once more undamaged (``input`` is
    the clean utterance itself, named ``"<name> (clean)"``), made one at a time with a
    progress bar; unreadable ones are left to ``dataset.stats``. ``damage`` receives,
    per item, the chain's record (artifact -> strength, None where it was not applied;
    empty without a chain), or None for a clean item."""
    from keras import ops
    from tqdm import tqdm

    data = config["data"]
    chain = damage_chain(config, dataset)
    passes = int(data["eval_repeats"]) if chain is not None else 1
    order = [(repeat, index) for repeat in range(passes + 1) for index in range(count)]
    for repeat, index in tqdm(order, desc="evaluating", unit="utterance", disable=not progress):
        utterance = dataset.utterance(index)
        if utterance is None:
            continue
        recorded, clean = (utterance[0], utterance[1]) if dataset.paired else (utterance, utterance)
        if repeat == passes:
            damage.append(None)
            yield (
                f"{names[index]} (clean)",
                clean,
                {"input": clean, "restored": restorer(clean[None])[0]},
            )
            continue
        if chain is None:
            damaged, record = recorded, {}
        else:
            damaged, record = chain(
                recorded[None], utterance_seed(data["eval_seed"], repeat, index)
            )
            damaged = ops.convert_to_numpy(damaged)[0]
        damage.append(
            {
                name: float(ops.convert_to_numpy(value["strength"])[0])
                if bool(ops.convert_to_numpy(value["applied"])[0])
                else None
                for name, value in record.items()
            }
        )
        label = names[index] if passes == 1 else f"{names[index]} (pass {repeat + 1})"
        yield label, clean, {"input": damaged, "restored": restorer(damaged[None])[0]}


def input_groups(inputs, damage):
    """The report's groups over the scored items, bool masks: ``all`` the damaged
    items (it replaces the report's every-file default), ``clean`` the undamaged ones,
    each artifact the items it was applied to, and each bin of ``INPUT_QUALITY_BINS``
    the damaged items whose input's PESQ-WB falls in it (none without PESQ-WB; an
    input whose PESQ-WB failed is in no bin).

    Args:
        inputs: Evaluation of the "input" condition, one file per item.
        damage: list, per item, of the chain's record or None for a clean item.
    """
    damaged = np.array([entry is not None for entry in damage])
    artifacts = next((entry for entry in damage if entry is not None), {})
    groups = {"all": damaged, "clean": ~damaged}
    groups.update(
        {
            name: np.array([entry is not None and entry[name] is not None for entry in damage])
            for name in artifacts
        }
    )
    if "pesq_wb" in inputs.metrics:
        quality = inputs.values("pesq_wb")
        with np.errstate(invalid="ignore"):
            groups.update(
                {
                    label: damaged & (quality >= low) & (quality < high)
                    for label, low, high in INPUT_QUALITY_BINS
                }
            )
    return groups


def evaluate(
    model,
    config,
    output_dir,
    max_files=None,
    progress=True,
    processes=None,
    metrics=None,
    pad_seconds=folders.PAD_SECONDS,
):
    """Writes evaluation.json, evaluation.md and evaluation.png to ``output_dir``.

    Args:
        model: a ``.keras`` file, SavedModel folder, keras.Model or AudioRestorer.
        config: dict. The run's config (``data`` and ``model.sample_rate`` are read).
        output_dir: str.
        max_files: int or None. Only the first utterances of each pass.
        progress: bool. A progress bar. Defaults to True.
        processes: int or None. PESQ worker processes (None: one per CPU).
        metrics: list of metric names or None (all).
        pad_seconds: float or None. The AudioRestorer's input padding.

    Returns:
        ``(data, markdown_text)``: what evaluation.json and evaluation.md hold.
    """
    from spectral_restore.data.files import ReadStats
    from spectral_restore.inference import AudioRestorer

    if max_files is not None and (
        isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1
    ):
        raise ValueError(f"`max_files` must be an integer >= 1 or None. Received: {max_files!r}")
    restorer = (
        model if isinstance(model, AudioRestorer) else AudioRestorer(model, pad_seconds=pad_seconds)
    )
    rate = int(config["model"]["sample_rate"])
    if restorer.sample_rate != rate:
        raise UsageError(
            f"the model restores {restorer.sample_rate} Hz audio but the config's model.sample_rate "
            f"is {rate} (--config names the run's config, or override model.sample_rate)"
        )
    data = config["data"]
    stats, damage = ReadStats(), []
    dataset, names = held_out_utterances(config, stats)
    chain = damage_chain(config, dataset)
    count = len(names) if max_files is None else min(len(names), max_files)
    passes = int(data["eval_repeats"]) if chain is not None else 1
    evaluations = score_conditions(
        held_out_items(config, dataset, names, restorer, damage, count, progress),
        rate,
        ("input", "restored"),
        metrics=metrics,
        processes=processes,
        progress=False,
    )
    scored = evaluations["input"].files
    if not scored:
        raise UsageError(
            f"no utterance of {data['source']!r} ({data['eval_split']}) could be read: "
            f"{stats.messages()}"
        )
    groups = input_groups(evaluations["input"], damage)
    damaged = int(groups["all"].sum())
    if chain is None:
        what = f"recorded pairs {data['source']}"
        damage_note = "their recorded damage (data.damage_pairs is false)"
    else:
        what = f"{'recorded pairs' if dataset.paired else 'held-out utterances'} {data['source']}"
        damage_note = (
            f"{'their recorded damage and ' if dataset.paired else ''}the {data['chain']!r} chain with "
            f"seeds from data.eval_seed={data['eval_seed']}, {passes} passes"
        )
    notes = [
        f"model: {restorer.source}; {what} ({data['eval_split']} split)",
        f"{damaged} utterances scored whole at {rate} Hz, damaged by {damage_note}",
        f"clean: the {len(scored) - damaged} clean utterances, undamaged, as input (a restorer must do no harm)",
    ]
    if stats.files_skipped:
        notes.append(f"{stats.files_skipped} files could not be read or paired (listed below)")
    if max_files is not None and count < len(names):
        notes.append(
            f"max_files={max_files}: {len(names) - count} utterances per pass left out on request"
        )
    voicebank = chain is None and (
        str(data["source"]).startswith("tfds:voicebank_demand")
        or report.is_voicebank_test(row["name"] for row in scored)
    )
    if voicebank and damaged != report.VOICEBANK_TEST_FILES:
        notes.append(
            f"the published rows are over all {report.VOICEBANK_TEST_FILES} test files; "
            f"this evaluation scored {damaged}"
        )
    return report.write_report(
        output_dir,
        evaluations,
        title=f"{'synthetic damage' if chain is not None else 'recorded damage'} on "
        f"{data['source']}",
        notes=notes,
        groups=groups,
        group_label="damage",
        anchors=report.VOICEBANK_ANCHORS if voicebank else None,
        extra={
            "kind": "held_out",
            "model": str(restorer.source),
            "max_files": max_files,
            "pad_seconds": pad_seconds,
            "damage": [
                {
                    "name": row["name"],
                    "artifacts": None
                    if entry is None
                    else {k: v for k, v in entry.items() if v is not None},
                }
                for row, entry in zip(scored, damage)
            ],
        },
        left_out={"Files that could not be read or paired": stats.messages()},
    )
