#!/usr/bin/env bash
# Idempotent set-up: system packages, virtual environment, torch, the package itself.
# Usage: scripts/setup.sh            (sourced by scripts/demo.sh and scripts/test.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RTAVATAR_VENV:-$ROOT/.venv}"
TORCH_SPEC="${RTAVATAR_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"

need_apt=()
for pkg in espeak-ng libespeak-ng1 chromium; do  # chromium: the page test (Playwright drives /usr/bin/chromium)
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing apt packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC"
  "${PIP[@]}" "$TORCH_SPEC"
fi
# Re-install the package only when its metadata changed (keeps repeat runs fast).
STAMP="$VENV/.rtavatar-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  echo "[setup] installing rtavatar and its dependencies"
  CONSTRAINT="$(mktemp)"; "$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" 2>/dev/null > "$CONSTRAINT"
  "${PIP[@]}" -c "$CONSTRAINT" -e "$ROOT[dev]"
  rm -f "$CONSTRAINT"
  touch "$STAMP"
fi
