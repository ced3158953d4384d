"""The ``spectral-restore`` command."""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_SEED = 2024
DEMO_TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


def _demo(args):
    import numpy as np

    from spectral_restore import audio_io, spectral
    from spectral_restore.data.artifacts import add_noise
    from spectral_restore.data.speech import synthesize
    from spectral_restore.plotting import plot_spectrograms

    os.makedirs(args.out, exist_ok=True)
    clean = synthesize(args.text, voice=args.voice, engine=args.engine, sample_rate=args.sample_rate)
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
        [("synthesized speech", clean), (f"STFT -> iSTFT round trip (max error {max_error:.2e})", restored)],
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
    from training.train import main as train_main

    summary = train_main(args.config, args.overrides)
    if args.evaluate:
        from training.config import load_config
        from training.evaluate import evaluate

        config = load_config(args.config, args.overrides)
        _, text = evaluate(summary["model"], config, config["training"]["output_dir"], progress=sys.stderr.isatty())
        print(text)
    return 0


def _evaluate(args):
    from spectral_restore.evaluation import folders

    pad_seconds = folders.PAD_SECONDS if args.pad_seconds is None else (args.pad_seconds or None)
    if args.identity and args.model:
        raise ValueError(f"--identity scores the damaged files themselves; drop MODEL ({args.model}) or --identity")
    if not args.model and not args.identity:
        raise ValueError("evaluate needs MODEL, or --identity with --pairs DAMAGED_DIR CLEAN_DIR")
    if args.pairs:
        if args.overrides or args.config:
            raise ValueError("--pairs takes no config: the files and the model define the evaluation "
                             f"(received --config={args.config!r} and overrides {args.overrides})")
        if not args.out:
            raise ValueError("--pairs needs -o OUT, the folder the report goes to")
        tolerance = folders.PAIR_TOLERANCE_SECONDS if args.length_tolerance is None else args.length_tolerance
        folders.evaluate_folders(args.pairs[0], args.pairs[1], args.out, model=args.model,
                                 sample_rate=args.sample_rate, tolerance_seconds=tolerance, pad_seconds=pad_seconds,
                                 processes=args.processes, progress=not args.quiet, max_files=args.max_files)
        output_dir = args.out
    else:
        if args.identity:
            raise ValueError("--identity scores a folder pair: add --pairs DAMAGED_DIR CLEAN_DIR")
        if args.sample_rate is not None or args.length_tolerance is not None:
            raise ValueError("--sample-rate and --length-tolerance are for --pairs; the evaluation of a run "
                             "scores at the model's rate")
        from training.evaluate import evaluate

        config = _run_config(args.model, args.config, args.overrides)
        output_dir = args.out or os.path.join(os.path.dirname(os.path.abspath(args.model)), "evaluation")
        evaluate(args.model, config, output_dir, max_files=args.max_files, progress=not args.quiet,
                 processes=args.processes, pad_seconds=pad_seconds)
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
    print(f"config: training/configs/base.yaml (no config.json beside {model}; --config names another)")
    return load_config(None, overrides)


def _export(args):
    from spectral_restore.export import export_saved_model

    metadata = export_saved_model(
        args.model, args.out, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds
    )
    print(json.dumps(metadata, indent=2))
    print(f"SavedModel written to {args.out}; try: saved_model_cli show --dir {args.out} --all")
    return 0


def _restore(args):
    from spectral_restore.inference import restore_files

    results = restore_files(args.model, args.inputs, args.out, progress=not args.quiet, plot=args.plot)
    failed = [r for r in results if r.error]
    for result in results:
        if result.error:
            print(f"FAILED {result.source}: {result.error}", file=sys.stderr)
        else:
            clipped = f", {result.clipped_samples} samples clipped" if result.clipped_samples else ""
            print(f"{result.source} -> {result.output} ({result.seconds} s, {result.channels} ch, "
                  f"{result.sample_rate} Hz{clipped})")
    print(f"{len(results) - len(failed)} restored, {len(failed)} failed")
    return 1 if failed else 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spectral-restore",
        description="Restore damaged audio through its spectrogram, amplitude and phase.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "demo", help="synthesize a sentence, round-trip it through the STFT, write audio (and a noisy copy) and a PNG"
    )
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--text", default=DEMO_TEXT, help="sentence to synthesize")
    demo.add_argument("--voice", default="en-us", help="speech engine voice (default: en-us)")
    demo.add_argument("--engine", default="espeak-ng", choices=["espeak-ng", "flite"])
    demo.add_argument("--sample-rate", type=int, default=16000)
    demo.set_defaults(handler=_demo)

    train = commands.add_parser("train", help="train a restoration model from a YAML config")
    train.add_argument("--config", default=None, help="config file (default: training/configs/base.yaml)")
    train.add_argument("--evaluate", action="store_true", help="evaluate on the held-out split afterwards")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. training.epochs=3")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate", help="score whole utterances before and after restoration (PESQ, STOI, CSIG/CBAK/COVL, ...)",
        description="Without --pairs: the held-out split of the run's data, damaged per artifact type with unseen "
                    "seeds. With --pairs: every damaged file against its clean partner (same relative path).")
    evaluate.add_argument("model", nargs="?", help="a .keras model or SavedModel folder (omit with --identity)")
    evaluate.add_argument("--pairs", nargs=2, metavar=("DAMAGED_DIR", "CLEAN_DIR"),
                          help="score a folder of damaged files against a folder of clean ones")
    evaluate.add_argument("--identity", action="store_true", help="with --pairs: score the damaged files themselves")
    evaluate.add_argument("-o", "--out", default=None,
                          help="report folder (default without --pairs: evaluation/ beside the model)")
    evaluate.add_argument("--config", default=None,
                          help="config the data settings come from (default: the config.json beside the model)")
    evaluate.add_argument("--max-files", type=int, default=None, help="score only the first N utterances (per pass)")
    evaluate.add_argument("--sample-rate", type=int, default=None,
                          help="--identity: the rate to score at (default 16000); a model uses its own")
    evaluate.add_argument("--length-tolerance", type=float, default=None,
                          help="--pairs: seconds partners may differ in length before the pair is left out "
                               "(reported; default 0.05)")
    evaluate.add_argument("--pad-seconds", type=float, default=None,
                          help="pad inputs to a multiple of this before restoring, so compiled models see few "
                               "shapes (0: no padding; default 0.5)")
    evaluate.add_argument("--processes", type=int, default=None, help="PESQ worker processes (default: one per CPU)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("overrides", nargs="*", help="section.key=value overrides of the config")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="write a TensorFlow SavedModel for TF Serving")
    export.add_argument("model", help="a saved .keras model")
    export.add_argument("out", help="SavedModel folder to create")
    export.add_argument("--chunk-seconds", type=float, default=10.0, help="longest input restored whole (default 10)")
    export.add_argument("--overlap-seconds", type=float, default=0.5, help="crossfade between chunks (default 0.5)")
    export.set_defaults(handler=_export)

    restore = commands.add_parser("restore", help="restore audio files with a .keras model or a SavedModel")
    restore.add_argument("inputs", nargs="+", metavar="IN", help="audio files (WAV, FLAC, OGG, ...; any rate; mono or multichannel)")
    restore.add_argument("-o", "--out", required=True, help="output folder")
    restore.add_argument("-m", "--model", required=True, help="a .keras model or a SavedModel folder")
    restore.add_argument("--plot", action="store_true", help="also write <name>.png: input and restored spectrograms")
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    restore.set_defaults(handler=_restore)
    return parser


def main(argv=None):
    parser = build_parser()
    # argparse takes a subcommand's positionals only before its options, so overrides
    # written after them (`evaluate MODEL --config c.yaml data.batch_size=4`) come back unparsed.
    args, unparsed = parser.parse_known_args(argv)
    if unparsed and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in text and not text.startswith("-") for text in unparsed):
        args.overrides += unparsed
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    if args.version:
        from spectral_restore import __version__

        print(__version__)
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
