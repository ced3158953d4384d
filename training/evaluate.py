"""`spectral-restore evaluate MODEL`: whole held-out utterances damaged by the run's
artifact chain with seeds training never used, restored, and scored before and
after restoration with every metric of :mod:`spectral_restore.evaluation`, overall
and per artifact type.

Each utterance of ``data.eval_split`` (held-out voices) is read whole, at any
length, levelled as training crops are, damaged by ``data.chain`` with a seed of
its own (``data.eval_seed + pass``, folded with its index; ``data.eval_repeats``
passes), restored through the chunking
:class:`~spectral_restore.inference.Restorer` and scored with
:func:`~spectral_restore.evaluation.score_conditions`. Nothing is dropped: a file
that cannot be read is listed in the report, a value a metric cannot give is
counted by reason.
"""

import os

import numpy as np

from spectral_restore.evaluation import folders, report
from spectral_restore.evaluation.scoring import score_conditions

# Salt of the per-utterance damage seeds, so they share no draws with training's.
_DAMAGE_SALT = 0xE7A1


def utterance_seed(eval_seed, repeat, index):
    """The chain seed of utterance ``index`` in pass ``repeat``: int32 ``[2]``."""
    state = np.random.SeedSequence([int(eval_seed) + int(repeat), _DAMAGE_SALT, int(index)]).generate_state(2)
    return (state >> 1).astype(np.int32)


def held_out_utterances(config, stats=None):
    """The evaluation split as an :class:`~spectral_restore.data.source.AudioDataset`
    (whole utterances come from its ``utterance(i)``) and the display name of each clip."""
    from spectral_restore.data.source import AudioDataset

    data = config["data"]
    dataset = AudioDataset(data["source"], split=data["eval_split"], data_dir=data["data_dir"],
                           sample_rate=config["model"]["sample_rate"], batch_size=1, damage="none",
                           shuffle=False, stats=stats)
    names = [os.path.basename(clip) if isinstance(clip, str) else f"{data['eval_split']}[{index}]"
             for index, clip in enumerate(dataset.clips)]
    return dataset, names


def synthetic_items(config, dataset, names, restorer, damage, count, progress=True):
    """``(name, clean, {"input": damaged, "restored": restored})`` of the first
    ``count`` held-out utterances in every pass, made one at a time (unreadable ones
    left to ``dataset.stats``), with a progress bar; ``damage`` receives, per item,
    the chain's record (artifact -> strength, None where it was not applied)."""
    from keras import ops
    from tqdm import tqdm

    from spectral_restore.data.artifacts import ArtifactChain

    data = config["data"]
    chain = ArtifactChain(data["chain"], sample_rate=config["model"]["sample_rate"])
    passes = [(repeat, index) for repeat in range(int(data["eval_repeats"])) for index in range(count)]
    for repeat, index in tqdm(passes, desc="evaluating", unit="utterance", disable=not progress):
        clean = dataset.utterance(index)
        if clean is None:
            continue
        damaged, record = chain(clean[None], utterance_seed(data["eval_seed"], repeat, index))
        damaged = ops.convert_to_numpy(damaged)
        damage.append({name: float(ops.convert_to_numpy(value["strength"])[0])
                       if bool(ops.convert_to_numpy(value["applied"])[0]) else None
                       for name, value in record.items()})
        yield f"{names[index]} (pass {repeat + 1})", clean, {"input": damaged[0], "restored": restorer(damaged)[0]}


def evaluate(model, config, output_dir, max_files=None, progress=True, processes=None, metrics=None,
             pad_seconds=folders.PAD_SECONDS):
    """Writes evaluation.json, evaluation.md and evaluation.png to ``output_dir``.

    Args:
        model: a ``.keras`` file, SavedModel folder, keras.Model or Restorer.
        config: dict. The run's config (``data`` and ``model.sample_rate`` are read).
        output_dir: str.
        max_files: int or None. Only the first utterances of each pass.
        progress: bool. A progress bar. Defaults to True.
        processes: int or None. PESQ worker processes (None: one per CPU).
        metrics: list of metric names or None (all).
        pad_seconds: float or None. The Restorer's input padding.

    Returns:
        ``(data, markdown_text)``: what evaluation.json and evaluation.md hold.
    """
    from spectral_restore.inference import Restorer

    if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
        raise ValueError(f"`max_files` must be an integer >= 1 or None. Received: {max_files!r}")
    restorer = model if isinstance(model, Restorer) else Restorer(model, pad_seconds=pad_seconds)
    rate = int(config["model"]["sample_rate"])
    if restorer.sample_rate != rate:
        raise ValueError(f"The model restores {restorer.sample_rate} Hz audio but the config's model.sample_rate "
                         f"is {rate}")
    from spectral_restore.data.files import ReadStats

    data = config["data"]
    stats, damage = ReadStats(), []
    dataset, names = held_out_utterances(config, stats)
    count = len(names) if max_files is None else min(len(names), max_files)
    evaluations = score_conditions(synthetic_items(config, dataset, names, restorer, damage, count, progress), rate,
                                   ("input", "restored"), metrics=metrics, processes=processes, progress=False)
    unreadable = [reason if path in reason else f"{path}: {reason}" for path, reason in stats.skipped]
    scored = evaluations["input"].files
    if not scored:
        raise ValueError(f"No utterance of {data['source']!r} ({data['eval_split']}) could be read: {unreadable}")
    artifacts = list(damage[0]) if damage else []
    groups = {name: np.array([entry[name] is not None for entry in damage]) for name in artifacts}
    notes = [
        f"model: {restorer.source}; held-out utterances: {data['source']} ({data['eval_split']} split)",
        f"{len(scored)} utterances scored whole at {rate} Hz: {count} per pass, {data['eval_repeats']} passes, "
        f"damaged by the {data['chain']!r} chain with seeds from data.eval_seed={data['eval_seed']}",
    ]
    if unreadable:
        notes.append(f"{len(unreadable)} files could not be read (listed below)")
    if max_files is not None and count < len(names):
        notes.append(f"max_files={max_files}: {len(names) - count} utterances per pass left out on request")
    return report.write_report(
        output_dir, evaluations, title=f"synthetic damage on {data['source']}", notes=notes, groups=groups,
        group_label="damage",
        extra={"kind": "synthetic", "model": str(restorer.source), "max_files": max_files, "pad_seconds": pad_seconds,
               "damage": [{"name": row["name"], "artifacts": {k: v for k, v in entry.items() if v is not None}}
                          for row, entry in zip(scored, damage)]},
        left_out={"Unreadable": unreadable},
    )
