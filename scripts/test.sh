#!/usr/bin/env bash
# The tests: set up (idempotent), lint (ruff, pyproject.toml's configuration), then run pytest.
# Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
"$ROOT/.venv/bin/python" -m ruff check --quiet "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
