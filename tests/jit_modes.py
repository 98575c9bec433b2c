"""Run a Python command compiled and then with ``NUMBA_DISABLE_JIT=1`` (Numba's debugging mode, in
which every kernel runs as plain Python), for the tests that check both modes give the same output."""

from __future__ import annotations

import os
import subprocess
import sys


def outputs_with_and_without_jit(args, read=lambda proc: proc.stdout) -> list:
    """``python *args`` with the JIT on, then off; each run must exit 0 (its stderr is the failure's
    message). Returns ``read(proc)`` of each run, taken before the next run starts (so ``read`` may
    load a file the command wrote)."""
    outputs = []
    for jit in ("0", "1"):
        proc = subprocess.run([sys.executable, *map(str, args)], env={**os.environ, "NUMBA_DISABLE_JIT": jit},
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs.append(read(proc))
    return outputs
