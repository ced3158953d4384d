"""The gate threshold's trade-off, measured where choosing it does not tune to the test.

A gated conformer (``gate_threshold``, ``MagnitudePhaseConformer``) trades gain on
damaged speech for harm to clean speech. This script draws that curve on the run's
*training* voices (``data.train_split``, whole utterances, damage seeds that neither
training nor the held-out evaluation draws), so a threshold can be chosen without
looking at the held-out voices the run is judged on. For each threshold it reloads the
model, sets it, and runs the held-out evaluation's own code (``training.evaluate``:
the same chain, levelling, chunked restoration and PESQ-WB) over the first
``--utterances`` training utterances, once damaged and once clean.

    python benchmarks/gate_sweep.py outputs/main/train/model.keras \
        --out benchmarks/results/gate_sweep.json --thresholds 0 0.2 0.3 0.4 0.5 0.6
"""

import argparse
import copy
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Pass seed of the sweep's damage: training draws from data.seed, the held-out
# evaluation from data.eval_seed (1000 by default), neither from this.
SWEEP_SEED = 7000


def sweep(model_path, config, thresholds, utterances, processes=None):
    """``{threshold: {"damaged": (input, restored), "clean": (input, restored), "n":
    (damaged, clean)}}`` mean PESQ-WB on the first ``utterances`` of the training split."""
    from spectral_restore.inference import AudioRestorer, load_keras_model
    from training.evaluate import evaluate

    config = copy.deepcopy(config)
    config["data"].update(
        eval_split=config["data"]["train_split"], eval_seed=SWEEP_SEED, eval_repeats=1
    )
    rows = {}
    for threshold in thresholds:
        # A fresh model per threshold: a compiled predict function keeps the value it saw first.
        model = load_keras_model(model_path)
        if not getattr(model, "gate", False):
            raise ValueError(f"{model_path} has no per-frame gate, so no threshold to sweep")
        model.gate_threshold = float(threshold)
        with tempfile.TemporaryDirectory() as report_dir:
            data, _ = evaluate(
                AudioRestorer(model),
                config,
                report_dir,
                max_files=utterances,
                progress=False,
                processes=processes,
                metrics=["pesq_wb"],
            )
        groups = data["groups"]
        row = {
            name: (groups[group]["input"]["pesq_wb"], groups[group]["restored"]["pesq_wb"])
            for name, group in (("damaged", "all"), ("clean", "clean"))
        }
        row["n"] = (groups["all"]["examples"], groups["clean"]["examples"])
        rows[float(threshold)] = row
        damaged, clean = row["damaged"], row["clean"]
        print(
            f"t = {threshold:.2f}: damaged {damaged[0]:.3f} -> {damaged[1]:.3f}, "
            f"clean {clean[0]:.3f} -> {clean[1]:.3f}",
            flush=True,
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a gated conformer's .keras file (its config.json beside it)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.0, 0.2, 0.3, 0.4, 0.5, 0.6]
    )
    parser.add_argument("--utterances", type=int, default=60)
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args(argv)
    with open(os.path.join(os.path.dirname(os.path.abspath(args.model)), "config.json")) as f:
        config = json.load(f)
    rows = sweep(args.model, config, args.thresholds, args.utterances, args.processes)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "model": args.model,
                "split": config["data"]["train_split"],
                "seed": SWEEP_SEED,
                "pesq_wb": {str(t): row for t, row in rows.items()},
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
