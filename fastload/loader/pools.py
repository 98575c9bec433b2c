"""Start, feed, watch and stop a set of loader workers: processes or threads, one protocol.

Each pool gives the producer four operations: ``send(worker, task)``, ``receive(timeout)`` (the
envelopes that arrived, and the workers found dead), ``describe(worker)`` and ``shutdown()``.
Every wait is bounded; a process worker that dies is seen through its sentinel at once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import pickle
import queue
import selectors
import signal
import threading
import time
from multiprocessing.connection import wait as wait_any

from .failures import describe_exit
from .slots import SlotRing
from .worker_loop import TASK, process_worker, thread_worker

log = logging.getLogger(__name__)

STOP_S = 2.0  # how long shutdown waits for workers to leave on their own before terminating them
FATAL_STOP_S = 0.2  # the same after a worker died or timed out: the error should not wait for it


def get_context(mp_context) -> mp.context.BaseContext:
    """A multiprocessing context from None (fork where available, like torch), a name, or a context."""
    if mp_context is None:
        return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    if isinstance(mp_context, str):
        methods = mp.get_all_start_methods()
        if mp_context not in methods:
            raise ValueError(f"multiprocessing_context must be one of {methods}, not {mp_context!r}")
        return mp.get_context(mp_context)
    if isinstance(mp_context, mp.context.BaseContext):
        return mp_context
    raise TypeError(f"multiprocessing_context must be a start method name or a multiprocessing context, "
                    f"not {type(mp_context).__name__}")


@contextlib.contextmanager
def _sigint_blocked():
    """Keep SIGINT pending while children start: a Ctrl-C in that window would otherwise reach a
    child before it ignores SIGINT, and print a traceback from it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class ProcessPool:
    """Worker processes, each with its own task pipe and result pipe.

    A task travels as ``(seq, slot, n)`` with its indices written into the slot's index array: a
    send of a few dozen bytes, which never blocks (at most ``n_slots`` tasks are out), and no
    feeder thread between the producer and the worker.
    """

    def __init__(self, config, num_workers: int, ring: SlotRing, ctx: mp.context.BaseContext):
        self.ring = ring
        self._selector: selectors.BaseSelector | None = None
        self.stop = ctx.Event()
        self.tasks: list = []
        self.readers: list = []
        self.procs: list = []
        try:
            with _sigint_blocked():
                for wid in range(num_workers):
                    task_reader, task_writer = ctx.Pipe(duplex=False)
                    reader, writer = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=process_worker, name=f"fastload-worker-{wid}", daemon=True,
                                       args=(config, wid, ring.n_slots, task_reader, writer, self.stop))
                    self.tasks.append(task_writer)
                    self.readers.append(reader)
                    self.procs.append(proc)
                    proc.start()
                    # Only the worker holds the write end now (later children are forked without
                    # it), so its death is an EOF on the pipe even in the middle of a message.
                    writer.close()
                    task_reader.close()
        except BaseException:
            self.shutdown()
            raise
        # One selector for the whole life of the pool: building one per wait (what
        # multiprocessing.connection.wait does) costs more than the rest of a batch's delivery.
        self._selector = selectors.DefaultSelector()
        for wid, (reader, proc) in enumerate(zip(self.readers, self.procs)):
            self._selector.register(reader, selectors.EVENT_READ, ("result", wid))
            self._selector.register(proc.sentinel, selectors.EVENT_READ, ("sentinel", wid))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def describe(self, wid: int) -> str:
        return f"loader worker {wid} (pid {self.procs[wid].pid})"

    def exit_status(self, wid: int) -> str:
        proc = self.procs[wid]
        proc.join(1.0)  # its pipe may report EOF a moment before the process is reaped
        return f"{describe_exit(proc.exitcode)} (exit code {proc.exitcode})"

    def send(self, wid: int, task) -> None:
        seq, slot, indices = task
        self.ring.indices(slot)[: len(indices)] = indices
        try:
            self.tasks[wid].send_bytes(TASK.pack(seq, slot, len(indices)))
        except OSError:
            pass  # the worker is gone: receive() reports it through its sentinel

    def receive(self, timeout: float) -> tuple[list, list[int]]:
        """Envelopes that arrived within ``timeout`` seconds, and the workers that have exited."""
        out: list = []
        dead: list[int] = []
        events = self._selector.select(timeout)
        while events:
            for key, _ in events:
                kind, w = key.data
                if kind == "result":
                    if not self.readers[w].closed:  # its sentinel, earlier in this list, may have drained it
                        self._recv_one(w, out)
                else:  # the process ended: take what it sent before, then report it
                    self._selector.unregister(key.fileobj)
                    self._drain(w, out)
                    dead.append(w)
            events = [] if dead else self._selector.select(0)
        return out, sorted(dead)

    def _recv_one(self, w: int, out: list) -> None:
        reader = self.readers[w]
        try:
            out.append(pickle.loads(reader.recv_bytes()))
        except (EOFError, OSError):  # the worker is gone, maybe mid-message; its sentinel says how
            self._selector.unregister(reader)
            reader.close()

    def _drain(self, w: int, out: list) -> None:
        reader = self.readers[w]
        if reader.closed:
            return
        try:
            while reader.poll():
                out.append(pickle.loads(reader.recv_bytes()))
        except (EOFError, OSError):
            pass
        self._selector.unregister(reader)
        reader.close()

    def shutdown(self, stop_s: float = STOP_S) -> None:
        """Ask workers to stop, wait up to ``stop_s`` (draining their pipes so none blocks on a full
        one), then terminate, then kill what is left; close every queue and pipe."""
        self.stop.set()
        for conn in self.tasks:
            with contextlib.suppress(OSError):
                conn.send_bytes(b"")  # stop
        started = [p for p in self.procs if p.pid is not None]
        deadline = time.monotonic() + stop_s
        alive = {p.sentinel: i for i, p in enumerate(self.procs) if p.pid is not None}
        while alive:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readers = [r for r in self.readers if not r.closed]
            for obj in wait_any(readers + list(alive), left):
                if obj in alive:
                    del alive[obj]
                else:
                    try:
                        while obj.poll():
                            obj.recv_bytes()  # results nobody will read: drop them
                    except (EOFError, OSError):
                        obj.close()
        for p in started:
            p.join(max(0.05, deadline - time.monotonic()))  # a fired sentinel precedes the reaping a little
            if p.exitcode is None:
                log.warning("loader worker %s (pid %s) did not stop within %.1f s; terminating it",
                            p.name, p.pid, stop_s)
                p.terminate()
        for p in started:
            p.join(1.0)
            if p.exitcode is None:
                p.kill()
                p.join()
        for conn in self.tasks + self.readers:
            conn.close()
        if self._selector is not None:
            self._selector.close()


class ThreadPool:
    """Worker threads, each with its own task queue, sharing one result queue; they write into the
    owner's ring and run in parallel because the gather releases the GIL."""

    def __init__(self, config, num_workers: int, ring: SlotRing):
        self.stop = threading.Event()
        self.results: queue.Queue = queue.Queue()
        self.tasks = [queue.Queue() for _ in range(num_workers)]
        self.threads = [threading.Thread(target=thread_worker, name=f"fastload-worker-{wid}", daemon=True,
                                         args=(config, wid, ring, self.tasks[wid], self.results, self.stop))
                        for wid in range(num_workers)]
        for t in self.threads:
            t.start()

    @property
    def pids(self) -> list[int]:
        return []

    def describe(self, wid: int) -> str:
        return f"loader worker thread {wid}"

    def exit_status(self, wid: int) -> str:
        return "stopped"

    def send(self, wid: int, task) -> None:
        self.tasks[wid].put(task)

    def receive(self, timeout: float) -> tuple[list, list[int]]:
        # Liveness first: whatever a thread sent before it ended is then already in the queue.
        dead = [w for w, t in enumerate(self.threads) if not t.is_alive()]
        out = []
        try:
            out.append(self.results.get(timeout=0 if dead else timeout))
            while True:
                out.append(self.results.get_nowait())
        except queue.Empty:
            pass
        return out, dead

    def shutdown(self, stop_s: float = STOP_S) -> None:
        self.stop.set()
        for q in self.tasks:
            q.put(None)
        deadline = time.monotonic() + stop_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:  # a thread cannot be killed; it leaves after its current batch
            log.warning("loader worker threads %s did not stop within %.1f s; they are daemon threads "
                        "and stop after their current batch", stuck, stop_s)
