"""How a worker's failure travels to the consumer and is raised there.

A worker packs an exception into its result envelope (:func:`pack_failure`): the exception itself
between threads, its pickle between processes, always with the traceback text. The consumer turns
it back into what it raises (:func:`failure_exception`): a fastload error as itself, anything else
as :class:`WorkerError` chained to the original, with a note naming the worker and carrying its
traceback. A worker that dies instead is described by its exit status (:func:`describe_exit`).
"""

from __future__ import annotations

import pickle
import signal
import traceback
from typing import Any

from ..errors import FastloadError, WorkerError


def pack_failure(exc: BaseException, where: str, *, pickled: bool) -> tuple:
    """``(type name, message, where, traceback text, exception or its pickle or None)``."""
    tb = "".join(traceback.format_exception(exc))
    payload: Any = exc
    if pickled:
        try:
            payload = pickle.dumps(exc)
            pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt: send text only
        except Exception:
            payload = None
    return type(exc).__qualname__, str(exc), where, tb, payload


def failure_exception(failure: tuple, who: str, doing: str | None = None) -> BaseException:
    """The exception for a failure envelope from ``who`` (e.g. ``"loader worker 1 (pid 4242)"``).

    ``doing`` (e.g. ``"reading batch 7"``) replaces the worker's own ``where``: a worker knows the
    task number, the consumer knows the batch number.
    """
    type_name, message, where, tb, payload = failure
    exc = payload
    if isinstance(payload, bytes):
        try:
            exc = pickle.loads(payload)
        except Exception:
            exc = None
    where = doing or where
    note = f"raised in {who} while {where}"
    if not isinstance(payload, BaseException):  # from another process: its traceback as text
        note += f"; the worker's traceback:\n{tb}"
    if isinstance(exc, FastloadError):
        exc.add_note(note)
        return exc
    err = WorkerError(f"{who} raised {type_name} while {where}: {message}")
    err.add_note(note)
    err.__cause__ = exc
    return err


def describe_exit(exitcode: int | None) -> str:
    """``-9`` -> ``killed by signal SIGKILL``, with the usual causes of the common signals."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = {"SIGKILL": " (killed by another process, or by the kernel's out-of-memory killer)",
               "SIGSEGV": " (a segmentation fault)", "SIGBUS": " (a bus error: e.g. a truncated mapped file)"}
        return f"was killed by signal {name}{why.get(name, '')}"
    return f"exited with status {exitcode}"
