"""How many torch threads a training may use: the cores that other programs leave free (no streamlit, no services).

The command line's `train` measures once as it starts (`LoadProbe`, `cli_threads`); the app's trainings
(services.core_share) share the same free cores among themselves and re-measure every few seconds. Other programs' load
is the machine's busy CPU time (/proc/stat) less our own processes' (/proc/<pid>/stat). Torch threads that wait for a
preempted one lose far more than the core they lack (bench/RESULTS.md: 10-50x slower), so a busy core never counts as
free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

CORES = os.cpu_count() or 1
PROC = Path("/proc")
PROBE_S = 0.25  # the command line's shortest measuring window (the time it spends checking its config counts toward it)


def busy_ticks(stat: str) -> int:
    """Busy CPU time of the whole machine, in clock ticks, from the text of /proc/stat (all but idle and iowait)."""
    fields = [int(v) for v in stat.splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0) - sum(fields[8:])  # guest time is in user


def process_ticks(stat: str) -> int:
    """utime + stime of one process, in clock ticks, from the text of /proc/<pid>/stat."""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": the name may hold spaces
    return int(fields[11]) + int(fields[12])


def ticks(pids: Iterable[int], proc: Path = PROC) -> tuple[int, int] | None:
    """(the machine's busy ticks, those of the processes `pids`, ours); None without /proc. A process that has ended
    counts nothing."""
    try:
        machine = busy_ticks((proc / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    ours = 0
    for pid in pids:
        try:
            ours += process_ticks((proc / str(pid) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            pass
    return machine, ours


def clock_hz() -> int:
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def other_load(first: tuple[int, int] | None, second: tuple[int, int] | None, seconds: float, hz: int | None = None) -> float:
    """Cores other programs kept busy between two `ticks` readings `seconds` apart: the machine's busy time less ours,
    per second (0.0 when either reading is missing)."""
    if first is None or second is None or seconds <= 0:
        return 0.0
    return max(0.0, ((second[0] - first[0]) - (second[1] - first[1])) / (hz or clock_hz()) / seconds)


def free_threads(cores: int, others: float, running: int = 1, computing: bool = False) -> int:
    """Torch threads for each of `running` trainings: the cores less those other programs keep busy (`others`, rounded)
    and less one while the app's server computes something for a page (`computing`), shared equally, at least 1."""
    free = cores - (1 if computing else 0) - round(others)
    return max(1, free // max(1, running))


class LoadProbe:
    """The command line's measurement: started when `train` starts, read when it is about to train (at least PROBE_S
    later), counting this process's own CPU time as ours. `proc` and `clock` are /proc and time.monotonic (tests
    give others)."""

    def __init__(self, proc: Path = PROC, clock: Callable[[], float] = time.monotonic):
        self.proc, self.clock = proc, clock
        self.first, self.then = ticks([os.getpid()], proc), clock()

    def others(self) -> float:
        time.sleep(max(0.0, PROBE_S - (self.clock() - self.then)))
        second, now = ticks([os.getpid()], self.proc), self.clock()
        return other_load(self.first, second, now - self.then)


def cli_threads(others: float, cores: int | None = None, fixed: int = 0) -> tuple[int, str]:
    """(torch threads for the command line's training, the line that says why): `fixed` (--num-threads) when given,
    else the cores (default CORES) that other programs leave free, as the app's server gives a training running alone."""
    if fixed:
        return fixed, f"threads: {fixed} (--num-threads)"
    cores = cores or CORES
    threads, busy = free_threads(cores, others), min(cores, round(others))
    if not busy:
        return threads, f"threads: {threads} of {cores} cores free"
    return threads, f"threads: {threads} ({busy} of {cores} cores busy with other programs)"
