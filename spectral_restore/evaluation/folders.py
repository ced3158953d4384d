"""Evaluation of a folder of damaged recordings against a folder of their clean
references: ``spectral-restore evaluate [MODEL] --pairs DAMAGED_DIR CLEAN_DIR``.

Files pair by relative path without the extension
(:func:`~spectral_restore.data.files.match_pairs`, as training pairs them). Each pair is read at its own
rate, mixed to mono, resampled to the scoring rate (the model's, or
``sample_rate`` without a model) with
:func:`~spectral_restore.audio_io.resample_numpy`, restored whole through the
chunking :class:`~spectral_restore.inference.AudioRestorer` (so memory stays bounded on
long files) and scored whole with
:func:`~spectral_restore.evaluation.score_conditions`, the damaged input as well
as its restoration. Nothing is dropped silently: files without a partner (or with
an ambiguous one), files that cannot be read and pairs whose lengths differ by more
than ``tolerance_seconds`` (:func:`~spectral_restore.data.files.check_pair`, the
rule of training) are listed and counted in the report; pairs within the tolerance
are scored on their common length (the cut recorded per file). Unlike the held-out
evaluation of a run, the files are scored at their own level, as ``restore``
restores them. With a model, each clean file is also restored as its own input and
scored against itself (the ``clean`` row, named ``"<name> (clean)"``: a restorer must
do no harm); the ``all`` row and the published anchors stay over the damaged files.
"""

import os

import numpy as np

from spectral_restore.audio_io import AudioReadError, read_audio, resample_numpy
from spectral_restore.data.files import (
    PAIR_TOLERANCE_SECONDS,
    ReadStats,
    check_pair,
    check_pair_tolerance,
    match_pairs,
)
from spectral_restore.evaluation import report
from spectral_restore.evaluation.scoring import score_conditions

# Restoration pads inputs up to one chunk to a multiple of this (see AudioRestorer):
# a JIT-compiling backend then compiles a handful of shapes, not one per file.
PAD_SECONDS = 0.5
DEFAULT_SAMPLE_RATE = 16000


def _read(path, rate):
    """Mono samples of ``path`` at ``rate``, resampled on the host in float64
    (:func:`~spectral_restore.audio_io.resample_numpy`: memory proportional to the file)."""
    samples, file_rate = read_audio(path, mono=True)
    return resample_numpy(samples, file_rate, rate)


def evaluate_folders(
    damaged_dir,
    clean_dir,
    output_dir,
    model=None,
    sample_rate=None,
    tolerance_seconds=PAIR_TOLERANCE_SECONDS,
    pad_seconds=PAD_SECONDS,
    metrics=None,
    processes=None,
    progress=True,
    max_files=None,
    clean_row=True,
):
    """Scores every damaged file against its clean partner, and its restoration by
    ``model`` when one is given; writes ``evaluation.json``, ``.md`` and ``.png``.

    Args:
        damaged_dir, clean_dir: str. Folders of audio files (any format soundfile
            reads, any rate, any channel count), paired by relative path.
        output_dir: str. Where the report goes.
        model: a ``.keras`` file, a SavedModel folder, a keras.Model, a
            :class:`~spectral_restore.inference.AudioRestorer`, or None to score the
            damaged files themselves (the "identity" evaluation).
        sample_rate: int or None. Scoring rate without a model (defaults to
            ``DEFAULT_SAMPLE_RATE``); with a model its own rate is used, and a
            different value here is an error.
        tolerance_seconds: float. Seconds two partners may differ in length.
            Defaults to ``PAIR_TOLERANCE_SECONDS`` (0.05 s), as in training.
        pad_seconds: float or None. The AudioRestorer's input padding (``PAD_SECONDS``).
        metrics, processes, progress: as for :func:`~spectral_restore.evaluation.score_pairs`.
        max_files: int or None. Score only the first pairs (in name order).
        clean_row: bool. With a model, also restore each clean file and score it
            against itself (the ``clean`` row); it doubles the restoring and scoring.
            Defaults to True; ignored without a model.

    Returns:
        dict: the data written to ``evaluation.json``.

    Raises:
        ValueError: a folder is missing or holds no pair, or an argument is invalid.
    """
    tolerance_seconds = check_pair_tolerance(tolerance_seconds, "tolerance_seconds")
    if max_files is not None and (
        isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1
    ):
        raise ValueError(f"`max_files` must be an integer >= 1 or None. Received: {max_files!r}")
    for name, folder in (("damaged_dir", damaged_dir), ("clean_dir", clean_dir)):
        if not os.path.isdir(os.fspath(folder)):
            raise ValueError(
                f"`{name}` must be an existing folder. Received: {os.fspath(folder)!r}"
            )
    pairs, problems = match_pairs(damaged_dir, clean_dir)
    if not pairs:
        raise ValueError(
            f"No file of {os.fspath(damaged_dir)!r} has a partner in {os.fspath(clean_dir)!r} "
            f"(files pair by relative path without the extension; {len(problems)} files unmatched)"
        )
    restorer = None
    if model is not None:
        from spectral_restore.inference import AudioRestorer

        restorer = (
            model
            if isinstance(model, AudioRestorer)
            else AudioRestorer(model, pad_seconds=pad_seconds)
        )
        if sample_rate is not None and int(sample_rate) != restorer.sample_rate:
            raise ValueError(
                f"`sample_rate` {sample_rate} differs from the model's {restorer.sample_rate} Hz; "
                "a model is scored at its own rate"
            )
    rate = restorer.sample_rate if restorer else int(sample_rate or DEFAULT_SAMPLE_RATE)
    conditions = ("input", "restored") if restorer else ("input",)
    selected = pairs if max_files is None else pairs[:max_files]
    unreadable, mismatched = [], ReadStats()
    with_clean = bool(restorer) and bool(clean_row)
    clean_items = []  # per scored item: True for a clean file as its own input

    def items():
        from tqdm import tqdm

        # The bar counts pairs read, scored or left out alike.
        for pair in tqdm(selected, desc="evaluating", unit="pair", disable=not progress):
            try:
                damaged, clean = _read(pair.damaged, rate), _read(pair.clean, rate)
            except (AudioReadError, OSError) as err:
                unreadable.append(f"{pair.name}: {err}")
                continue
            # The rule of training decides; scoring cuts to the common length itself and records the cut.
            if check_pair(pair.name, damaged, clean, rate, mismatched, tolerance_seconds) is None:
                continue
            estimates = {"input": damaged}
            if restorer:
                estimates["restored"] = restorer(damaged[None].astype(np.float32))[0]
            clean_items.append(False)
            yield pair.name, clean, estimates
            if with_clean:
                clean_items.append(True)
                yield (
                    f"{pair.name} (clean)",
                    clean,
                    {"input": clean, "restored": restorer(clean[None].astype(np.float32))[0]},
                )

    evaluations = score_conditions(
        items(), rate, conditions, metrics=metrics, processes=processes, progress=False
    )
    is_clean = np.array(clean_items, dtype=bool)
    scored = [row["name"] for row, clean in zip(evaluations["input"].files, is_clean) if not clean]
    if not scored:
        raise ValueError(
            f"None of the {len(selected)} pairs could be scored: {unreadable + mismatched.messages()}"
        )
    unmatched = [f"{path}: {reason}" for path, reason in problems]
    voicebank = report.is_voicebank_test(scored)
    source = restorer.source if restorer else "none (the damaged files themselves)"
    notes = [
        f"damaged: {os.fspath(damaged_dir)}; clean: {os.fspath(clean_dir)}; model: {source}",
        f"{len(scored)} of {len(pairs)} pairs scored whole at {rate} Hz (both sides resampled to it where needed)",
        f"left out: {len(unmatched)} files without a partner (or with an ambiguous one), {len(unreadable)} pairs "
        f"unreadable, {mismatched.files_skipped} pairs differing by more than {tolerance_seconds} s"
        + ("" if max_files is None else f", {len(pairs) - len(selected)} pairs beyond max_files"),
    ]
    if with_clean:
        notes.insert(
            2,
            f"clean: the {len(scored)} clean files as input, restored and scored against "
            "themselves (a restorer must do no harm)",
        )
    if voicebank and len(scored) != report.VOICEBANK_TEST_FILES:
        notes.append(
            f"the published rows are over all {report.VOICEBANK_TEST_FILES} test files; "
            f"this evaluation scored {len(scored)}"
        )
    pairing = {
        "pairs_found": len(pairs),
        "scored": len(scored),
        "max_files": max_files,
        "tolerance_seconds": tolerance_seconds,
        "sample_rate": rate,
        "unmatched": unmatched,
        "unreadable": unreadable,
        "length_mismatch": mismatched.messages(),
    }
    data, _ = report.write_report(
        output_dir,
        evaluations,
        title=f"{os.path.basename(os.path.normpath(os.fspath(damaged_dir)))} vs "
        f"{os.path.basename(os.path.normpath(os.fspath(clean_dir)))}",
        notes=notes,
        groups={"all": ~is_clean, "clean": is_clean} if with_clean else None,
        group_label="input",
        anchors=report.VOICEBANK_ANCHORS if voicebank else None,
        extra={
            "kind": "pairs",
            "model": None if restorer is None else str(source),
            "pairing": pairing,
            "pad_seconds": pad_seconds if restorer else None,
            "clean_row": with_clean,
        },
        left_out={
            "Files without a partner": unmatched,
            "Unreadable": unreadable,
            "Lengths differ beyond the tolerance": mismatched.messages(),
        },
    )
    return data


__all__ = ["evaluate_folders", "PAD_SECONDS", "DEFAULT_SAMPLE_RATE"]
