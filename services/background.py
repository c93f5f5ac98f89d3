"""Heavy computations off the page script (no streamlit here): encoding a model's points, TC estimators on codes
without a stored evaluation, `evaluate` for Compare.

A page never waits for them: it asks for a `Task` by key, shows what is ready (stored numbers first) and a progress
indicator for the rest, and redraws when the task is done. Each key is computed once per server process, by one
worker thread (a 2-core machine shares its cores with trainings), and kept for every session; the oldest finished
results are dropped beyond `MAX_RESULTS`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from mtc_core.training import cores

MAX_RESULTS = 64

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtc-compute")
_lock = threading.Lock()
_tasks: OrderedDict[Hashable, Task] = OrderedDict()
_submitted = 0  # tasks started since the server started
_computing = 0  # tasks computing now (0 or 1: one worker)
# called with no argument when a computation starts or ends (services.training_queue gives the cores back to the trainings)
listeners: list[Callable[[], None]] = []
_probe = cores.LoadProbe()  # other programs' load since the last computation ended (only the worker thread reads it)


@dataclass(eq=False)
class Task:
    key: Hashable
    label: str  # what is being computed, for the progress indicator
    future: Future = field(default_factory=Future)
    created: float = field(default_factory=time.time)
    started: float = 0.0
    stage: str = ""  # the step it is at, set by the computation through `report`
    fraction: float | None = None  # 0..1 when the computation knows
    threads: int = 0  # the torch threads it computes with (`compute_threads`), set as it starts

    @property
    def done(self) -> bool:
        return self.future.done()

    def report(self, fraction: float | None = None, stage: str = "") -> None:
        """Progress from inside the computation."""
        self.fraction, self.stage = fraction, stage or self.stage

    def value(self, wait: float = 0.0) -> Any:
        """The result, waiting up to `wait` seconds; TimeoutError while it is still running; re-raises its error."""
        return self.future.result(timeout=wait)


def submit(key: Hashable, label: str, fn: Callable[..., Any], *args: Any) -> Task:
    """The task for `key`, started with `fn(task, *args)` on the worker unless it already exists (computing or done)."""
    global _submitted
    with _lock:
        task = _tasks.get(key)
        if task is not None and not (task.done and task.future.exception() is not None and _retry(task)):
            _tasks.move_to_end(key)
            return task
        task = Task(key, label)
        _tasks[key] = task
        _submitted += 1
        _evict()
    _pool.submit(_run, task, fn, args)
    return task


def ready(key: Hashable, value: Any, label: str = "") -> Task:
    """A finished task holding `value` (a number read from disk needs no computation); not stored."""
    task = Task(key, label)
    task.future.set_result(value)
    return task


def _retry(task: Task) -> bool:
    """A failed computation is tried again after a while (a file may have been fixed), not on every rerun."""
    return time.time() - task.created > 30


def compute_threads() -> int:
    """Torch threads for the computation about to start: the cores other programs (the trainings included) leave free,
    at least 1, as for a training (docs/design.md, "Live training"). The load is measured since the previous computation
    ended (`_probe`; it waits only when that was less than `cores.PROBE_S` ago). Torch's default of one thread per core,
    on cores that other programs keep busy, made the Your codes analysis 8x slower (bench/RESULTS.md, "App latency:
    Your codes and training")."""
    return cores.free_threads(cores.CORES, _probe.others())


def _run(task: Task, fn: Callable[..., Any], args: tuple) -> None:
    global _computing
    task.started = time.time()
    threads = compute_threads()  # before this computation counts: it is ours, not another program's
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)  # the worker thread's own OpenMP count (OpenMP keeps one per thread)
    task.threads = threads
    _computing += 1
    _tell_listeners()
    try:
        task.future.set_result(fn(task, *args))
    except Exception as error:  # the page shows the reason; the worker lives on
        task.future.set_exception(error)
    finally:
        _computing -= 1
        _restart_probe()
        _tell_listeners()


def _restart_probe() -> None:
    global _probe
    _probe = cores.LoadProbe()  # the next computation's threads: from the load between the two


def computing() -> bool:
    """Whether a computation is running now (it uses a core)."""
    return _computing > 0


def _tell_listeners() -> None:
    for listener in list(listeners):
        try:
            listener()
        except Exception:  # noqa: BLE001 - a listener must not break the computation
            pass


def _evict() -> None:
    finished = [k for k, t in _tasks.items() if t.done]
    for key in finished[: max(0, len(_tasks) - MAX_RESULTS)]:
        del _tasks[key]


def pending() -> list[Task]:
    """Tasks still waiting or computing, oldest first."""
    with _lock:
        return [t for t in _tasks.values() if not t.done]


def submitted() -> int:
    """How many computations have been started (a run that started none and found none pending drew every result)."""
    with _lock:
        return _submitted


def get(key: Hashable) -> Task | None:
    with _lock:
        return _tasks.get(key)
