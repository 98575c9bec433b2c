"""Names of the loader's shared-memory segments, and the sweep of those whose owner is dead.

A segment is unlinked by the process that created it (slots.py), but a process killed with its
whole process group (a scheduler's kill, the OOM killer) takes its resource tracker with it, and
its segments stay in ``/dev/shm`` until reboot. So on Linux a name says who owns it:

    fastload-<pid>-<start>-<pidns>-<random>

``start`` is the owner's start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot) and
``pidns`` the inode of its pid namespace. A new loader sweeps segments whose owner is provably
dead: fastload's own names, owned by this user, in this pid namespace (a pid means nothing in
another), whose pid is gone or now belongs to a process started at another time. Anything else,
older names included, is left alone. ``/dev/shm`` is cleared at boot, so start times from a
previous boot never meet.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import uuid
from typing import Iterable

NAME_PREFIX = "fastload-"
SHM_DIR = "/dev/shm"
_OWNED = re.compile(rf"{NAME_PREFIX}(\d+)-(\d+)-(\d+)-[0-9a-f]{{12}}")

log = logging.getLogger("fastload.loader")


def start_time(pid: int) -> int | None:
    """Process ``pid``'s start time in clock ticks since boot, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    return int(text.rsplit(b")", 1)[1].split()[19])


def pid_namespace() -> int | None:
    """The inode of this process's pid namespace (None where /proc does not say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def new_name() -> str:
    """A unique segment name that names its owner (this process) where the system allows."""
    pid, ns = os.getpid(), pid_namespace()
    started = start_time(pid) if ns is not None else None
    if started is None:  # no /proc: a name the sweep never touches
        return f"{NAME_PREFIX}{pid}-{uuid.uuid4().hex[:12]}"
    return f"{NAME_PREFIX}{pid}-{started}-{ns}-{uuid.uuid4().hex[:12]}"


def owner_is_dead(name: str, *, namespace: int | None = None) -> bool:
    """True only when ``name`` is a segment name of :func:`new_name` whose owner, in this pid
    namespace, has ended (its pid is free, or reused by a process started at another time)."""
    m = _OWNED.fullmatch(name)
    namespace = pid_namespace() if namespace is None else namespace
    if m is None or namespace is None or int(m.group(3)) != namespace:
        return False
    return start_time(int(m.group(1))) != int(m.group(2))


def sweep_dead(directory: str = SHM_DIR) -> list[str]:
    """Unlink the segments in ``directory`` of owners that are provably dead; returns their names."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []  # no /dev/shm here
    namespace, uid, swept = pid_namespace(), os.geteuid(), []
    for name in names:
        if not name.startswith(NAME_PREFIX) or not owner_is_dead(name, namespace=namespace):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
                os.unlink(path)
                swept.append(name)
        except FileNotFoundError:
            continue  # another loader swept it first
        except OSError as exc:
            log.debug("cannot sweep %s: %s", path, exc)
    if swept:
        log.info("removed %d shared-memory segment(s) left by ended processes: %s", len(swept), ", ".join(swept))
    return swept


def our_segments(names: Iterable[str], pid: int | None = None) -> list[str]:
    """The names among ``names`` (e.g. ``os.listdir('/dev/shm')``) of rings created by ``pid``."""
    prefix = f"{NAME_PREFIX}{os.getpid() if pid is None else pid}-"
    return sorted(n for n in names if n.startswith(prefix))
