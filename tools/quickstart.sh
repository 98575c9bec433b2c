#!/usr/bin/env bash
# One command from a fresh clone: set up .venv, then generate, pack and load the demo dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-env.sh
exec .venv/bin/fastload demo "$@"
