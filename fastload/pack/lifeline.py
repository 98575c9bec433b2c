"""Pack workers end with the process that started them, however it ends (kill -9 included).

Without this, killing ``fastload pack`` leaves its pool workers waiting for work forever under
PID 1. On Linux the kernel delivers SIGKILL to the worker when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks every half second.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this process as soon as ``parent_pid`` is gone."""
    if sys.platform.startswith("linux") and os.getppid() == parent_pid and _kernel_watch():
        if os.getppid() != parent_pid:  # the parent died before the kernel was told to watch it
            os._exit(1)
        return
    threading.Thread(target=_poll, args=(parent_pid,), name="fastload-parent-watch", daemon=True).start()


def _kernel_watch() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _poll(parent_pid: int) -> None:
    while _alive(parent_pid):
        time.sleep(_POLL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the number now belongs to another user's process
        return False
    return True
