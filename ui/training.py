"""Background trainings for the app (DESIGN 2.6); no streamlit here.

A page script is rerun, and interrupted, by every widget interaction, so a training
cannot live inside it. Each training is a `TrainingJob`: a worker thread that runs
`mtc_core.train` in a process of its own (its own interpreter: the app's threads cannot
slow it through the GIL, nor it the pages) and mirrors its progress (step, history
records, end) into the job; Cancel stops it at the next step, and it saves as the CLI
does. The jobs belong to the server process, not to a browser tab: `jobs()` lists every
job this server started, so any session (a reload, a second tab) sees their progress
and can cancel them. At most `MAX_CONCURRENT` jobs (env MTC_MAX_TRAININGS, default 2)
train at once; the rest wait in a FIFO queue and can be cancelled while they wait.

A training process shares the machine's cores with the trainings running beside it: alone it
uses them all (what the CLI does by default), with a second one each gets half, one core less
while the server computes something for a page (ui.background) and the cores other programs kept
busy over the last 2 s (/proc/stat less this server's and its trainings' own CPU time), and the
app tells each process its share ("threads N" on stdin) when that changes and every 2 s, which
it applies between two steps (torch.set_num_threads). Its priority is lowered (nice
`TRAIN_NICE`) so that the pages, which need a core for a fraction of a second now and then,
take it from the training rather than wait. MTC_TRAIN_THREADS fixes the threads instead; a
config with `num_threads` set keeps its own. The process dies with the server. A run
whose process died (config.json still says "running", no job of this server writes it)
is resumed exactly from its last checkpoint by `resume`.

Each run draws its noise from its own seeded generator (mtc_core.train), so two
trainings side by side give the same runs as the same trainings one after another.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtc_core import io
from mtc_core.train import Callback, TrainConfig, train
from ui import background

REPO = Path(__file__).resolve().parent.parent
MAX_CONCURRENT = max(1, int(os.environ.get("MTC_MAX_TRAININGS", "2")))
CORES = os.cpu_count() or 1
# torch threads per training when fixed (env MTC_TRAIN_THREADS); 0: the cores shared by the trainings running at once
# (more threads than cores slow every one of them down)
TRAIN_THREADS = max(0, int(os.environ.get("MTC_TRAIN_THREADS", "0") or 0))
TRAIN_NICE = 5  # a training process's niceness above the server's
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
    label: str  # run directory name suffix
    resume_dir: Path | None = None  # an interrupted run to continue instead of a new directory
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
        """Its threads follow `share()`; False when its config fixes them."""
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
                self.run_dir = self.resume_dir or io.new_run_dir(self.root, self.label)
                command = _stored_command(self.run_dir) if self.resume_dir else cli_command(self.config, self.run_dir)
                outcome = self._follow(command)
            finally:
                _release_slot(self)
                self.state, self.message = outcome  # done only once its slot is free
        except Exception as error:  # the worker must report, never die silently
            self.state, self.message = "failed", f"{type(error).__name__}: {error}"
        finally:
            self.finished = time.time()

    def _follow(self, command: str) -> tuple[str, str]:
        """Run the training in its own process and mirror its events into this job until it ends; (state, message)."""
        request = {"config": dataclasses.asdict(self.config), "run_dir": str(self.run_dir), "command": command,
                   "resume": self.resume_dir is not None}
        # `python -m ui.training`, not multiprocessing: a spawned child would re-run the parent's __main__, which under
        # Streamlit is app.py
        process = subprocess.Popen([sys.executable, "-m", "ui.training"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, bufsize=1, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                       [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        with self._lock:
            self._process = process
        _start_measuring_afresh()
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


def share(running: int | None = None, computing: bool | None = None, others: float | None = None) -> int:
    """Torch threads for each training when `running` trainings (default: those running now) share the cores that
    are free: less one while the server computes something for a page (`computing`, default: ui.background's state),
    less those other programs keep busy (`others`, default: `other_load()`). Torch threads that wait for a preempted
    one lose far more than the core they lack: with a second busy process on 2 cores, 2 threads trained 10-50x
    slower than 1 (bench/RESULTS.md)."""
    if TRAIN_THREADS:
        return TRAIN_THREADS
    if running is None:
        with _cond:
            running = len(_running)
    if computing is None:
        computing = background.computing()
    if others is None:
        others = other_load()
    free = CORES - (1 if computing else 0) - round(others)
    return max(1, free // max(1, running))


_others = 0.0  # cores other programs kept busy over the last REBALANCE_S (measured by _watch_load)


def other_load() -> float:
    """Cores kept busy by other programs over the last REBALANCE_S: the machine's busy CPU time (/proc/stat) less this
    server's and its training processes' own (0 until measured, and where /proc is not there)."""
    return _others


def busy_ticks(stat: str) -> int:
    """Busy CPU time of the whole machine, in clock ticks, from the text of /proc/stat (all but idle and iowait)."""
    fields = [int(v) for v in stat.splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0) - sum(fields[8:])  # guest time is in user


def process_ticks(stat: str) -> int:
    """utime + stime of one process, in clock ticks, from the text of /proc/<pid>/stat."""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": the name may hold spaces
    return int(fields[11]) + int(fields[12])


def _own_pids() -> list[int]:
    with _cond:
        running = list(_running)
    return [os.getpid(), *(j._process.pid for j in running if j._process is not None)]


def _ticks() -> tuple[int, int] | None:
    """(the machine's busy ticks, this server's and its trainings' ticks); None without /proc."""
    try:
        machine = busy_ticks(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    ours = 0
    for pid in _own_pids():
        try:
            ours += process_ticks(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, ValueError, IndexError):
            pass  # a training that just ended
    return machine, ours


def _rebalance() -> None:
    """Tell every running training that shares the cores its share (after a change, and every REBALANCE_S)."""
    with _cond:
        live, running = [j for j in _running if j.shared], len(_running)
    if not live:
        return
    threads = share(running)
    for job in live:
        job._tell(f"threads {threads}")


REBALANCE_S = 2.0


_restart = threading.Event()
_watcher: threading.Thread | None = None


def _start_measuring_afresh() -> None:
    """A training starts: the last period's other load may be a program that has just ended (the CLI run before it, a
    finished sweep), so it starts with every free core and the next period (REBALANCE_S later) corrects that. The
    first training of the server process starts the watcher."""
    global _others, _watcher
    _others = 0.0
    _restart.set()
    with _cond:
        if _watcher is None:
            _watcher = threading.Thread(target=_watch_load, name="mtc-train-share", daemon=True)
            _watcher.start()


def _watch_load() -> None:
    """Every REBALANCE_S while trainings run: measure the cores other programs kept busy, and give the trainings their
    new share. With none running it waits for the next one to start."""
    global _others
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    last, then = None, time.monotonic()
    while True:
        with _cond:
            idle = not _running
        # idle: asleep until a training starts; else one period, cut short when a training starts (a new period then)
        if _restart.wait(None if idle else REBALANCE_S):
            _restart.clear()
            last, then = _ticks(), time.monotonic()
            continue
        now, at = _ticks(), time.monotonic()
        if now is not None and last is not None:
            # a training that ended since `last` takes its ticks with it: the difference then counts them as others',
            # for one period at most
            _others = max(0.0, ((now[0] - last[0]) - (now[1] - last[1])) / hz / (at - then))
        last, then = now, at
        _rebalance()


background.listeners.append(_rebalance)


class _ProcessCallback(Callback):
    """Inside the training process: progress to the app's job as JSON lines on stdout (steps at most every 0.2 s)."""

    def __init__(self, threads: list[int] | None = None):
        self.last = 0.0
        self.threads = threads if threads is not None else [0]  # [wanted]: set by the stdin listener, 0: keep

    def apply_threads(self) -> None:
        wanted, self.threads[0] = self.threads[0], 0
        if wanted and wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
        if wanted:
            self.say("threads", torch.get_num_threads())

    @staticmethod
    def say(kind: str, payload: Any) -> None:
        print(json.dumps([kind, payload]), flush=True)

    def on_start(self, *, run_dir, config, start_step):
        self.say("start", start_step)
        self.say("threads", torch.get_num_threads())
        self.apply_threads()

    def on_step(self, *, step, logs):
        if self.threads[0]:
            self.apply_threads()
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.say("step", step)
            self.last = now

    def on_eval(self, *, step, record):
        self.say("eval", record)

    def on_end(self, *, status, message, step, run_dir):
        self.say("end", (step, message, status))


def _train_process() -> None:
    """`python -m ui.training`: the training process. Reads its request (one JSON line) from stdin, trains with
    mtc_core.train, reports on stdout, stops on a "cancel" line. It dies with the app (Linux PR_SET_PDEATHSIG),
    leaving its run as a killed process leaves it: running, to resume from its last checkpoint."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except OSError:
        pass
    try:
        os.nice(TRAIN_NICE)
    except OSError:
        pass
    request = json.loads(sys.stdin.readline())
    cancel = threading.Event()
    threads = [0]

    def listen() -> None:
        for line in sys.stdin:
            words = line.split()
            if words == ["cancel"]:
                cancel.set()
            elif len(words) == 2 and words[0] == "threads" and words[1].isdigit() and int(words[1]) > 0:
                threads[0] = int(words[1])  # applied by the callback between two steps

    threading.Thread(target=listen, daemon=True).start()
    try:
        train(TrainConfig.from_dict(request["config"]), request["run_dir"], callbacks=[_ProcessCallback(threads)], cancel=cancel,
              command=request["command"], resume=request["resume"])
    except Exception as error:  # reported to the app's job; the process then ends
        _ProcessCallback.say("error", f"{type(error).__name__}: {error}")


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


def submit(config: TrainConfig, root: str | Path, label: str) -> TrainingJob:
    """Queue a training into a new run directory under root and start its worker thread; returns at once.
    Without an explicit `num_threads` the training shares the cores with those running beside it (`share`)."""
    return _start(TrainingJob(config=config, root=Path(root), label=label))


def resume(run_dir: str | Path) -> TrainingJob:
    """Queue the continuation of an interrupted run from its last checkpoint (mtc_core.train with resume=True: exact,
    or the job fails with the trainer's reason). ValueError when the run is being trained by this server already or
    its config.json holds no training config."""
    run_dir = Path(run_dir)
    if is_training(run_dir) or any(j.resume_dir == run_dir and not j.done for j in jobs()):
        raise ValueError(f"{run_dir.name} is already training on this server")
    config = io.read_run_config(run_dir)
    if not isinstance(config.get("train"), dict):
        raise ValueError(f"{run_dir / io.CONFIG}: no training config to resume with")
    train_config = TrainConfig.from_dict(config["train"])
    return _start(TrainingJob(config=train_config, root=run_dir.parent, label=run_dir.name, resume_dir=run_dir))


def _stored_command(run_dir: Path) -> str:
    try:
        command = io.read_json(run_dir / io.CONFIG).get("command")
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
    for f in dataclasses.fields(config):
        if f.name not in ("model_params", "dataset"):
            args += [f"--{f.name.replace('_', '-')}", str(getattr(config, f.name))]
    for key, value in config.model_params.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return "python -m mtc_core train " + shlex.join(args)


if __name__ == "__main__":
    _train_process()
