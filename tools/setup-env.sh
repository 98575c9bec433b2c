#!/usr/bin/env bash
# Create .venv and install fastload with its test extras. torch is installed first and pinned:
# an unpinned torch requirement on an empty environment pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip_install() {  # keeps pip's exit status; drops the local mirror's noisy "is ignored" warnings
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2)
}
pip_install "$TORCH_SPEC"
# keep that torch: a dependency range alone can make pip "upgrade" it to the newest CUDA build
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_SPEC" > "$constraints"
pip_install -c "$constraints" -e ".[test]"
.venv/bin/python -c "import fastload, fastload._native, torch; print('fastload', fastload.__version__, '| torch', torch.__version__)"
