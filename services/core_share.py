"""How the app's trainings share the CPU cores (no streamlit here): each training process gets an equal part of the
cores that nothing else needs, and is told its new part whenever that changes (services.training_queue applies it).

Alone, a training uses every core, as the CLI does; beside a second each gets half; one core fewer while the server
computes something for a page (services.background); and fewer by the cores other programs kept busy over the last
REBALANCE_S, measured from /proc/stat less this server's and its trainings' own CPU time. The measuring and the count
live in mtc_core.training.cores, which the command line's `train` asks too. Torch threads that wait for a preempted one
lose far more than the core they lack (bench/RESULTS.md: 10-50x slower), so the share never counts a busy core as free.
MTC_TRAIN_THREADS fixes the count instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mtc_core.training import cores
from services import background

CORES = cores.CORES
# torch threads per training when fixed (env MTC_TRAIN_THREADS); 0: the cores shared by the trainings running at once
# (more threads than cores slow every one of them down)
TRAIN_THREADS = max(0, int(os.environ.get("MTC_TRAIN_THREADS", "0") or 0))
REBALANCE_S = 2.0


@dataclass
class _Followed:
    """What the load watcher asks of the training queue: its training processes' pids, and to give them their share."""

    training_pids: Callable[[], list[int]] = list
    rebalance: Callable[[], None] = lambda: None


_follow = _Followed()
_watcher_lock = threading.Lock()


def follow(training_pids: Callable[[], list[int]], rebalance: Callable[[], None]) -> None:
    """Register the training queue: the watcher measures these processes as the server's own and calls `rebalance`
    every REBALANCE_S while any runs."""
    _follow.training_pids, _follow.rebalance = training_pids, rebalance


def share(running: int, computing: bool | None = None, others: float | None = None) -> int:
    """Torch threads for each training when `running` trainings share the cores that
    are free: less one while the server computes something for a page (`computing`, default: services.background's state),
    less those other programs keep busy (`others`, default: `other_load()`). Torch threads that wait for a preempted
    one lose far more than the core they lack: with a second busy process on 2 cores, 2 threads trained 10-50x
    slower than 1 (bench/RESULTS.md)."""
    if TRAIN_THREADS:
        return TRAIN_THREADS
    if computing is None:
        computing = background.computing()
    if others is None:
        others = other_load()
    return cores.free_threads(CORES, others, running, computing)


_others = 0.0  # cores other programs kept busy over the last REBALANCE_S (measured by _watch_load)


def other_load() -> float:
    """Cores kept busy by other programs over the last REBALANCE_S: the machine's busy CPU time (/proc/stat) less this
    server's and its training processes' own (0 until measured, and where /proc is not there)."""
    return _others


def _ticks() -> tuple[int, int] | None:
    """(the machine's busy ticks, this server's and its trainings' ticks); None without /proc."""
    return cores.ticks([os.getpid(), *_follow.training_pids()])


_restart = threading.Event()
_watcher: threading.Thread | None = None


def start_measuring_afresh() -> None:
    """A training starts: the last period's other load may be a program that has just ended (the CLI run before it, a
    finished sweep), so it starts with every free core and the next period (REBALANCE_S later) corrects that. The
    first training of the server process starts the watcher."""
    global _others, _watcher
    _others = 0.0
    _restart.set()
    with _watcher_lock:
        if _watcher is None:
            _watcher = threading.Thread(target=_watch_load, name="mtc-train-share", daemon=True)
            _watcher.start()


def _watch_load() -> None:
    """Every REBALANCE_S while trainings run: measure the cores other programs kept busy, and give the trainings their
    new share. With none running it waits for the next one to start."""
    global _others
    hz = cores.clock_hz()
    last, then = None, time.monotonic()
    while True:
        idle = not _follow.training_pids()
        # idle: asleep until a training starts; else one period, cut short when a training starts (a new period then)
        if _restart.wait(None if idle else REBALANCE_S):
            _restart.clear()
            last, then = _ticks(), time.monotonic()
            continue
        now, at = _ticks(), time.monotonic()
        if now is not None and last is not None:
            # a training that ended since `last` takes its ticks with it: the difference then counts them as others',
            # for one period at most
            _others = cores.other_load(last, now, at - then, hz)
        last, then = now, at
        _follow.rebalance()
