#!/usr/bin/env bash
# The main job: set up (idempotent), then run `rtavatar demo`. Extra arguments go to the demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/rtavatar" demo "$@"
