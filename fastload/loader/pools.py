"""Start, feed, watch and stop a set of loader workers: processes or threads, one protocol.

Each pool gives the producer four operations: ``send(worker, task)``, ``receive(timeout)`` (the
envelopes that arrived, and the workers found dead), ``describe(worker)`` and ``shutdown()``.
Every wait is bounded; a process worker that dies is seen through its sentinel at once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import select
import signal
import threading
import time
from multiprocessing.connection import wait as wait_any

from .failures import describe_exit
from .frames import STOP_FRAME, FrameReader, task_frame
from .slots import SlotRing
from .worker_loop import process_worker, thread_worker

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


class _Poll:
    """Readable-fd waits on a fixed set of descriptors: epoll where there is one (Linux), else poll."""

    def __init__(self):
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._poll = select.poll() if self._epoll is None else None

    def register(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            self._poll.register(fd, select.POLLIN)

    def unregister(self, fd: int) -> None:
        (self._epoll or self._poll).unregister(fd)

    def wait(self, timeout: float) -> list[int]:
        """The descriptors readable (or at their end) within ``timeout`` seconds."""
        if self._epoll is not None:
            return [fd for fd, _ in self._epoll.poll(timeout)]
        return [fd for fd, _ in self._poll.poll(timeout * 1000)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()


class ProcessPool:
    """Worker processes, each with its own task pipe and result pipe.

    A task travels as ``(seq, slot, n)`` with its indices written into the slot's index array: a
    send of a few dozen bytes, which never blocks (at most ``n_slots`` tasks are out), and no
    feeder thread between the producer and the worker.
    """

    def __init__(self, config, num_workers: int, ring: SlotRing, ctx: mp.context.BaseContext):
        self.ring = ring
        self._polls: list[_Poll] = []
        self._task_fds: list[int] = []
        self._frames: list[FrameReader] = []
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
                    self._task_fds.append(task_writer.fileno())
                    self._frames.append(FrameReader(reader.fileno()))
                    self.procs.append(proc)
                    proc.start()
                    # Only the worker holds the write end now (later children are forked without
                    # it), so its death is an EOF on the pipe even in the middle of a message.
                    writer.close()
                    task_reader.close()
        except BaseException:
            self.shutdown()
            raise
        # One epoll object per worker for the whole life of the pool (building one per wait, what
        # multiprocessing.connection.wait does, costs more than the rest of a batch's delivery;
        # selectors' Python layer ~2 us a wait): its result pipe and every worker's sentinel. The
        # producer waits on the worker of the batch it needs, so results of the others wake nobody.
        self._owner = {proc.sentinel: w for w, proc in enumerate(self.procs)}
        for wid, reader in enumerate(self.readers):
            waiter = _Poll()
            waiter.register(reader.fileno())
            for proc in self.procs:
                waiter.register(proc.sentinel)
            self._polls.append(waiter)
        self._index_views = [ring.indices(slot) for slot in range(ring.n_slots)]

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
        n = len(indices)
        self._index_views[slot][:n] = indices
        try:
            os.write(self._task_fds[wid], task_frame(seq, slot, n))  # 29 bytes: one atomic write
        except OSError:
            pass  # the worker is gone: receive() reports it through its sentinel

    def receive(self, wid: int, timeout: float) -> tuple[list, list[int]]:
        """The envelopes of worker ``wid`` that arrived (waiting up to ``timeout`` seconds for
        one), and the workers that have exited (with what they sent before)."""
        frames = self._frames[wid]
        if not frames.frames:
            dead: list[int] = []
            out: list = []
            for fd in self._polls[wid].wait(timeout):
                w = self._owner.get(fd)
                if w is None:
                    if not self.readers[wid].closed:  # a sentinel, earlier in this list, may have drained it
                        try:
                            frames.fill()
                        except (EOFError, OSError):  # gone, maybe mid-message; its sentinel says how
                            self._close_reader(wid)
                elif w not in dead:  # the process ended: take what it sent before, then report it
                    self._drain(w, out)
                    dead.append(w)
            if dead:
                out.extend(frames.frames)
                frames.frames.clear()
                return out, sorted(dead)
        out = list(frames.frames)
        frames.frames.clear()
        return out, []

    def _close_reader(self, w: int) -> None:
        reader = self.readers[w]
        if not reader.closed:
            with contextlib.suppress(OSError, ValueError):
                self._polls[w].unregister(reader.fileno())
            reader.close()

    def _drain(self, w: int, out: list) -> None:
        reader, frames = self.readers[w], self._frames[w]
        if not reader.closed:
            try:
                while reader.poll():
                    frames.fill()
            except (EOFError, OSError):
                pass
            self._close_reader(w)
        out.extend(frames.frames)
        frames.frames.clear()

    def shutdown(self, stop_s: float = STOP_S) -> None:
        """Ask workers to stop, wait up to ``stop_s`` (draining their pipes so none blocks on a full
        one), then terminate, then kill what is left; close every queue and pipe."""
        self.stop.set()
        for fd in self._task_fds:
            with contextlib.suppress(OSError):
                os.write(fd, STOP_FRAME)
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
                            if not os.read(obj.fileno(), 1 << 16):  # results nobody will read: dropped
                                obj.close()
                                break
                    except OSError:
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
        for waiter in self._polls:
            waiter.close()


class ThreadPool:
    """Worker threads, each with its own task queue and result queue; they write into the owner's
    ring and run in parallel because the gather releases the GIL.

    The queues are ``queue.SimpleQueue`` (C): ``queue.Queue``'s Python condition variable cost
    ~1.7 us more per put and get, and 5 lock operations per batch in the consumer. The producer
    waits on the result queue of the worker of the batch it needs, so results of the others wake
    nobody.
    """

    def __init__(self, config, num_workers: int, ring: SlotRing):
        self.stop = threading.Event()
        self.results = [queue.SimpleQueue() for _ in range(num_workers)]
        self.tasks = [queue.SimpleQueue() for _ in range(num_workers)]
        self.threads = [threading.Thread(target=thread_worker, name=f"fastload-worker-{wid}", daemon=True,
                                         args=(config, wid, ring, self.tasks[wid], self.results[wid], self.stop))
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

    def receive(self, wid: int, timeout: float) -> tuple[list, list[int]]:
        """The next envelope of worker ``wid`` if one arrives within ``timeout`` seconds; after a
        wait in vain, the threads that have ended (with what they sent before)."""
        try:
            return [self.results[wid].get(timeout=timeout)], []
        except queue.Empty:
            pass
        dead = [w for w, t in enumerate(self.threads) if not t.is_alive()]
        out = []
        for w in dead:  # a thread ends with its last envelope already queued
            q = self.results[w]
            while not q.empty():
                out.append(q.get_nowait())
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
