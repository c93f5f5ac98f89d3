"""Background trainings for the app (DESIGN 2.6); no streamlit here.

A page script is rerun, and interrupted, by every widget interaction, so a training
cannot live inside it. Each training is a `TrainingJob`: a worker thread with its own
run directory, a cancel Event and progress state filled by a trainer `Callback`. The
session that started a job keeps a reference to it; the page only reads its progress.
At most `MAX_CONCURRENT` jobs (env MTC_MAX_TRAININGS, default 2) train at once per
server process; the rest wait in a FIFO queue and can be cancelled while they wait.

Each run draws its noise from its own seeded generator (mtc_core.train), so two
trainings side by side give the same runs as the same trainings one after another.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtc_core import io
from mtc_core.train import Callback, TrainConfig, train

MAX_CONCURRENT = max(1, int(os.environ.get("MTC_MAX_TRAININGS", "2")))
DONE = ("complete", "cancelled", "diverged", "failed")

_cond = threading.Condition()
_waiting: list[TrainingJob] = []  # queued jobs, first come first served
_running: set[TrainingJob] = set()


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


@dataclass(eq=False)
class TrainingJob:
    config: TrainConfig
    root: Path  # run directories are created under it
    label: str  # run directory name suffix
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "queued"
    step: int = 0
    message: str = ""
    run_dir: Path | None = None
    history: list[dict] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> bool:
        return self.state in DONE

    def progress(self) -> Progress:
        with self._lock:
            history = list(self.history)
        end = self.finished or time.time()
        return Progress(self.state, self.step, self.config.steps, history, self.message, self.run_dir,
                        queue_position(self), end - self.started if self.started else 0.0)

    def _record(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.history.append(record)

    def _work(self) -> None:
        try:
            if not _wait_for_slot(self):
                self.state, self.message = "cancelled", "cancelled while queued; nothing was trained"
                return
            try:
                self.started, self.state = time.time(), "running"
                self.run_dir = io.new_run_dir(self.root, self.label)
                train(self.config, self.run_dir, callbacks=[_JobCallback(self)], cancel=self.cancel,
                      command=cli_command(self.config, self.run_dir))
            finally:
                _release_slot(self)
        except Exception as error:  # the worker must report, never die silently
            self.state, self.message = "failed", f"{type(error).__name__}: {error}"
        finally:
            self.finished = time.time()


class _JobCallback(Callback):
    def __init__(self, job: TrainingJob):
        self.job = job

    def on_step(self, *, step, logs):
        self.job.step = step

    def on_eval(self, *, step, record):
        self.job._record(record)

    def on_end(self, *, status, message, step, run_dir):
        self.job.step, self.job.message, self.job.state = step, message, status


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
                return True
            _cond.wait(timeout=0.2)


def _release_slot(job: TrainingJob) -> None:
    with _cond:
        _running.discard(job)
        _cond.notify_all()


def submit(config: TrainConfig, root: str | Path, label: str) -> TrainingJob:
    """Queue a training and start its worker thread; returns at once."""
    job = TrainingJob(config=config, root=Path(root), label=label)
    with _cond:
        _waiting.append(job)
    threading.Thread(target=job._work, name=f"mtc-train-{job.id}", daemon=True).start()
    return job


def queue_position(job: TrainingJob) -> int | None:
    with _cond:
        return _waiting.index(job) + 1 if job in _waiting else None


def server_load() -> tuple[int, int]:
    """(trainings running, trainings queued) on this server, all sessions together."""
    with _cond:
        return len(_running), len(_waiting)


def is_training(run_dir: str | Path) -> bool:
    """Whether a live job on this server is writing into run_dir."""
    target = Path(run_dir).resolve()
    with _cond:
        return any(j.run_dir is not None and j.run_dir.resolve() == target for j in _running)


def cli_command(config: TrainConfig, run_dir: Path) -> str:
    """The equivalent `python -m mtc_core train` command line, stored in config.json."""
    args = ["--out", str(run_dir), "--dataset", json.dumps(config.dataset)]
    for f in dataclasses.fields(config):
        if f.name not in ("model_params", "dataset"):
            args += [f"--{f.name.replace('_', '-')}", str(getattr(config, f.name))]
    for key, value in config.model_params.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return "python -m mtc_core train " + shlex.join(args)
