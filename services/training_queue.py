"""The app's queue of trainings (no streamlit here; docs/design.md, "Live training").

A page script is rerun, and interrupted, by every widget interaction, so a training cannot live inside it. Each
training is a `TrainingJob`: a thread of the server that starts `mtc_core.training.worker` in a process of its own (its
own interpreter: the app's threads cannot slow it through the GIL, nor it the pages) and mirrors its progress (step,
history records, end) into the job; Cancel stops it at the next step, and it saves as the CLI does. The jobs belong
to the server process, not to a browser tab: `jobs()` lists every job this server started, so any session (a reload,
a second tab) sees their progress and can cancel them. At most `MAX_CONCURRENT` jobs (env MTC_MAX_TRAININGS,
default 2) train at once; the rest wait in a FIFO queue and can be cancelled while they wait.

The processes share the cores as services.core_share decides; each is told its share ("threads N" on its stdin) when
that changes, and a config with `num_threads` set keeps its own. A run whose process died (config.json still says
"running", no job of this server writes it) is resumed exactly from its last checkpoint by `resume`. Each run draws
its noise from its own seeded generator (mtc_core.training.trainer), so two trainings side by side give the same runs
as the same trainings one after another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtc_core import runs
from mtc_core.models import MODELS
from mtc_core.training.sweep_spec import format_value
from mtc_core.training.trainer import TrainConfig, without_defaults
from services import background, core_share

REPO = Path(__file__).resolve().parent.parent
MAX_CONCURRENT = max(1, int(os.environ.get("MTC_MAX_TRAININGS", "2")))
DONE = ("complete", "cancelled", "diverged", "failed")

_cond = threading.Condition()
_waiting: list[TrainingJob] = []  # queued jobs, first come first served
_running: set[TrainingJob] = set()
_jobs: list[TrainingJob] = []  # every job this server process started, oldest first


@dataclass
class Progress:
    """A consistent snapshot of a job, for drawing."""

    state: str  # queued | running | complete | cancelled | diverged | failed
    step: int
    total: int
    history: list[dict]
    message: str
    run_dir: Path | None
    queue_position: int | None  # 1-based while queued
    seconds: float
    steps_per_s: float | None  # since this job started training (a resumed run counts from its checkpoint)


@dataclass(eq=False)
class TrainingJob:
    config: TrainConfig
    root: Path  # run directories are created under it
    label: str | None  # run directory name suffix after a time stamp; None: `run_name` with a time suffix
    resume_dir: Path | None = None  # an interrupted run to continue instead of a new directory
    owner: str | None = None  # who started it: a session's owner id (the Train page keeps it in its address)
    announced: bool = False  # its run was put into its owner's model picker (once, whichever of the owner's tabs did)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "queued"
    step: int = 0
    start_step: int = 0
    message: str = ""
    run_dir: Path | None = None
    history: list[dict] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    threads: int = 0  # torch threads the training process uses now (0 until it says)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def shared(self) -> bool:
        """Its threads follow `core_share.share()`; False when its config fixes them."""
        return not self.config.num_threads

    @property
    def done(self) -> bool:
        return self.state in DONE

    @property
    def title(self) -> str:
        return f"{self.config.model} on {self.config.dataset.get('name')}" + (" (resumed)" if self.resume_dir else "")

    def progress(self) -> Progress:
        with self._lock:
            history = list(self.history)
        end = self.finished or time.time()
        seconds = end - self.started if self.started else 0.0
        speed = (self.step - self.start_step) / seconds if seconds > 0 and self.step > self.start_step else None
        return Progress(self.state, self.step, self.config.steps, history, self.message, self.run_dir,
                        queue_position(self), seconds, speed)

    def _record(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.history.append(record)

    def _work(self) -> None:
        try:
            if not _wait_for_slot(self):
                self.state, self.message = "cancelled", "cancelled while queued; nothing was trained"
                return
            outcome = ("failed", "the training did not start")
            try:
                self.started, self.state = time.time(), "running"
                self.run_dir = self.resume_dir or (runs.new_run_dir(self.root, self.label) if self.label is not None
                                                   else named_run_dir(self.root, run_name(self.config)))
                command = _stored_command(self.run_dir) if self.resume_dir else cli_command(self.config, self.run_dir)
                outcome = self._follow(command)
            finally:
                _release_slot(self)
                if outcome[0] == "failed" and self.resume_dir is None and self.run_dir is not None:
                    with contextlib.suppress(OSError):  # the folder new_run_dir made, when the training kept nothing in it
                        self.run_dir.rmdir()
                self.state, self.message = outcome  # done only once its slot is free
        except Exception as error:  # the worker must report, never die silently
            self.state, self.message = "failed", f"{type(error).__name__}: {error}"
        finally:
            self.finished = time.time()

    def _follow(self, command: str) -> tuple[str, str]:
        """Run the training in its own process and mirror its events into this job until it ends; (state, message)."""
        request = {"config": dataclasses.asdict(self.config), "run_dir": str(self.run_dir), "command": command,
                   "resume": self.resume_dir is not None}
        # `python -m mtc_core.training.worker`, not multiprocessing: a spawned child would re-run the parent's __main__,
        # which under Streamlit is app.py
        process = subprocess.Popen([sys.executable, "-m", "mtc_core.training.worker"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, bufsize=1, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                       [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        with self._lock:
            self._process = process
        core_share.start_measuring_afresh()
        _rebalance()
        threading.Thread(target=_forward_cancel, args=(self, process), daemon=True).start()
        outcome = None
        for line in process.stdout:
            kind, payload = json.loads(line)
            if kind == "start":
                self.step = self.start_step = payload
                self.started = time.time()  # the speed counts training steps, not loading or resuming
            elif kind == "step":
                self.step = payload
            elif kind == "eval":
                self._record(payload)
            elif kind == "threads":
                self.threads = payload
            elif kind == "end":
                self.step, message, state = payload
                outcome = (state, message)
            else:  # "error"
                outcome = ("failed", payload)
        process.wait()
        with self._lock:
            self._process = None
        return outcome or ("failed", f"the training process ended without a word (exit code {process.returncode})")

    def _tell(self, line: str) -> None:
        """A line to the training process's stdin (lost if it has ended)."""
        with self._lock:
            if self._process is None:
                return
            try:
                self._process.stdin.write(line + "\n")
                self._process.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass


def _forward_cancel(job: TrainingJob, process: subprocess.Popen) -> None:
    """Tell the training process when the job is cancelled (it stops at the next step and saves)."""
    while process.poll() is None:
        if job.cancel.wait(timeout=0.2):
            job._tell("cancel")
            return


def _rebalance() -> None:
    """Tell every running training that shares the cores its share (after a change, and every REBALANCE_S)."""
    with _cond:
        live, running = [j for j in _running if j.shared], len(_running)
    if not live:
        return
    threads = core_share.share(running)
    for job in live:
        job._tell(f"threads {threads}")


def _training_pids() -> list[int]:
    with _cond:
        running = list(_running)
    return [j._process.pid for j in running if j._process is not None]


core_share.follow(_training_pids, _rebalance)
background.listeners.append(_rebalance)


def _wait_for_slot(job: TrainingJob) -> bool:
    """Block until the job is first in the queue and a slot is free (True), or it is cancelled (False)."""
    with _cond:
        while True:
            if job.cancel.is_set():
                _waiting.remove(job)
                _cond.notify_all()
                return False
            if _waiting[0] is job and len(_running) < MAX_CONCURRENT:
                _waiting.pop(0)
                _running.add(job)
                _cond.notify_all()
                return True  # the others are told their new share once this one's process has started
            _cond.wait(timeout=0.2)


def _release_slot(job: TrainingJob) -> None:
    with _cond:
        _running.discard(job)
        _cond.notify_all()
    _rebalance()


def _start(job: TrainingJob) -> TrainingJob:
    with _cond:
        _waiting.append(job)
        _jobs.append(job)
    threading.Thread(target=job._work, name=f"mtc-train-{job.id}", daemon=True).start()
    return job


def submit(config: TrainConfig, root: str | Path, label: str | None = None, owner: str | None = None) -> TrainingJob:
    """Queue a training into a new run directory under root and start its worker thread; returns at once. The
    directory is named `<time>-<label>`, or without a label `run_name(config)` and a time suffix. Without an explicit
    `num_threads` the training shares the cores with those running beside it (`share`)."""
    return _start(TrainingJob(config=config, root=Path(root), label=label, owner=owner))


def run_name(config: TrainConfig) -> str:
    """What a run is, as a directory name: model, its regularisation strength (the model's `swept_field`, e.g.
    beta=6), dataset and seed, in the form of a sweep's run names: beta_tcvae-beta=6-toy-seed=0."""
    cls = MODELS.get(config.model)
    parts = [config.model]
    field_name = getattr(cls, "swept_field", None)
    if field_name:
        value = config.model_params.get(field_name)
        if value is None:  # not given: the config's default
            value = next((f.default for f in dataclasses.fields(cls.Config) if f.name == field_name), None)
        parts.append(f"{field_name}={format_value(value)}")
    parts += [format_value(config.dataset.get("name")), f"seed={config.seed}"]
    return "-".join(parts)


def named_run_dir(root: Path, name: str) -> Path:
    """A fresh directory `<name>-<HHMMSS>` under root (`-2`, `-3`... after it when taken): unique, and made at once,
    so that two trainings asking at the same second get different ones."""
    return runs.unique_dir(root, f"{name}-{time.strftime('%H%M%S')}")


def owned(owner: str | None) -> list[TrainingJob]:
    """The jobs started with this owner id, oldest first (none for None)."""
    return [j for j in jobs() if owner is not None and j.owner == owner]


def resume(run_dir: str | Path, owner: str | None = None) -> TrainingJob:
    """Queue the continuation of an interrupted run from its last checkpoint (mtc_core.training.trainer with resume=True: exact,
    or the job fails with the trainer's reason). ValueError when the run is being trained by this server already or
    its config.json holds no training config."""
    run_dir = Path(run_dir)
    if is_training(run_dir) or any(j.resume_dir == run_dir and not j.done for j in jobs()):
        raise ValueError(f"{run_dir.name} is already training on this server")
    runs.refuse_if_busy(run_dir)  # trained by another process: a terminal's `train`, a sweep, another app server
    config = runs.read_run_config(run_dir)
    if not isinstance(config.get("train"), dict):
        raise ValueError(f"{run_dir / runs.CONFIG}: no training config to resume with")
    train_config = TrainConfig.from_dict(config["train"])
    return _start(TrainingJob(config=train_config, root=run_dir.parent, label=run_dir.name, resume_dir=run_dir, owner=owner))


def _stored_command(run_dir: Path) -> str:
    try:
        command = runs.read_json(run_dir / runs.CONFIG).get("command")
    except (ValueError, OSError, AttributeError):
        command = None
    return command if isinstance(command, str) else ""


def jobs() -> list[TrainingJob]:
    """Every job this server process started (all sessions), oldest first."""
    with _cond:
        return list(_jobs)


def find(job_id: str) -> TrainingJob | None:
    return next((j for j in jobs() if j.id == job_id), None)


def queue_position(job: TrainingJob) -> int | None:
    with _cond:
        return _waiting.index(job) + 1 if job in _waiting else None


def server_load() -> tuple[int, int]:
    """(trainings running, trainings queued) on this server, all sessions together."""
    with _cond:
        return len(_running), len(_waiting)


def is_training(run_dir: str | Path) -> bool:
    """Whether a live job on this server is writing into run_dir (or is queued to resume it)."""
    target = Path(run_dir).resolve()
    with _cond:
        live = [j for j in _jobs if not j.done]
    return any((j.run_dir or j.resume_dir) is not None and Path(j.run_dir or j.resume_dir).resolve() == target for j in live)


def cli_command(config: TrainConfig, run_dir: Path) -> str:
    """The equivalent `python -m mtc_core train` command line, stored in config.json."""
    args = ["--out", str(run_dir), "--dataset", json.dumps(config.dataset)]
    fields = without_defaults({f.name: getattr(config, f.name) for f in dataclasses.fields(config)})  # speed options when on
    for name, value in fields.items():
        if name not in ("model_params", "dataset"):
            args += [f"--{name.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    for key, value in config.model_params.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return "python -m mtc_core train " + shlex.join(args)

