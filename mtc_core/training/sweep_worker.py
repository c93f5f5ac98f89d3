"""One sweep run inside a Ray worker (docs/design.md, "Sweeps"): where it trains, how its files reach the driver, and
how it stops when the driver is gone.

**Where it trains.** The driver puts a token file in its `--out` (`TOKEN`). A worker that reads the same token there
shares the driver's file system and trains in place, `<out>/<run>`. Otherwise (a cluster whose nodes do not share a
disk), or when its node sets `MTC_SWEEP_RUN_ROOT` (a node-local scratch folder), it trains under that root (default:
the system's temporary folder) and returns the run's files as bytes through Ray's object store: config.json,
history.jsonl, model.safetensors, metrics.json, error.txt, and the checkpoint unless the run is complete, at most
`MAX_SHIPPED_BYTES`. The driver writes them atomically into its own `--out` (`sweep_cluster.bring_back`), so a rerun
skips the run there; the worker's scratch copy is removed once read. A run the driver resumes comes with the files the
driver holds (its checkpoint), so it resumes on any node.

**When the driver is gone.** Ray's processes on the driver's machine die with the driver and the raylet kills the
workers of a finished job, but a worker in the middle of a step would still write its next checkpoint. `DriverWatch`
checks at every step that the worker's parent (its raylet) is the one it started under and, at most every
`WATCH_EVERY_S` seconds, on the driver's machine, that the driver process is alive; when either is gone it ends the process at once,
before its next write (the checkpoint already on disk stays whole: every write is atomic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from mtc_core.runs import checkpoint as ckpt
from mtc_core.runs import files
from mtc_core.training.sweep_reaper import process_start
from mtc_core.training.trainer import Callback, TrainConfig, train

ERROR, TOKEN = "error.txt", ".sweep-token"
RUN_ROOT_ENV = "MTC_SWEEP_RUN_ROOT"  # a node's own folder for the runs it trains (its disk is not the driver's)
SHIPPED = (files.HISTORY, ckpt.CHECKPOINT, files.WEIGHTS, files.METRICS, ERROR, files.CONFIG)  # the driver's writing order
MAX_SHIPPED_BYTES = 512 * 2**20  # one run's files through the object store; a bigger run needs a shared folder
WATCH_EVERY_S = 0.5
DRIVER_GONE_EXIT = 75  # the worker's exit status when it stops because the driver is gone


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # complete | skipped (complete earlier) | diverged | failed (an exception)
    message: str = ""
    seconds: float = 0.0  # wall time of the task's last attempt, 0 for a skipped run
    attempt: int = 1  # Ray's attempt that reported it (2: retried after its worker or node died)
    resumed_from: int | None = None  # the checkpoint step this attempt started from
    node: str = ""  # the host that trained it
    files: dict[str, bytes] | None = None  # the run's files when it trained away from the driver's folder

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "skipped")


def _machine() -> str:
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{socket.gethostname()}/{boot}"


def driver_identity() -> dict:
    """What a worker needs to tell whether the driver (this process) still runs."""
    return {"machine": _machine(), "pid": os.getpid(), "start": process_start(os.getpid())}


class DriverWatch(Callback):
    """Ends the worker process, without writing anything more, once its driver is gone (see the module docstring)."""

    def __init__(self, driver: dict | None):
        self.parent, self.parent_start = os.getppid(), process_start(os.getppid())
        self.driver = driver if driver and driver.get("machine") == _machine() and driver.get("start") is not None else None
        self.checked = time.monotonic()

    def gone(self, thorough: bool) -> str | None:
        """Why the driver counts as gone, or None. The parent's pid is compared at every call (a system call); its start
        time and the driver's process, which read /proc, only when `thorough`."""
        if os.getppid() != self.parent or (thorough and process_start(self.parent) != self.parent_start):
            return "its Ray raylet is gone"
        if thorough and self.driver and process_start(self.driver["pid"]) != self.driver["start"]:
            return f"the sweep's driver (pid {self.driver['pid']}) is gone"
        return None

    def check(self, force: bool = False) -> None:
        thorough = force or time.monotonic() - self.checked >= WATCH_EVERY_S
        if thorough:
            self.checked = time.monotonic()
        if reason := self.gone(thorough):
            with contextlib.suppress(OSError):
                os.write(2, f"mtc sweep worker {os.getpid()}: {reason}; stopping before the next write\n".encode())
            os._exit(DRIVER_GONE_EXIT)

    def on_step(self, *, step, logs):
        self.check()

    def on_eval(self, *, step, record):
        self.check(force=True)  # a record is followed by writes at a checkpoint step


def _attempt() -> int:
    try:  # Ray's own count of this task's attempts (0 first); private, hence guarded
        from ray._private.worker import global_worker

        return int(global_worker.core_worker.get_current_task_attempt_number()) + 1
    except Exception:
        return 1


def _shares_driver_folder(out: Path, token: str) -> bool:
    if os.environ.get(RUN_ROOT_ENV):
        return False
    try:
        return (out / TOKEN).read_text() == token
    except (OSError, UnicodeDecodeError):
        return False


def local_run_dir(token: str, name: str) -> Path:
    return Path(os.environ.get(RUN_ROOT_ENV) or Path(tempfile.gettempdir()) / "mtc-sweep-runs") / token / name


def _materialise(run_dir: Path, shipped: dict[str, bytes] | None) -> None:
    """The node-local folder holds exactly the files the driver sent (none: a fresh start)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    for name, data in (shipped or {}).items():
        if name not in SHIPPED:
            raise ValueError(f"the driver sent an unexpected file {name!r}")
        files.atomic_write_bytes(run_dir / name, data)


def collect(run_dir: Path, status: str) -> dict[str, bytes]:
    """The run's files to send back (the checkpoint only when the run may resume); ValueError when over the bound."""
    names = [n for n in SHIPPED if (run_dir / n).is_file() and not (n == ckpt.CHECKPOINT and status == "complete")]
    size = sum((run_dir / n).stat().st_size for n in names)
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(f"the run's files take {size / 2**20:.0f} MB, more than the {MAX_SHIPPED_BYTES // 2**20} MB a run sends "
                         f"back through Ray's object store; give the nodes a shared --out folder")
    return {n: (run_dir / n).read_bytes() for n in names}


def _resumed_from(run_dir: Path) -> int | None:
    if not ckpt.has_checkpoint(run_dir):
        return None
    with contextlib.suppress(OSError, ValueError):
        step = files.read_json(run_dir / files.CONFIG).get("step")
        return step if isinstance(step, int) else None
    return None


def train_one(name: str, config: TrainConfig, out: str, threads: int, use_gpu: bool, command: str, token: str = "",
              driver: dict | None = None, shipped: dict[str, bytes] | None = None) -> Outcome:
    """One run, inside a Ray worker. Never raises: a failure is written to error.txt and returned."""
    start, watch = time.perf_counter(), DriverWatch(driver)
    watch.check(force=True)
    shared = _shares_driver_folder(Path(out), token) or not token
    run_dir = Path(out) / name if shared else local_run_dir(token, name)
    status, message, resumed = "failed", "", None
    try:
        if shared:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR).unlink(missing_ok=True)
        else:
            _materialise(run_dir, shipped)
        resumed = _resumed_from(run_dir)
        torch.set_num_threads(threads)
        if use_gpu:
            config = dataclasses.replace(config, device="cuda")  # Ray points CUDA_VISIBLE_DEVICES at this task's GPUs
        result = train(config, run_dir, command=command, resume=True, callbacks=[watch])
        status, message = result.status, result.message
    except Exception as e:
        with contextlib.suppress(OSError):  # a full disk may not take the traceback either; the outcome says it
            (run_dir / ERROR).write_text(traceback.format_exc())
        message = files.error_text(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
    outcome = Outcome(name, status, message, time.perf_counter() - start, _attempt(), resumed, socket.gethostname())
    if shared:
        return outcome
    try:
        shipped_back = collect(run_dir, status)
    except (OSError, ValueError) as e:
        return dataclasses.replace(outcome, status="failed", message=f"{outcome.message + '; ' if outcome.message else ''}"
                                   f"kept on {outcome.node} in {run_dir}: {files.error_text(e) if isinstance(e, OSError) else e}")
    with contextlib.suppress(OSError):
        shutil.rmtree(run_dir)
        run_dir.parent.rmdir()  # the sweep's scratch folder, once its last run has gone home
    return dataclasses.replace(outcome, files=shipped_back)
