#!/usr/bin/env bash
# Sets up the environment and runs the whole test suite, `large` tests included.
# Extra arguments go to pytest (e.g. `bash tests/run_tests.sh -k stft`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/training/setup_env.sh"
VENV="${SPECTRAL_RESTORE_VENV:-$ROOT/.venv}"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -m "large or not large" "$@"
