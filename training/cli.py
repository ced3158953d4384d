"""The ``spectral-restore`` command: demo, train, evaluate, export, restore.

A mistake in what the user asked for (an unknown config key, a missing file or
model, a bad option) is a :class:`~training.errors.UsageError`: it is printed as one
line, ``spectral-restore: error: <what was wrong and how to fix it>``, and the
command exits with status 2; ``--debug`` prints its traceback too. Any other
exception is a bug and keeps its traceback. The checks that need only the file
system run before the library (and with it TensorFlow) is imported, so a typo
fails at once.

The command is the application's, beside the training entry point: the library
``spectral_restore`` never imports it.
"""

import argparse
import json
import os
import sys
import traceback

from training.errors import UsageError, user_input

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROG = "spectral-restore"

DEMO_SEED = 2024
DEMO_TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


def _demo(args):
    import numpy as np

    from spectral_restore import audio_io, spectral
    from spectral_restore.data.artifacts import add_noise
    from spectral_restore.data.speech import SynthesisError, synthesize
    from spectral_restore.plotting import plot_spectrograms

    with user_input("--sample-rate"):
        audio_io.check_sample_rate(args.sample_rate)
    if not args.text.strip():
        raise UsageError("--text must hold a sentence to synthesize")
    try:
        clean = synthesize(
            args.text, voice=args.voice, engine=args.engine, sample_rate=args.sample_rate
        )
    except SynthesisError as err:
        # The engine is missing, or refused the voice or text it was given.
        raise UsageError(str(err)) from err
    os.makedirs(args.out, exist_ok=True)
    config = spectral.STFTConfig(frame_length=512, hop_length=128)
    real, imag = spectral.stft(clean[None], config)
    restored = np.asarray(spectral.istft(real, imag, config, length=len(clean)))[0]
    max_error = float(np.max(np.abs(restored - clean)))
    # An example to restore: pink/white/brown noise at 5 dB SNR (seeded, so always the same file).
    damaged = np.asarray(add_noise(clean[None], [DEMO_SEED, 0], 5.0))[0]
    damaged = damaged * min(1.0, 0.99 / float(np.max(np.abs(damaged))))
    clean_path = os.path.join(args.out, "clean.wav")
    roundtrip_path = os.path.join(args.out, "roundtrip.wav")
    damaged_path = os.path.join(args.out, "damaged.wav")
    audio_io.write_audio(clean_path, clean, args.sample_rate, subtype="FLOAT")
    audio_io.write_audio(roundtrip_path, restored, args.sample_rate, subtype="FLOAT")
    audio_io.write_audio(damaged_path, damaged, args.sample_rate, subtype="FLOAT")
    png = plot_spectrograms(
        [
            ("synthesized speech", clean),
            (f"STFT -> iSTFT round trip (max error {max_error:.2e})", restored),
        ],
        args.sample_rate,
        os.path.join(args.out, "spectrograms.png"),
        title=f"{args.engine} voice {args.voice}",
    )
    summary = {
        "seconds": round(len(clean) / args.sample_rate, 3),
        "sample_rate": args.sample_rate,
        "stft": config.get_config(),
        "roundtrip_max_abs_error": max_error,
        "files": [clean_path, roundtrip_path, damaged_path, png],
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    if max_error > 1e-4:
        print(f"error: the STFT round trip is off by {max_error:.3g}", file=sys.stderr)
        return 1
    return 0


def _train(args):
    from training.config import load_config

    config = load_config(args.config, args.overrides)
    from training.train import run

    summary = run(config)
    print(json.dumps(summary, indent=2))
    if args.evaluate:
        from training.evaluate import evaluate

        _, text = evaluate(
            summary["model"], config, config["training"]["output_dir"], progress=sys.stderr.isatty()
        )
        print(text)
    return 0


def _evaluate(args):
    if args.identity and args.model:
        raise UsageError(
            f"--identity scores the damaged files themselves; drop MODEL ({args.model}) or --identity"
        )
    if not args.model and not args.identity:
        raise UsageError("evaluate needs MODEL, or --identity with --pairs DAMAGED_DIR CLEAN_DIR")
    if args.pairs:
        if args.overrides or args.config:
            raise UsageError(
                "--pairs takes no config: the files and the model define the evaluation "
                f"(received --config={args.config!r} and overrides {args.overrides})"
            )
        if not args.out:
            raise UsageError("--pairs needs -o OUT, the folder the report goes to")
        for name, folder in zip(("DAMAGED_DIR", "CLEAN_DIR"), args.pairs):
            if not os.path.isdir(folder):
                raise UsageError(f"--pairs {name} must be an existing folder; received {folder!r}")
    else:
        if args.identity:
            raise UsageError("--identity scores a folder pair: add --pairs DAMAGED_DIR CLEAN_DIR")
        if args.sample_rate is not None or args.length_tolerance is not None:
            raise UsageError(
                "--sample-rate and --length-tolerance are for --pairs; the evaluation of a run "
                "scores at the model's rate"
            )
        if args.no_clean_row:
            raise UsageError(
                "--no-clean-row is for --pairs; the evaluation of a run always scores its clean row"
            )
    if args.model:
        _check_model_path(args.model)
    config = None if args.pairs else _run_config(args.model, args.config, args.overrides)
    from spectral_restore.evaluation import folders

    pad_seconds = folders.PAD_SECONDS if args.pad_seconds is None else (args.pad_seconds or None)
    restorer = _load_restorer(args.model, pad_seconds=pad_seconds) if args.model else None
    if args.pairs:
        from spectral_restore.audio_io import check_sample_rate
        from spectral_restore.data.files import check_pair_tolerance, match_pairs

        damaged_dir, clean_dir = args.pairs
        tolerance = (
            folders.PAIR_TOLERANCE_SECONDS
            if args.length_tolerance is None
            else args.length_tolerance
        )
        with user_input("--length-tolerance"):
            check_pair_tolerance(tolerance, "tolerance_seconds")
        if args.sample_rate is not None:
            with user_input("--sample-rate"):
                check_sample_rate(args.sample_rate)
            if restorer and args.sample_rate != restorer.sample_rate:
                raise UsageError(
                    f"--sample-rate {args.sample_rate} differs from the model's {restorer.sample_rate} "
                    "Hz; a model is scored at its own rate: drop --sample-rate"
                )
        if not match_pairs(damaged_dir, clean_dir)[0]:
            raise UsageError(
                f"no file of {damaged_dir} has a partner in {clean_dir}: files pair by relative path "
                "without the extension (damaged/a/b.flac with clean/a/b.wav)"
            )
        folders.evaluate_folders(
            damaged_dir,
            clean_dir,
            args.out,
            model=restorer,
            sample_rate=args.sample_rate,
            tolerance_seconds=tolerance,
            processes=args.processes,
            progress=not args.quiet,
            max_files=args.max_files,
            clean_row=not args.no_clean_row,
        )
        output_dir = args.out
    else:
        from training.evaluate import evaluate

        output_dir = args.out or os.path.join(
            os.path.dirname(os.path.abspath(args.model)), "evaluation"
        )
        evaluate(
            restorer,
            config,
            output_dir,
            max_files=args.max_files,
            progress=not args.quiet,
            processes=args.processes,
        )
    with open(os.path.join(output_dir, "evaluation.md")) as f:
        print(f.read())
    print(f"written: {output_dir}/evaluation.md, evaluation.json, evaluation.png")
    return 0


def _run_config(model, config_path, overrides):
    """``--config`` when given, else the ``config.json`` training saved beside the
    model, else ``base.yaml`` (with a notice); overrides applied to it."""
    from training.config import load_config, load_run_config

    if config_path:
        return load_config(config_path, overrides)
    saved = os.path.join(os.path.dirname(os.path.abspath(model)), "config.json")
    if os.path.exists(saved):
        print(f"config: {saved} (the run's own)")
        return load_run_config(saved, overrides)
    print(
        f"config: training/configs/base.yaml (no config.json beside {model}; --config names another)"
    )
    return load_config(None, overrides)


def _check_model_path(path):
    """A UsageError unless ``path`` is a ``.keras`` file or a folder (a SavedModel export)."""
    if not os.path.exists(path):
        raise UsageError(
            f"model not found: {path} (give a .keras file, or a SavedModel folder written by "
            f"`{PROG} export`)"
        )
    if not os.path.isdir(path) and not path.endswith(".keras"):
        raise UsageError(
            f"{path} is not a model: give a .keras file, or a SavedModel folder written by "
            f"`{PROG} export`"
        )


def _load_restorer(path, pad_seconds=None):
    """The AudioRestorer of the model file or export folder ``path``; what cannot be
    loaded (not an export, a damaged file) is a UsageError."""
    from spectral_restore.backend import tensorflow_available
    from spectral_restore.inference import AudioRestorer

    if os.path.isdir(path) and not tensorflow_available():
        raise UsageError(
            f"{path} is a SavedModel folder, which needs TensorFlow (pip install "
            "'spectral-restore[tensorflow]'); or restore with the .keras file it was exported from"
        )
    with user_input(f"cannot load the model {path}"):
        return AudioRestorer(path, pad_seconds=pad_seconds)


def _export(args):
    _check_model_path(args.model)
    if os.path.isdir(args.model):
        raise UsageError(
            f"export takes a .keras model; {args.model} is a folder (already an export?)"
        )
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise UsageError(
            f"the export folder {args.out} already exists and is not empty: name a new folder "
            "(TF Serving reads numbered versions: models/restorer/2)"
        )
    from spectral_restore import backend

    if not backend.tensorflow_available():
        raise UsageError(
            "export writes a TensorFlow SavedModel, and TensorFlow is not installed: "
            "pip install 'spectral-restore[tensorflow]'"
        )
    if backend.name() != "tensorflow":
        raise UsageError(
            f"export runs under the TensorFlow backend; the active Keras backend is {backend.name()}: "
            "run it with KERAS_BACKEND=tensorflow (a .keras file saved under any backend loads there)"
        )
    from spectral_restore.export import export_saved_model
    from spectral_restore.inference import chunking, load_keras_model

    with user_input(f"cannot load the model {args.model}"):
        model = load_keras_model(args.model)
    with user_input("--chunk-seconds / --overlap-seconds"):
        chunking(
            int(getattr(model, "sample_rate", 16000)), args.chunk_seconds, args.overlap_seconds
        )
    metadata = export_saved_model(
        model, args.out, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds
    )
    print(json.dumps(metadata, indent=2))
    print(f"SavedModel written to {args.out}; try: saved_model_cli show --dir {args.out} --all")
    return 0


def _restore_jobs(inputs, out):
    """``[(input file, output folder)]`` for ``inputs`` (files, and folders walked
    recursively with their layout kept under ``out``), and the number of non-audio
    files met in the folders. A named file that is not audio is a UsageError."""
    from spectral_restore.data.files import AUDIO_EXTENSIONS

    out_real = os.path.realpath(out)
    jobs, other = [], 0
    for item in inputs:
        if not os.path.isdir(item):
            if not item.lower().endswith(AUDIO_EXTENSIONS):
                raise UsageError(
                    f"{item} is not an audio file: restore takes {', '.join(AUDIO_EXTENSIONS)} "
                    "files, or folders of them"
                )
            jobs.append((item, out))
            continue
        for root, folders, files in os.walk(item):
            # An output folder inside an input folder holds results, not inputs.
            folders[:] = sorted(
                name for name in folders if os.path.realpath(os.path.join(root, name)) != out_real
            )
            target = os.path.normpath(os.path.join(out, os.path.relpath(root, item)))
            for name in sorted(files):
                if name.lower().endswith(AUDIO_EXTENSIONS):
                    jobs.append((os.path.join(root, name), target))
                else:
                    other += 1
    return jobs, other


def _check_outputs(jobs, plot):
    """A UsageError when a restored file (or its ``--plot`` PNG) would replace an
    input file or another restored file."""
    from spectral_restore.inference import output_path

    inputs = {os.path.realpath(path): path for path, _ in jobs}
    written = {}
    for path, out_dir in jobs:
        output = output_path(path, out_dir)
        if os.path.realpath(output) in inputs:
            raise UsageError(
                f"restoring {path} would overwrite the input {inputs[os.path.realpath(output)]}: "
                "choose an output folder (-o) that holds no input"
            )
        for target in [output] + ([os.path.splitext(output)[0] + ".png"] if plot else []):
            other = written.setdefault(os.path.realpath(target), path)
            if other != path:
                raise UsageError(
                    f"{other} and {path} would both be written to {target}: restore them into "
                    "different output folders (-o)"
                )


def _count(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _restore(args):
    for path in args.inputs:
        if not os.path.exists(path):
            raise UsageError(f"input not found: {path}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"-o {args.out} is a file; -o names the folder the restored files go to")
    _check_model_path(args.model)
    from spectral_restore.data.files import AUDIO_EXTENSIONS

    jobs, other = _restore_jobs(args.inputs, args.out)
    if not jobs:
        raise UsageError(
            f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {' '.join(args.inputs)}"
            + (f": only {_count(other, 'other file')}" if other else "")
        )
    _check_outputs(jobs, args.plot)
    restorer = _load_restorer(args.model)
    from tqdm import tqdm

    from spectral_restore.audio_io import AudioReadError
    from spectral_restore.inference import restore_file

    restored, unreadable = 0, []
    for path, out_dir in tqdm(jobs, desc="restoring", unit="file", disable=args.quiet):
        os.makedirs(out_dir, exist_ok=True)
        try:
            result = restore_file(restorer, path, out_dir, plot=args.plot)
        except AudioReadError as err:
            unreadable.append(str(err) if path in str(err) else f"{path}: {err}")
            continue
        restored += 1
        clipped = f", {result.clipped_samples} samples clipped" if result.clipped_samples else ""
        tqdm.write(
            f"{result.source} -> {result.output} ({result.seconds} s, {result.channels} ch, "
            f"{result.sample_rate} Hz{clipped})",
            file=sys.stdout,
        )
    if unreadable and not restored:
        more = f" (and {len(unreadable) - 1} more unreadable)" if len(unreadable) > 1 else ""
        raise UsageError(f"nothing restored: {unreadable[0]}{more}")
    for message in unreadable:
        print(f"{PROG}: skipped unreadable audio: {message}", file=sys.stderr)
    skipped = [_count(len(unreadable), "unreadable file")] if unreadable else []
    skipped += [_count(other, "non-audio file")] if other else []
    print(f"{restored} restored" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    return 1 if unreadable else 0


class _Parser(argparse.ArgumentParser):
    """argparse with its errors raised as UsageError, so they print as every other
    usage error does: one line, status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _number(kind, minimum, strict=False):
    """An argparse type: ``kind`` (int or float) at least ``minimum`` (above it when ``strict``)."""

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (strict and value == minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what} {bound}; received {text!r}")
        return value

    return convert


def build_parser():
    # --debug is accepted before and after the command; the subcommands' copy must
    # not overwrite the global one with a default, hence SUPPRESS.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on an error, print its traceback too",
    )
    parser = _Parser(
        prog=PROG,
        description="Restore damaged audio through its spectrogram, amplitude and phase.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="on an error, print its traceback too")
    commands = parser.add_subparsers(dest="command")

    def command(name, **kwargs):
        return commands.add_parser(name, parents=[common], **kwargs)

    demo = command(
        "demo",
        help="synthesize a sentence, round-trip it through the STFT, write audio (and a noisy copy) and a PNG",
    )
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--text", default=DEMO_TEXT, help="sentence to synthesize")
    demo.add_argument("--voice", default="en-us", help="speech engine voice (default: en-us)")
    demo.add_argument("--engine", default="espeak-ng", choices=["espeak-ng", "flite"])
    demo.add_argument("--sample-rate", type=_number(int, 1), default=16000)
    demo.set_defaults(handler=_demo)

    train = command("train", help="train a restoration model from a YAML config")
    train.add_argument(
        "--config", default=None, help="config file (default: training/configs/base.yaml)"
    )
    train.add_argument(
        "--evaluate", action="store_true", help="evaluate on the held-out split afterwards"
    )
    train.add_argument(
        "overrides", nargs="*", help="section.key=value overrides, e.g. training.epochs=3"
    )
    train.set_defaults(handler=_train)

    evaluate = command(
        "evaluate",
        help="score whole utterances before and after restoration (PESQ, STOI, CSIG/CBAK/COVL, ...)",
        description="Without --pairs: the held-out split of the run's data, damaged per artifact type with unseen "
        "seeds. With --pairs: every damaged file against its clean partner (same relative path).",
    )
    evaluate.add_argument(
        "model", nargs="?", help="a .keras model or SavedModel folder (omit with --identity)"
    )
    evaluate.add_argument(
        "--pairs",
        nargs=2,
        metavar=("DAMAGED_DIR", "CLEAN_DIR"),
        help="score a folder of damaged files against a folder of clean ones",
    )
    evaluate.add_argument(
        "--identity", action="store_true", help="with --pairs: score the damaged files themselves"
    )
    evaluate.add_argument(
        "-o",
        "--out",
        default=None,
        help="report folder (default without --pairs: evaluation/ beside the model)",
    )
    evaluate.add_argument(
        "--config",
        default=None,
        help="config the data settings come from (default: the config.json beside the model)",
    )
    evaluate.add_argument(
        "--no-clean-row",
        action="store_true",
        help="--pairs with a model: skip restoring each clean file as its own input "
        "(the 'clean' row; it doubles the work)",
    )
    evaluate.add_argument(
        "--max-files",
        type=_number(int, 1),
        default=None,
        help="score only the first N utterances (per pass)",
    )
    evaluate.add_argument(
        "--sample-rate",
        type=_number(int, 1),
        default=None,
        help="--identity: the rate to score at (default 16000); a model uses its own",
    )
    evaluate.add_argument(
        "--length-tolerance",
        type=_number(float, 0.0),
        default=None,
        help="--pairs: seconds partners may differ in length before the pair is left out "
        "(reported; default 0.05)",
    )
    evaluate.add_argument(
        "--pad-seconds",
        type=_number(float, 0.0),
        default=None,
        help="pad inputs to a multiple of this before restoring, so compiled models see few "
        "shapes (0: no padding; default 0.5)",
    )
    evaluate.add_argument(
        "--processes",
        type=_number(int, 1),
        default=None,
        help="PESQ worker processes (default: one per CPU)",
    )
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("overrides", nargs="*", help="section.key=value overrides of the config")
    evaluate.set_defaults(handler=_evaluate)

    export = command("export", help="write a TensorFlow SavedModel for TF Serving")
    export.add_argument("model", help="a saved .keras model")
    export.add_argument("out", help="SavedModel folder to create")
    export.add_argument(
        "--chunk-seconds",
        type=_number(float, 0.0, strict=True),
        default=10.0,
        help="longest input restored whole (default 10)",
    )
    export.add_argument(
        "--overlap-seconds",
        type=_number(float, 0.0, strict=True),
        default=0.5,
        help="crossfade between chunks, below half a chunk (default 0.5)",
    )
    export.set_defaults(handler=_export)

    restore = command(
        "restore",
        help="restore audio files and folders with a .keras model or a SavedModel",
        description="Each IN file is written to OUT under its own name; each IN folder is walked recursively and "
        "its audio files are written to OUT with their relative layout (other files are skipped and "
        "counted). Inputs are never overwritten. Exit status: 0 all restored, 1 some files were "
        "unreadable (skipped and listed), 2 a usage error (nothing written).",
    )
    restore.add_argument(
        "inputs",
        nargs="+",
        metavar="IN",
        help="audio files (WAV, FLAC, OGG, ...; any rate; mono or multichannel) or folders of them",
    )
    restore.add_argument("-o", "--out", required=True, help="output folder")
    restore.add_argument(
        "-m", "--model", required=True, help="a .keras model or a SavedModel folder"
    )
    restore.add_argument(
        "--plot", action="store_true", help="also write <name>.png: input and restored spectrograms"
    )
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    restore.set_defaults(handler=_restore)
    return parser


def _parse(parser, argv):
    # argparse takes a subcommand's positionals only before its options, so overrides
    # written after them (`evaluate MODEL --config c.yaml data.batch_size=4`) come back unparsed.
    args, unparsed = parser.parse_known_args(argv)
    if (
        unparsed
        and isinstance(getattr(args, "overrides", None), list)
        and all("=" in text and not text.startswith("-") for text in unparsed)
    ):
        args.overrides += unparsed
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    return args


def main(argv=None):
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv)
        if args.version:
            from spectral_restore import __version__

            print(__version__)
            return 0
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return args.handler(args)
    except UsageError as err:
        # Read from argv: the error may have come from parsing it.
        if "--debug" in argv:
            traceback.print_exc()
        message = " ".join(line.strip() for line in str(err).splitlines())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
