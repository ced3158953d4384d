#!/usr/bin/env bash
# The main job on a fresh machine: set up the environment, then run the
# end-to-end job: demo, training, evaluation. Outputs go to ${OUT:-outputs/main}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The main job needs the package alone; the tests add their extras to the same venv.
SPECTRAL_RESTORE_EXTRAS="${SPECTRAL_RESTORE_EXTRAS-}" bash "$ROOT/training/setup_env.sh"
VENV="${SPECTRAL_RESTORE_VENV:-$ROOT/.venv}"
OUT="${OUT:-$ROOT/outputs/main}"
cd "$ROOT"
"$VENV/bin/spectral-restore" demo --out "$OUT/demo"
# Train the small preset on the built-in synthetic_speech data (at most 18 minutes on
# 2 CPU cores), then evaluate it on unseen voices and damage seeds. A run that was
# interrupted resumes from its last backup when started again.
"$VENV/bin/spectral-restore" train --config training/configs/small.yaml --evaluate \
    "training.output_dir=$OUT/train"
echo "main: done, outputs in $OUT"
