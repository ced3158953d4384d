#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs everything the
# package needs: Debian packages for offline speech (espeak-ng, flite, sox) and the
# package itself with the extras named in SPECTRAL_RESTORE_EXTRAS.
#
# Environment:
#   SPECTRAL_RESTORE_VENV       venv folder (default: .venv in the repository)
#   SPECTRAL_RESTORE_EXTRAS     comma-separated extras (default: test,peers; empty: none)
#   SPECTRAL_RESTORE_PIP_EXTRA  extra pip requirements, space-separated (default: none)
#   PYTHON                      interpreter to build the venv with (default: python3, >= 3.10)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPECTRAL_RESTORE_VENV:-$ROOT/.venv}"
EXTRAS="${SPECTRAL_RESTORE_EXTRAS-test,peers}"
PIP_EXTRA="${SPECTRAL_RESTORE_PIP_EXTRA:-}"
PYTHON="${PYTHON:-python3}"

missing=()
for tool in espeak-ng flite sox; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup: Python >= 3.10 is needed, found {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.spectral-restore-stamp"
want="$(cat "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}"; echo "$EXTRAS"; echo "$PIP_EXTRA")"
want_hash="$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_hash" ]; then
    echo "setup: $VENV is up to date"
else
    target="$ROOT"
    if [ -n "$EXTRAS" ]; then target="$ROOT[$EXTRAS]"; fi
    echo "setup: installing spectral-restore${EXTRAS:+[$EXTRAS]} into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q -e "$target" $PIP_EXTRA
    if [[ ",$EXTRAS," == *",test,"* ]]; then
        # musicnn's wheel ships pretrained checkpoints but pins ancient dependencies, so it
        # goes in without them; tf-keras (matching TensorFlow) runs its original TF1 model
        # code in the parity tests.
        tf_version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(".".join(m.version("tensorflow").split(".")[:2]))')"
        "$VENV/bin/python" -m pip install -q --no-deps "musicnn==0.1.0" "tf-keras==${tf_version}.*"
    fi
    echo "$want_hash" > "$stamp"
fi
