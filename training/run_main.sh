#!/usr/bin/env bash
# The main job on a fresh machine: set up the environment, then run the
# end-to-end demo. Outputs go to ${OUT:-outputs/main}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The main job needs the package alone; the tests add their extras to the same venv.
SPECTRAL_RESTORE_EXTRAS="${SPECTRAL_RESTORE_EXTRAS-}" bash "$ROOT/training/setup_env.sh"
VENV="${SPECTRAL_RESTORE_VENV:-$ROOT/.venv}"
OUT="${OUT:-$ROOT/outputs/main}"
"$VENV/bin/spectral-restore" demo --out "$OUT/demo"
echo "main: done, outputs in $OUT"
