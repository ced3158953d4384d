#!/usr/bin/env bash
# The main job on a fresh machine: set up the environment, then run the
# end-to-end job: demo, training, evaluation, export, restoring a file.
# Outputs go to ${OUT:-outputs/main}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The main job needs the package and the TFDS builders' library; the tests add their
# extras to the same venv.
SPECTRAL_RESTORE_EXTRAS="${SPECTRAL_RESTORE_EXTRAS-tfds}" bash "$ROOT/training/setup_env.sh"
VENV="${SPECTRAL_RESTORE_VENV:-$ROOT/.venv}"
OUT="${OUT:-$ROOT/outputs/main}"
cd "$ROOT"
"$VENV/bin/spectral-restore" demo --out "$OUT/demo"
# Train the gated conformer's small preset on the built-in synthetic_speech data (at most
# 18 minutes on 2 CPU cores), then evaluate it on unseen voices and damage seeds. A run
# that was interrupted resumes from its last backup when started again.
"$VENV/bin/spectral-restore" train --config training/configs/conformer_small.yaml --evaluate \
    "training.output_dir=$OUT/train"
# A TF Serving SavedModel of the trained model, then the demo's noisy sentence restored
# through it (restored audio and input/restored spectrograms in $OUT/restored).
rm -rf "$OUT/export"
"$VENV/bin/spectral-restore" export "$OUT/train/model.keras" "$OUT/export/1"
"$VENV/bin/spectral-restore" restore "$OUT/demo/damaged.wav" -o "$OUT/restored" -m "$OUT/export/1" --plot
echo "main: done, outputs in $OUT"
