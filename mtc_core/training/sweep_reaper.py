"""Processes a sweep started, read from /proc, and the reaper that ends them if the driver is killed (SIGKILL).

A SIGKILLed driver runs no cleanup. Ray's gcs_server and raylet die with it (they are started with PDEATHSIG) and the
training workers stop before their next write (`sweep_worker.DriverWatch`), but Ray's dashboard and runtime-env agents
keep running. So the driver starts this module as a small process of its own session (`python -m
mtc_core.training.sweep_reaper`) and writes to its stdin, one JSON line at a time, the processes Ray started for it
({pid: start time}). When the pipe closes without a final "done" line, the driver died: the reaper ends those
processes (SIGTERM, then SIGKILL) and exits. Only the standard library is imported here, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

DONE = "done"


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat), which tells it from a later one of the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                    children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    return children


def descendants(pid: int | None = None, depth: int | None = None) -> dict[int, int]:
    """The processes below `pid` (default: this one), `depth` levels down (None: all), as {pid: start time}, from /proc."""
    children, found, level = _children(), {}, [pid or os.getpid()]
    while level and depth != 0:
        level = [child for parent in level for child in children.get(parent, [])]
        for child in level:
            if (start := process_start(child)) is not None:
                found[child] = start
        depth = None if depth is None else depth - 1
    return found


def started_since(before: dict[int, int]) -> dict[int, int]:
    """The processes this process started since `before` (its children then) and everything below them: what a local
    ray.init started. Joining a cluster starts none, so a cluster's processes are never counted as the sweep's."""
    found = {}
    for child, start in descendants(depth=1).items():
        if before.get(child) != start:
            found[child] = start
            found.update(descendants(child))
    return found


def alive(processes: dict[int, int]) -> dict[int, int]:
    """The processes of `processes` still running (the same pid and start time, not a zombie)."""
    left = {}
    for pid, start in processes.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] != "Z" and process_start(pid) == start:
                left[pid] = start
    return left


def end_processes(processes: dict[int, int], grace: float = 2.0) -> dict[int, int]:
    """SIGTERM the processes still running, SIGKILL those left after `grace` seconds; returns those that survived."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        left = alive(processes)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = alive(left)
        if not left:
            return {}
    return alive(processes)


class Reaper:
    """The driver's end of the pipe (see the module docstring)."""

    def __init__(self):
        import subprocess

        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        start_new_session=True, text=True)

    def watch(self, processes: dict[int, int]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.write(json.dumps(processes) + "\n")
            self.process.stdin.flush()

    def close(self) -> None:
        """The driver ended what it started itself: the reaper leaves."""
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.write(DONE + "\n")
            self.process.stdin.close()
        with contextlib.suppress(Exception):
            self.process.wait(5)


def main() -> int:
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):  # the terminal's signals are for the driver; it tells us when it is gone
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    watched: dict[int, int] = {}
    for line in sys.stdin:
        if line.strip() == DONE:
            return 0
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            watched.update({int(pid): int(start) for pid, start in json.loads(line).items()})
    end_processes(watched)
    return 0


if __name__ == "__main__":
    sys.exit(main())
