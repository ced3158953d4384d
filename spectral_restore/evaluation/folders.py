"""Evaluation of a folder of damaged recordings against a folder of their clean
references: ``spectral-restore evaluate [MODEL] --pairs DAMAGED_DIR CLEAN_DIR``.

Files pair by relative path without the extension
(:func:`~spectral_restore.data.files.match_pairs`). Each pair is read at its own
rate, mixed to mono, resampled to the scoring rate (the model's, or
``sample_rate`` without a model) with
:func:`~spectral_restore.audio_io.resample_numpy`, restored whole through the
chunking :class:`~spectral_restore.inference.Restorer` (so memory stays bounded on
long files) and scored whole with
:func:`~spectral_restore.evaluation.score_conditions`, the damaged input as well
as its restoration. Nothing is dropped silently: files without a partner, files
that cannot be read and pairs whose lengths differ by more than
``length_tolerance`` seconds are listed and counted in the report; pairs within the
tolerance are scored on their common length (the cut recorded per file).
"""

import os

import numpy as np

from spectral_restore.audio_io import AudioReadError, read_audio, resample_numpy
from spectral_restore.data.files import match_pairs
from spectral_restore.evaluation import report
from spectral_restore.evaluation.scoring import score_conditions

# Codecs add a few tens of milliseconds of delay and padding (an MP3 frame is 26 ms
# at 44.1 kHz); more than this is a different recording, not the same one.
LENGTH_TOLERANCE_SECONDS = 0.05
# Restoration pads inputs up to one chunk to a multiple of this (see Restorer):
# a JIT-compiling backend then compiles a handful of shapes, not one per file.
PAD_SECONDS = 0.5
DEFAULT_SAMPLE_RATE = 16000


def _read(path, rate):
    samples, file_rate = read_audio(path, mono=True)
    return resample_numpy(samples, file_rate, rate)


def evaluate_folders(damaged_dir, clean_dir, output_dir, model=None, sample_rate=None,
                     length_tolerance=LENGTH_TOLERANCE_SECONDS, pad_seconds=PAD_SECONDS, metrics=None,
                     processes=None, progress=True, max_files=None):
    """Scores every damaged file against its clean partner, and its restoration by
    ``model`` when one is given; writes ``evaluation.json``, ``.md`` and ``.png``.

    Args:
        damaged_dir, clean_dir: str. Folders of audio files (any format soundfile
            reads, any rate, any channel count), paired by relative path.
        output_dir: str. Where the report goes.
        model: a ``.keras`` file, a SavedModel folder, a keras.Model, a
            :class:`~spectral_restore.inference.Restorer`, or None to score the
            damaged files themselves (the "identity" evaluation).
        sample_rate: int or None. Scoring rate without a model (defaults to
            ``DEFAULT_SAMPLE_RATE``); with a model its own rate is used, and a
            different value here is an error.
        length_tolerance: float. Seconds two partners may differ in length.
        pad_seconds: float or None. The Restorer's input padding (``PAD_SECONDS``).
        metrics, processes, progress: as for :func:`~spectral_restore.evaluation.score_pairs`.
        max_files: int or None. Score only the first pairs (in key order).

    Returns:
        dict: the data written to ``evaluation.json``.

    Raises:
        ValueError: a folder is missing or holds no pair, or an argument is invalid.
    """
    if not length_tolerance >= 0:
        raise ValueError(f"`length_tolerance` must be >= 0 seconds. Received: {length_tolerance!r}")
    if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
        raise ValueError(f"`max_files` must be an integer >= 1 or None. Received: {max_files!r}")
    pairs, damaged_only, clean_only = match_pairs(damaged_dir, clean_dir)
    if not pairs:
        raise ValueError(f"No file of {os.fspath(damaged_dir)!r} has a partner in {os.fspath(clean_dir)!r} "
                         f"(files pair by relative path without the extension; {len(damaged_only)} damaged and "
                         f"{len(clean_only)} clean files found)")
    restorer = None
    if model is not None:
        from spectral_restore.inference import Restorer

        restorer = model if isinstance(model, Restorer) else Restorer(model, pad_seconds=pad_seconds)
        if sample_rate is not None and int(sample_rate) != restorer.sample_rate:
            raise ValueError(f"`sample_rate` {sample_rate} differs from the model's {restorer.sample_rate} Hz; "
                             "a model is scored at its own rate")
    rate = restorer.sample_rate if restorer else int(sample_rate or DEFAULT_SAMPLE_RATE)
    conditions = ("input", "restored") if restorer else ("input",)
    selected = pairs if max_files is None else pairs[:max_files]
    unreadable, mismatched = [], []

    def items():
        from tqdm import tqdm

        # The bar counts pairs read, scored or left out alike.
        for key, damaged_path, clean_path in tqdm(selected, desc="evaluating", unit="pair", disable=not progress):
            try:
                damaged, clean = _read(damaged_path, rate), _read(clean_path, rate)
            except (AudioReadError, OSError) as err:
                unreadable.append(f"{key} ({err})")
                continue
            if abs(len(damaged) - len(clean)) > length_tolerance * rate:
                mismatched.append(f"{key} (damaged {len(damaged) / rate:.3f} s, clean {len(clean) / rate:.3f} s)")
                continue
            estimates = {"input": damaged}
            if restorer:
                estimates["restored"] = restorer(damaged[None].astype(np.float32))[0]
            yield key, clean, estimates

    evaluations = score_conditions(items(), rate, conditions, metrics=metrics, processes=processes, progress=False)
    scored = [row["name"] for row in evaluations["input"].files]
    if not scored:
        raise ValueError(f"None of the {len(selected)} pairs could be scored: "
                         f"{len(unreadable)} unreadable, {len(mismatched)} differ in length by more than "
                         f"{length_tolerance} s")
    voicebank = report.is_voicebank_test(scored)
    source = restorer.source if restorer else "none (the damaged files themselves)"
    notes = [
        f"damaged: {os.fspath(damaged_dir)}; clean: {os.fspath(clean_dir)}; model: {source}",
        f"{len(scored)} of {len(pairs)} pairs scored whole at {rate} Hz (both sides resampled to it where needed)",
        f"left out: {len(damaged_only)} damaged files without a clean partner, {len(clean_only)} clean files "
        f"without a damaged one, {len(unreadable)} unreadable, {len(mismatched)} pairs differing by more than "
        f"{length_tolerance} s" + ("" if max_files is None else f", {len(pairs) - len(selected)} beyond max_files"),
    ]
    if voicebank and len(scored) != report.VOICEBANK_TEST_FILES:
        notes.append(f"the published rows are over all {report.VOICEBANK_TEST_FILES} test files; "
                     f"this evaluation scored {len(scored)}")
    pairing = {
        "pairs_found": len(pairs), "scored": len(scored), "max_files": max_files,
        "length_tolerance_seconds": length_tolerance, "sample_rate": rate,
        "damaged_without_clean": damaged_only, "clean_without_damaged": clean_only,
        "unreadable": unreadable, "length_mismatch": mismatched,
    }
    data, _ = report.write_report(
        output_dir, evaluations, title=f"{os.path.basename(os.path.normpath(os.fspath(damaged_dir)))} vs "
        f"{os.path.basename(os.path.normpath(os.fspath(clean_dir)))}", notes=notes,
        anchors=report.VOICEBANK_ANCHORS if voicebank else None,
        extra={"kind": "pairs", "model": None if restorer is None else str(source), "pairing": pairing,
               "pad_seconds": pad_seconds if restorer else None},
        left_out={"Damaged files without a clean partner": damaged_only,
                  "Clean files without a damaged partner": clean_only,
                  "Unreadable": unreadable, "Lengths differ beyond the tolerance": mismatched},
    )
    return data


__all__ = ["evaluate_folders", "LENGTH_TOLERANCE_SECONDS", "PAD_SECONDS", "DEFAULT_SAMPLE_RATE"]
