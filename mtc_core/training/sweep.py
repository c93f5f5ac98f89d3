"""Sweeps (docs/design.md, "Sweeps"): every run of a spec (`sweep_spec`) as a Ray task writing its own run directory.

What only the worker can find out (the dataset is built, the networks meet the images) fails that run alone, with its
traceback in `<run>/error.txt`. Runs are Ray core tasks holding `num_cpus` (and `num_gpus`) resources: the grid
is fixed, with no search or early stopping, and every run already checkpoints and resumes itself (train(...,
resume=True)), so Ray Tune's trial management would only add a second directory layout. A rerun skips the runs
whose config.json says "complete" and resumes the interrupted ones.

`mtc_core.evaluation.sweep_results` turns a sweep folder into the table and the TC-vs-regularisation figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from mtc_core.data.spec import short_repr
from mtc_core.runs import files
from mtc_core.training.sweep_spec import (
    EXECUTION,
    MAX_RUNS,
    MAX_SPEC_BYTES,
    PER_RUN,
    SweepRun,
    count_runs,
    expand,
    format_value,
    load_spec,
    parse_spec,
    select,
)
from mtc_core.training.trainer import TrainConfig, train

# the spec's names are part of this module's interface (the CLI and sweep_results call sweep.expand, ...)
__all__ = ["ERROR", "EXECUTION", "MAX_RUNS", "MAX_SPEC_BYTES", "PER_RUN", "SWEEP", "Outcome", "SweepRun", "check_address",
           "check_sweep_folder", "count_runs",
           "expand", "format_value", "load_spec", "parse_spec", "plan", "run_sweep", "select", "train_one"]

SWEEP, ERROR = "sweep.json", "error.txt"

ADDRESS_TIMEOUT_S = 10.0  # how long a cluster address may take to answer before the sweep gives up


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # complete | skipped (complete earlier) | diverged | failed (an exception)
    message: str = ""
    seconds: float = 0.0  # wall time of the task, 0 for a skipped run

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "skipped")


def _comparable(train_config: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in train_config.items() if k not in EXECUTION}))


def plan(runs: list[SweepRun], out: Path) -> tuple[list[SweepRun], list[Outcome], int]:
    """(runs to train, outcomes of runs already finished, how many of those to train resume a checkpoint).

    A run directory holding a different train config means the spec changed under an old folder: ValueError,
    rather than mixing two sweeps or overwriting work. A diverged run is kept (a retry would diverge again)."""
    todo, finished, resumed, conflicts = [], [], 0, []
    for run in runs:
        path = out / run.name / files.CONFIG
        if not path.is_file():
            todo.append(run)
            continue
        try:
            saved = files.read_json(path)
        except ValueError as e:
            raise ValueError(f"{e}: run directory {run.name} of the sweep holds no readable config; delete it or use another "
                             "output folder") from None
        if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict):
            what = "an object without a train mapping" if isinstance(saved, dict) else f"a JSON {type(saved).__name__}"
            raise ValueError(f"{path}: not a run config ({what}); delete the run directory or use another output folder")
        if _comparable(saved["train"]) != _comparable(dataclasses.asdict(run.config)):
            conflicts.append(run.name)
        elif saved.get("status") == "complete":
            finished.append(Outcome(run.name, "skipped", "complete in an earlier sweep"))
        elif saved.get("status") == "diverged":
            finished.append(Outcome(run.name, "diverged", f"{saved.get('message')} (from an earlier sweep; delete the directory to retry)"))
        else:
            todo.append(run)
            resumed += 1
    if conflicts:
        raise ValueError(f"{len(conflicts)} run directories under {out} hold a different train config ({', '.join(conflicts[:3])}"
                         f"{', ...' if len(conflicts) > 3 else ''}): use another output folder or delete them")
    return todo, finished, resumed


def check_sweep_folder(spec: dict, out: Path) -> None:
    """A sweep folder holds one spec: its sweep.json must record this one (the same spec resumes) or be absent.
    ValueError otherwise: another spec's runs would sit beside this one's and its sweep.json be replaced."""
    file = out / SWEEP
    if not file.is_file():
        return
    try:
        saved = files.read_json(file)
    except ValueError as e:
        raise ValueError(f"{e}; use another --out or delete it") from None
    if not isinstance(saved, dict) or _plain_json(saved.get("spec")) != _plain_json(spec):
        raise ValueError(f"{out} holds another sweep (its {SWEEP} records a different spec): use another --out or delete it")


def _plain_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def train_one(name: str, config: TrainConfig, run_dir: str, threads: int, use_gpu: bool, command: str) -> Outcome:
    """One run, inside a Ray worker. Never raises: a failure is written to error.txt and returned."""
    start, run_dir = time.perf_counter(), Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR).unlink(missing_ok=True)
        torch.set_num_threads(threads)
        if use_gpu:
            config = dataclasses.replace(config, device="cuda")  # Ray points CUDA_VISIBLE_DEVICES at this task's GPUs
        result = train(config, run_dir, command=command, resume=True)
    except Exception as e:
        with contextlib.suppress(OSError):  # a full disk may not take the traceback either; the outcome says it
            (run_dir / ERROR).write_text(traceback.format_exc())
        message = files.error_text(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        return Outcome(name, "failed", message, time.perf_counter() - start)
    return Outcome(name, result.status, result.message, time.perf_counter() - start)


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


_ADDRESS = re.compile(r"(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})")
# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray Client server) answers
# with a SETTINGS frame (9-byte header, type 0x04).
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_address(address: str | None, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Refuse a Ray address that cannot work, before ray.init waits on it: ray.init retries an address where
    nothing answers for ever. ValueError for a malformed address, ConnectionError for one that does not answer.

    None starts a local instance (unless RAY_ADDRESS names a cluster, which is then checked); "auto" is
    resolved as Ray does (the instance `ray start` left on this machine). HOST:PORT (a cluster's GCS) and
    ray://HOST:PORT (Ray Client) must accept a TCP connection and answer an HTTP/2 preface, as gRPC servers
    do, within `timeout` seconds."""
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
        if address is None or address == "local":
            return
    if not isinstance(address, str):
        raise ValueError(f"address must be a string, got {short_repr(address)}")
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:  # a private helper of Ray's: without it ray.init resolves "auto" itself
            return
        address = canonicalize_bootstrap_address_or_die("auto")  # ConnectionError when no instance runs here
    match = _ADDRESS.fullmatch(address)
    if not match or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"Ray address {short_repr(address)}: expected auto, HOST:PORT or ray://HOST:PORT with a port in 1..65535")
    host, port = match["host"].strip("[]"), int(match["port"])
    hint = "is Ray running there (ray start --head)?"
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_HTTP2_HELLO)
            reply = conn.recv(9)
    except socket.gaierror as e:
        raise ConnectionError(f"Ray address {address}: cannot resolve host {host!r} ({e.strerror})") from None
    except TimeoutError:
        raise ConnectionError(f"Ray address {address}: no answer within {timeout:g} s; {hint}") from None
    except OSError as e:
        raise ConnectionError(f"Ray address {address}: {e.strerror or e}; {hint}") from None
    if len(reply) < 4 or reply[3] != 0x04:
        raise ConnectionError(f"Ray address {address}: something listens there but does not speak gRPC (no HTTP/2 answer); "
                              "give the port of the Ray head (ray start prints it; 6379 by default), or ray://HOST:10001")


def run_sweep(spec: dict, out: str | Path, *, address: str | None = None, num_cpus: int | None = None, cpus_per_run: int = 1,
              gpus_per_run: float = 0, only: list[str] | None = None, command: str = "", log=print,
              max_runs: int = MAX_RUNS) -> list[Outcome]:
    """Train every run of `spec` under `out` through Ray; returns one Outcome per run, in finishing order.

    `only`: shell-style patterns on run names (`select`) to train a part of the spec now and the rest by a later
    call into the same folder; sweep.json still records the whole spec. `max_runs`: see `expand`.
    Uses the Ray connection already open in this process, else ray.init(address) (None: a local instance with
    num_cpus CPUs, None: all), after `check_address`. `log` receives the progress lines."""
    import ray

    if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) or cpus_per_run < 1:
        raise ValueError(f"cpus_per_run must be an integer >= 1, got {cpus_per_run!r}")
    if isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, int | float) or not 0 <= gpus_per_run <= 64:
        raise ValueError(f"gpus_per_run must be a number in 0..64, got {gpus_per_run!r}")
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise ValueError(f"num_cpus must be an integer >= 1, got {num_cpus!r}")
    every = expand(spec, max_runs)
    runs = select(every, only)
    out = Path(out).resolve()  # workers do not share the driver's working directory
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; give --out a folder")
    check_sweep_folder(spec, out)
    todo, outcomes, resumed = plan(runs, out)
    if todo and not ray.is_initialized():
        check_address(address)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    expanded = [{"name": r.name, "train": dataclasses.asdict(r.config)} for r in every]
    files.write_json(out / SWEEP, {"spec": spec, "command": command, "runs": expanded})
    part = f" (of {len(every)}, --only {' '.join(only)})" if len(runs) < len(every) else ""
    log(f"sweep: {len(runs)} runs{part} in {out}: {sum(o.status == 'skipped' for o in outcomes)} skipped (complete), "
        f"{len(todo)} to train ({resumed} resumed from a checkpoint)")
    for o in outcomes:
        if not o.ok:
            log(f"  {o.name}: {o.status}: {o.message}")
    start = time.monotonic()
    if todo:
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=address, num_cpus=num_cpus, include_dashboard=False)
            except ConnectionError as e:
                raise ConnectionError(f"{e}. Is Ray running there (ray start --head)? Since Ray 2.59 a cluster joined by its address "
                                      "may need RAY_AUTH_MODE=token and the head's token (README, Sweeps)") from None
        try:
            outcomes += _run_tasks(ray, todo, out, len(runs), outcomes, cpus_per_run, gpus_per_run, command, log)
        finally:
            if started:
                ray.shutdown()
    failed = [o for o in outcomes if not o.ok]
    log(f"sweep finished in {_duration(time.monotonic() - start)}: {len(outcomes) - len(failed)} complete "
        f"({sum(o.status == 'skipped' for o in outcomes)} skipped), {len(failed)} failed")
    for o in failed:
        log(f"  FAILED {o.name}: {o.message}" + (f" (traceback in {out / o.name / ERROR})" if o.status == "failed" else ""))
    return outcomes


def _run_tasks(ray, todo: list[SweepRun], out: Path, total: int, earlier: list[Outcome], cpus: int, gpus: float,
               command: str, log) -> list[Outcome]:
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 0) // cpus)
    if gpus:
        slots = min(slots, int(resources.get("GPU", 0) // gpus))
    if slots < 1:
        raise ValueError(f"a run needs {cpus} CPU(s) and {gpus} GPU(s); the Ray cluster has {resources.get('CPU', 0)} CPUs "
                         f"and {resources.get('GPU', 0)} GPUs")
    # max_retries: a run whose worker or node died is retried once, resuming from its last checkpoint.
    task = ray.remote(train_one).options(num_cpus=cpus, num_gpus=gpus, max_retries=1)
    refs = {task.remote(r.name, r.config, str(out / r.name), cpus, gpus > 0, command): r for r in todo}
    outcomes, seconds = [], []
    while refs:
        [ref], _ = ray.wait(list(refs), num_returns=1)
        run = refs.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as e:  # the worker died: the task could not report it itself
            with contextlib.suppress(OSError):
                (out / run.name).mkdir(exist_ok=True)
                (out / run.name / ERROR).write_text(str(e))
            outcome = Outcome(run.name, "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        outcomes.append(outcome)
        if outcome.status != "failed":
            seconds.append(outcome.seconds)
        running = min(len(refs), slots)  # Ray runs `slots` tasks at a time; the rest wait in its queue
        done, failed = sum(o.ok for o in earlier + outcomes), sum(not o.ok for o in earlier + outcomes)
        eta = f"ETA {_duration(statistics.mean(seconds) * len(refs) / slots)}" if seconds else "ETA after the first run"
        log(f"[{done + failed}/{total}] {outcome.name}: {outcome.status} in {outcome.seconds:.1f} s"
            f"{': ' + outcome.message if not outcome.ok else ''} | {done} done, {running} running, {failed} failed, "
            f"{len(refs) - running} pending, {eta}")
    return outcomes
