"""The run folder's lock: the process that trains a run holds it for its whole life, so that no other process (a
second `train` or `train --resume`, a sweep worker, another app server, the app's Delete, `zoo-add`, a zip import)
writes into, replaces or deletes the folder under it.

The lock is an exclusive `fcntl.flock` on `<run>/.lock`, taken without waiting: a second taker is refused at once
with `RunBusy` ("runs/x is being trained by process 1234 (since 2025-01-02 10:11:12); ..."). The holder writes its
pid and start time into the file for that message. The operating system releases the lock when the process ends,
however it ends (a SIGKILL, a crash), so a killed trainer never leaves a stale lock: at most a hidden `.lock` file
that nobody holds, which is not a run file (orphan cleanup, listing, zip import and the zoo leave it out) and is
taken over by the next trainer. A holder that lets go removes the file, so a finished run keeps nothing.

`run_lock_holder` asks without taking: it holds a shared lock for an instant, which never stands in a trainer's way
for long (a taker that finds only askers in the way tries again for up to a second).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK = ".lock"
ASKER_PATIENCE = 1.0  # seconds a taker retries while only `run_lock_holder` askers hold the file
MAX_RECORD_BYTES = 4096
DEFAULT_ADVICE = "wait until it finishes, or stop that process first"


class RunBusy(ValueError):
    """A run folder another process (or another block of this one) holds; the message names the folder, the process,
    what it does and since when."""


def busy_message(run_dir: str | Path, holder: dict[str, Any] | None, advice: str = DEFAULT_ADVICE) -> str:
    holder = holder or {}
    doing = holder["doing"] if isinstance(holder.get("doing"), str) else "trained"
    who = f"process {holder['pid']}" if isinstance(holder.get("pid"), int) else "another process"
    since = f" (since {holder['since']})" if isinstance(holder.get("since"), str) else ""
    return f"{run_dir} is being {doing} by {who}{since}" + (f"; {advice}" if advice else "")


def _open(path: Path, create: bool) -> int | None:
    """A descriptor of the lock file: with `create` made if missing and read-write where allowed (flock works on a
    read-only one too); None where there is no file (and none can be made: no folder, a read-only one)."""
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    if create:
        try:
            return os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if not isinstance(e, PermissionError) and e.errno != errno.EROFS:
                return None
    try:
        return os.open(path, flags | os.O_RDONLY)
    except OSError:
        return None


def _record(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, MAX_RECORD_BYTES, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _exclusive_holder(fd: int) -> dict[str, Any] | None:
    """The record of the process holding the file exclusively (a holder); None when only askers hold it (shared)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _record(fd)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None


def run_lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Who holds `run_dir` now: {"pid": int, "since": "YYYY-mm-dd HH:MM:SS", "doing": "trained"} (any may be missing),
    or None when no process does (no lock file, or one a dead process left). Creates nothing."""
    fd = _open(Path(run_dir) / LOCK, create=False)
    if fd is None:
        return None
    try:
        return _exclusive_holder(fd)
    finally:
        os.close(fd)


def refuse_if_busy(run_dir: str | Path, advice: str = DEFAULT_ADVICE) -> None:
    """RunBusy naming the process when `run_dir` is held (being trained)."""
    holder = run_lock_holder(run_dir)
    if holder is not None:
        raise RunBusy(busy_message(run_dir, holder, advice))


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _acquire(run_dir: Path, doing: str, advice: str) -> int | None:
    """The descriptor holding `run_dir`'s lock, or None where no lock file can be made (nothing can be written there,
    so nothing can be trained there either). RunBusy when a process holds it."""
    path = run_dir / LOCK
    existed = run_dir.is_dir()
    deadline = time.monotonic() + ASKER_PATIENCE
    while True:
        fd = _open(path, create=True)
        if fd is None:
            if existed and not run_dir.exists():
                raise RunBusy(f"{run_dir} was removed by another process meanwhile")
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _exclusive_holder(fd)
            os.close(fd)
            if holder is not None or time.monotonic() > deadline:
                raise RunBusy(busy_message(run_dir, holder, advice)) from None
            time.sleep(0.01)  # only askers in the way, for an instant
            continue
        except BaseException:
            os.close(fd)
            raise
        if not _same_file(fd, path):  # its last holder removed it as it let go: take the file now at the path
            os.close(fd)
            continue
        with contextlib.suppress(OSError):  # a read-only descriptor: the lock holds, without its record
            record = {"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "doing": doing}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        return fd


def _release(run_dir: Path, fd: int) -> None:
    try:
        if _same_file(fd, run_dir / LOCK):  # not a lock file another process made after this one was removed
            with contextlib.suppress(OSError):
                (run_dir / LOCK).unlink()
    finally:
        os.close(fd)


@contextlib.contextmanager
def hold_run_lock(run_dir: str | Path, *, create: bool = True, doing: str = "trained",
                  advice: str = DEFAULT_ADVICE) -> Iterator[None]:
    """Hold `run_dir`'s lock for the block: RunBusy at once when another process (or another block of this one) holds
    it; `doing` says what for in the refusals others get ("deleted"). With `create`, a missing folder is made for the
    lock and removed again if it is left empty (a training refused by its own checks leaves nothing). A folder where no
    lock file can be made (read-only, a file in its place) is not locked: nothing can be trained into it, and the
    caller's own checks refuse it."""
    run_dir = Path(run_dir)
    made = None
    if create and not run_dir.exists() and not run_dir.is_symlink():
        made = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            made = None
    try:
        fd = _acquire(run_dir, doing, advice)
        try:
            yield
        finally:
            if fd is not None:
                _release(run_dir, fd)
    finally:
        if made is not None:  # the folders this call made, if nothing was put in them
            for folder in [run_dir, *run_dir.parents]:
                try:
                    folder.rmdir()
                except OSError:
                    break
                if folder == made:
                    break


def holding_run_lock(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: `function(..., run_dir, ...)` runs holding `run_dir`'s lock from its first line to its last
    (`training.trainer.train`)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def locked(*args: Any, **kwargs: Any) -> Any:
        run_dir = signature.bind(*args, **kwargs).arguments["run_dir"]
        with hold_run_lock(run_dir):
            return function(*args, **kwargs)

    return locked
