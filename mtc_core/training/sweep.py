"""Sweeps (docs/design.md, "Sweeps"): every run of a spec (`sweep_spec`) as a Ray task writing its own run directory.

What only the worker can find out (the dataset is built, the networks meet the images) fails that run alone, with its
traceback in `<run>/error.txt`. Runs are Ray core tasks holding `num_cpus` (and `num_gpus`) resources: the grid
is fixed, with no search or early stopping, and every run already checkpoints and resumes itself (train(...,
resume=True)), so Ray Tune's trial management would only add a second directory layout. A rerun skips the runs
whose config.json says "complete" and resumes the interrupted ones.

On a cluster (`sweep_worker`, `sweep_cluster`): a run trained on a disk that is not the driver's comes home through
Ray's object store; the progress lines follow the nodes alive (lost and joined nodes, runs retried after a lost
worker or node, the slots left); SIGTERM, SIGHUP and SIGINT cancel the runs and shut down the Ray instance the sweep
started, and a worker whose driver is gone stops before its next write.

`mtc_core.evaluation.sweep_results` turns a sweep folder into the table and the TC-vs-regularisation figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import socket
import statistics
import time
from pathlib import Path

from mtc_core.data.spec import short_repr
from mtc_core.runs import files
from mtc_core.training.sweep_cluster import ClusterView, bring_back, ending_on_signals, ray_errors_in_one_line, ship
from mtc_core.training.sweep_reaper import Reaper, descendants, end_processes, started_since
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
from mtc_core.training.sweep_worker import ERROR, TOKEN, Outcome, driver_identity, train_one
from mtc_core.training.trainer import without_defaults

# the spec's names are part of this module's interface (the CLI and sweep_results call sweep.expand, ...)
__all__ = ["ERROR", "EXECUTION", "MAX_RUNS", "MAX_SPEC_BYTES", "PER_RUN", "SWEEP", "Outcome", "SweepRun", "check_address",
           "check_sweep_folder", "count_runs",
           "expand", "format_value", "load_spec", "parse_spec", "plan", "run_sweep", "select", "train_one"]

SWEEP = "sweep.json"

ADDRESS_TIMEOUT_S = 10.0  # how long a cluster address may take to answer before the sweep gives up
WAIT_S = 5.0  # longest wait between two looks at the cluster (lost nodes are reported within it)
LOSS_GRACE_S = 10.0  # how long a retried run's line waits for Ray to name the node it lost (`_await_loss`)


def _comparable(train_config: dict) -> dict:
    """What must match between a run directory's train settings and the spec's: all but EXECUTION, the speed options
    at their defaults left out (config.json names them only when on)."""
    return json.loads(json.dumps({k: v for k, v in without_defaults(train_config).items() if k not in EXECUTION}))


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
        outcomes += _train(ray, todo, out, len(runs), outcomes, address, num_cpus, cpus_per_run, gpus_per_run, command, log)
    failed = [o for o in outcomes if not o.ok]
    retried = sum(o.attempt > 1 for o in outcomes)
    log(f"sweep finished in {_duration(time.monotonic() - start)}: {len(outcomes) - len(failed)} complete "
        f"({sum(o.status == 'skipped' for o in outcomes)} skipped), {len(failed)} failed"
        f"{f', {retried} retried after a lost worker or node' if retried else ''}")
    for o in failed:
        log(f"  FAILED {o.name}: {o.message}" + (f" (traceback in {out / o.name / ERROR})" if o.status == "failed" else ""))
    return outcomes


def _train(ray, todo: list[SweepRun], out: Path, total: int, earlier: list[Outcome], address: str | None, num_cpus: int | None,
           cpus: int, gpus: float, command: str, log) -> list[Outcome]:
    """Start or join Ray, run the tasks, and end what the sweep started however it ends (a signal included)."""
    token = secrets.token_hex(8)  # a worker that reads it in --out shares the driver's disk (sweep_worker)
    files.atomic_write_bytes(out / TOKEN, token.encode())
    started, ours, before, reaper = not ray.is_initialized(), {}, {}, None
    try:
        if started:
            reaper = Reaper()  # before the snapshot: it is not one of Ray's processes
            before = descendants(depth=1)
            try:  # Ray's own log lines (a dead raylet's state dump) stay in its log files; the sweep says what happened
                ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            except ConnectionError as e:
                raise ConnectionError(f"{e}. Is Ray running there (ray start --head)? Since Ray 2.59 a cluster joined by its "
                                      "address may need RAY_AUTH_MODE=token and the head's token (README, Sweeps)") from None
            ours = started_since(before)  # the local instance ray.init started (none when it joined a cluster)
            reaper.watch(ours)  # a SIGKILLed driver cannot end them itself
        with ending_on_signals(), ray_errors_in_one_line(log):  # after ray.init, which installs its own SIGTERM handlers
            return _run_tasks(ray, todo, out, total, earlier, cpus, gpus, command, token, log)
    finally:
        with ending_on_signals(ignore=True):  # a second signal must not break the cleanup
            if started and ray.is_initialized():
                if ours:
                    ours.update(started_since(before))  # its workers too
                ray.shutdown()
                if left := end_processes(ours, grace=0.5):  # ray.shutdown already asked them to stop
                    log(f"sweep: Ray processes {sorted(left)} did not end; stop them by hand")
            if reaper is not None:
                reaper.close()
            (out / TOKEN).unlink(missing_ok=True)


def _result(ray, ref, run: SweepRun, out: Path) -> Outcome:
    """The task's outcome, its files brought home when it trained on another disk."""
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayError as e:  # the worker died twice (Ray's retry included): the task could not report it
        with contextlib.suppress(OSError):
            (out / run.name).mkdir(exist_ok=True)
            (out / run.name / ERROR).write_text(str(e))
        first = str(e).splitlines()[0] if str(e) else ""
        return Outcome(run.name, "failed", f"its worker or node died and so did Ray's retry ({type(e).__name__}: {first})", attempt=2)
    if outcome.files is None:
        return outcome
    try:
        bring_back(out / run.name, outcome.files)
    except (OSError, ValueError) as e:
        return dataclasses.replace(outcome, files=None, status="failed", message=f"trained on {outcome.node} but could not be "
                                   f"written into {out / run.name}: {files.error_text(e) if isinstance(e, OSError) else e}")
    return dataclasses.replace(outcome, files=None)


def _how(outcome: Outcome, many_nodes: bool) -> str:
    notes = []
    if outcome.attempt > 1:
        notes.append(f"attempt {outcome.attempt}: retried after its worker or node was lost")
    if outcome.resumed_from is not None:
        notes.append(f"resumed from step {outcome.resumed_from}")
    elif outcome.attempt > 1:
        notes.append("from step 0: no checkpoint of it was at hand")
    if many_nodes and outcome.node:
        notes.append(f"on {outcome.node}")
    return f" ({'; '.join(notes)})" if notes else ""


def _run_tasks(ray, todo: list[SweepRun], out: Path, total: int, earlier: list[Outcome], cpus: int, gpus: float,
               command: str, token: str, log) -> list[Outcome]:
    view = ClusterView(ray, cpus, gpus)
    if view.slots() < 1:
        resources = ray.cluster_resources()
        raise ValueError(f"a run needs {cpus} CPU(s) and {gpus} GPU(s) on one node; the Ray cluster has {resources.get('CPU', 0)} "
                         f"CPUs and {resources.get('GPU', 0)} GPUs")
    # max_retries: a run whose worker or node died is retried once, resuming from its last checkpoint.
    task = ray.remote(train_one).options(num_cpus=cpus, num_gpus=gpus, max_retries=1)
    driver = driver_identity()
    refs = {task.remote(r.name, r.config, str(out), cpus, gpus > 0, command, token, driver,
                        ship(out / r.name) if (out / r.name).is_dir() else None): r for r in todo}
    outcomes, seconds, waited = [], [], False
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=WAIT_S)
            for line in view.refresh():
                log(line)
            if not ready:
                continue
            outcome = _result(ray, ready[0], refs.pop(ready[0]), out)
            if outcome.attempt > 1 and not view.lost and not waited:  # once: a worker may die on a node that lives
                waited = True
                _await_loss(view, log)
            outcomes.append(outcome)
            if outcome.status != "failed":
                seconds.append(outcome.seconds)
            slots = view.slots()
            running = min(len(refs), slots)  # Ray runs `slots` tasks at a time; the rest wait in its queue
            done, failed = sum(o.ok for o in earlier + outcomes), sum(not o.ok for o in earlier + outcomes)
            eta = ("ETA unknown: no node alive can take a run" if not slots else
                   f"ETA {_duration(statistics.mean(seconds) * len(refs) / slots)}" if seconds else "ETA after the first run")
            log(f"[{done + failed}/{total}] {outcome.name}: {outcome.status} in {outcome.seconds:.1f} s"
                f"{_how(outcome, len(view.nodes) > 1 or bool(view.lost))}{': ' + outcome.message if not outcome.ok else ''} | "
                f"{done} done, {running} running, {failed} failed, {len(refs) - running} pending, {view.capacity()}, {eta}")
    except BaseException as e:  # a signal or Ctrl-C: end the runs still going (their checkpoints stay whole)
        if refs:
            log(f"sweep interrupted ({type(e).__name__}): cancelling {len(refs)} runs and ending the Ray processes it started")
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    for line in view.refresh():  # a loss Ray noticed after the last run
        log(line)
    return outcomes


def _await_loss(view: ClusterView, log) -> None:
    """Refresh the view until it knows a lost node, for at most LOSS_GRACE_S. A retry starts as soon as the driver sees
    its worker gone, before Ray's health checks declare the node dead, so a short retried run can end first: its
    line would then count the dead node's slots and name no loss."""
    deadline = time.monotonic() + LOSS_GRACE_S
    while not view.lost and time.monotonic() < deadline:
        time.sleep(0.2)
        for line in view.refresh():
            log(line)
