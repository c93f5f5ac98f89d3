"""The driver's side of a sweep on a cluster (docs/design.md, "Sweeps"): the cluster's live capacity, runs' files brought
home, and a driver that ends what it started.

- `ClusterView` reads Ray's node table at each progress line: how many runs fit on the nodes alive now, how many CPUs
  are free, and which nodes were lost or joined since the last look, in the sweep's own words. Ray's own messages
  stay out of the driver's output: workers' logs (`ray.init(log_to_driver=False)`) and the raylet's error messages,
  which dump its internal state when a node dies; `ray_errors_in_one_line` keeps their first sentence.
- `bring_back` writes the files a run trained on another disk returned (`sweep_worker`) into the driver's `--out`
  with the project's atomic writers, config.json last, so that a rerun skips the run; `ship` sends a run the driver
  resumes the files it holds.
- `ending_on_signals` turns SIGTERM and SIGHUP into `SweepInterrupted` (a KeyboardInterrupt, as SIGINT is), so that the
  sweep cancels its tasks and shuts down the Ray instance it started before it exits. `ray.shutdown` leaves Ray's
  dashboard and runtime-env agents running after their raylet; `sweep_reaper.end_processes` then ends every process Ray
  started under the driver that is still there, and `sweep_reaper.Reaper` does it when the driver is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mtc_core.runs import checkpoint as ckpt
from mtc_core.runs import files
from mtc_core.runs.lock import hold_run_lock
from mtc_core.training.sweep_worker import ERROR, MAX_SHIPPED_BYTES, SHIPPED

SIGNALS = ("SIGTERM", "SIGHUP")  # SIGINT already raises KeyboardInterrupt


class SweepInterrupted(KeyboardInterrupt):
    """The sweep's driver received a termination signal."""

    def __init__(self, signum: int):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def ending_on_signals(ignore: bool = False) -> Iterator[None]:
    """SIGTERM and SIGHUP raise SweepInterrupted in the main thread for the block (`ignore`: they are ignored); the
    handlers before it come back after. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        for name in SIGNALS:  # one is enough: a second must not break the cleanup it started
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise SweepInterrupted(signum)

    previous = {}
    for name in SIGNALS:
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), signal.SIG_IGN if ignore else interrupt)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def ray_errors_in_one_line(log) -> Iterator[None]:
    """For the block, the error messages Ray's driver prints from its raylets (a dead raylet's 20 lines of state dump, a
    retry's paragraph) reach `log` as their first sentence, prefixed "ray:"; other output passes unchanged. Patches
    Ray's private printer, and does nothing where it is not found."""
    try:
        from ray._private import worker
    except ImportError:
        yield
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def print_to_stdstream(data, *args, **kwargs):
        if not isinstance(data, dict) or data.get("pid") != "raylet":
            return original(data, *args, **kwargs)
        for message in data.get("lines", []):
            first = str(message).strip().splitlines()[0] if str(message).strip() else ""
            log(f"ray: {first.split('. ')[0].rstrip('.')[:200]} (Ray's log files have the rest)")

    worker.print_to_stdstream = print_to_stdstream
    try:
        yield
    finally:
        worker.print_to_stdstream = original


@dataclass(frozen=True)
class Node:
    id: str
    address: str
    cpus: float
    gpus: float

    def label(self) -> str:
        return f"{self.address} ({self.id[:8]})"


def _alive_nodes(ray) -> dict[str, Node]:
    nodes = {}
    for entry in ray.nodes():
        if entry.get("Alive"):
            resources = entry.get("Resources", {})
            nodes[entry["NodeID"]] = Node(entry["NodeID"], str(entry.get("NodeManagerAddress", "?")), float(resources.get("CPU", 0)),
                                          float(resources.get("GPU", 0)))
    return nodes


def _plural(n: float, word: str) -> str:
    n = int(n) if float(n).is_integer() else n
    return f"{n} {word}{'' if n == 1 else 's'}"


class ClusterView:
    """The nodes alive and the runs they can hold, refreshed from Ray at each look."""

    def __init__(self, ray, cpus: int, gpus: float):
        self.ray, self.cpus, self.gpus = ray, cpus, gpus
        self.nodes = _alive_nodes(ray)
        self.lost: list[Node] = []

    def _fits(self) -> list[int]:
        fits = []
        for node in self.nodes.values():
            fit = int(node.cpus // self.cpus)
            if self.gpus:
                fit = min(fit, int(node.gpus // self.gpus))
            fits.append(fit)
        return fits

    def slots(self) -> int:
        """Runs that fit at once on the nodes alive now (each node packs its own)."""
        return sum(self._fits())

    def refresh(self) -> list[str]:
        """Lines for the nodes lost and joined since the last look."""
        now = _alive_nodes(self.ray)
        lines = []
        for node_id in self.nodes.keys() - now.keys():
            node = self.nodes[node_id]
            self.lost.append(node)
            lines.append(f"node {node.label()} lost ({_plural(node.cpus, 'CPU')}"
                         f"{', ' + _plural(node.gpus, 'GPU') if node.gpus else ''}): Ray retries the runs it held once, on the "
                         f"nodes left; they resume from their last checkpoint where the nodes share --out, otherwise from "
                         f"what the driver holds")
        for node_id in now.keys() - self.nodes.keys():
            node = now[node_id]
            lines.append(f"node {node.label()} joined ({_plural(node.cpus, 'CPU')}{', ' + _plural(node.gpus, 'GPU') if node.gpus else ''})")
        self.nodes = now
        return lines

    def capacity(self) -> str:
        free = self.ray.available_resources().get("CPU", 0)
        fits = self._fits()
        return f"{_plural(sum(fits), 'slot')} on {_plural(sum(f > 0 for f in fits), 'node')} ({_plural(round(free, 2), 'CPU')} free)"


def ship(run_dir: Path) -> dict[str, bytes] | None:
    """The run files the driver holds for a run it resumes (None when it holds none, or more than a run may send)."""
    names = [n for n in SHIPPED if (run_dir / n).is_file()]
    if not names or sum((run_dir / n).stat().st_size for n in names) > MAX_SHIPPED_BYTES:
        return None
    return {n: (run_dir / n).read_bytes() for n in names}


def bring_back(run_dir: Path, shipped: dict[str, bytes]) -> None:
    """Write a run's returned files into the driver's run folder, each atomically and config.json last (what a rerun
    reads), then remove the run files of an earlier attempt that the run no longer has. Holds the run's lock (RunBusy
    when another process trains into the folder); ValueError for a file the protocol does not know."""
    unknown = sorted(set(shipped) - set(SHIPPED))
    if unknown:
        raise ValueError(f"{run_dir.name}: a worker returned unexpected files {unknown}")
    with hold_run_lock(run_dir, doing="written by the sweep"):
        for name in SHIPPED:
            if name in shipped:
                files.atomic_write_bytes(run_dir / name, shipped[name])
        for name in (*ckpt.RUN_FILES, ERROR):
            if name not in shipped:
                (run_dir / name).unlink(missing_ok=True)

