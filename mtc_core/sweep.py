"""Sweeps (DESIGN 3): models x hyperparameter grids x seeds, each a Ray task writing its own run directory.

A spec (YAML or JSON) names the dataset, the shared train settings, the seeds and, per model, a grid:

    dataset: {name: toy}
    train: {steps: 2000, batch_size: 64, lr: 0.001}
    seeds: [0, 1, 2]
    models:
      - name: beta_tcvae
        grid: {beta: [1, 2, 4, 6, 8]}     # model config fields, or train fields such as lr
      - name: factor_vae
        grid: {gamma: [10, 35]}
        params: {latent_dim: 10}          # fixed model config fields
        seeds: [0]                        # overrides the sweep's seeds

Every run becomes a `TrainConfig` before Ray starts, so a bad value fails the whole sweep at once; what only
the worker can find out (the dataset is built, the networks meet the images) fails that run alone, with its
traceback in `<run>/error.txt`. Runs are Ray core tasks holding `num_cpus` (and `num_gpus`) resources: the grid
is fixed, with no search or early stopping, and every run already checkpoints and resumes itself (train(...,
resume=True)), so Ray Tune's trial management would only add a second directory layout. A rerun skips the runs
whose config.json says "complete" and resumes the interrupted ones.

`mtc_core.sweep_results` turns a sweep folder into the table and the TC-vs-regularisation figure.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import itertools
import json
import re
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from mtc_core import io
from mtc_core.data import DATASETS
from mtc_core.models import model_class
from mtc_core.train import TrainConfig, train

SWEEP, ERROR = "sweep.json", "error.txt"
SPEC_KEYS, MODEL_KEYS = ("dataset", "train", "seeds", "models"), ("name", "grid", "params", "seeds", "label")
PER_RUN = ("model", "model_params", "dataset", "seed")  # TrainConfig fields the spec sets outside `train`
EXECUTION = ("device", "num_threads")  # where a run executes, not what it computes: ignored when matching a run directory
REGULARISERS = {"beta_vae": "beta", "beta_tcvae": "beta", "factor_vae": "gamma", "dip_vae": "lambda_od", "rtc_vae": "lambda_t"}


@dataclass(frozen=True)
class SweepRun:
    name: str  # run directory under the sweep folder, e.g. beta_tcvae-beta=6-seed=0
    config: TrainConfig


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # complete | skipped (complete earlier) | diverged | failed (an exception)
    message: str = ""
    seconds: float = 0.0  # wall time of the task, 0 for a skipped run

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "skipped")


def load_spec(path: str | Path) -> dict:
    """Read a YAML or JSON spec (JSON is YAML). Note YAML 1.1 reads `1e-3` as a string: write 0.001."""
    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep spec is a mapping with keys {list(SPEC_KEYS)}")
    return spec


def _check_keys(where: str, mapping: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where} must be a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {list(allowed)}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ValueError(f"{where} must be a non-empty list of integers, got {value!r}")
    return value


def _check_dataset(spec: Any) -> None:
    """Name and arguments only: the dataset itself (maybe a file on the workers) is built by each run."""
    if not isinstance(spec, dict) or spec.get("name") not in DATASETS:
        raise ValueError(f"dataset must be a mapping with a name in {sorted(DATASETS)}, got {spec!r}")
    cls = DATASETS[spec["name"]]
    try:
        inspect.signature(cls).bind(**{k: v for k, v in spec.items() if k != "name"})
    except TypeError as e:
        raise ValueError(f"dataset {spec['name']!r}: {e}; accepted: {inspect.signature(cls)}") from None


def format_value(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool | None) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def run_name(label: str, point: dict[str, Any], seed: int) -> str:
    """beta_tcvae-beta=6-seed=0: the label, the grid point in key order, the seed."""
    return "-".join([label, *(f"{k}={format_value(v)}" for k, v in sorted(point.items())), f"seed={seed}"])


def expand(spec: dict) -> list[SweepRun]:
    """Every run of a spec as a validated TrainConfig; ValueError naming the first problem."""
    _check_keys("sweep spec", spec, SPEC_KEYS, required=("dataset", "models"))
    _check_dataset(spec["dataset"])
    shared = spec.get("train") or {}
    _check_keys("train", shared, tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in PER_RUN), required=())
    sweep_seeds = _seeds(spec.get("seeds", [0]), "seeds")
    if not isinstance(spec["models"], list) or not spec["models"]:
        raise ValueError(f"models must be a non-empty list of {{name, grid, params, seeds, label}}, got {spec['models']!r}")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(PER_RUN)
    runs: dict[str, SweepRun] = {}
    for i, entry in enumerate(spec["models"]):
        where = f"models[{i}]"
        _check_keys(where, entry, MODEL_KEYS, required=("name",))
        try:
            cls = model_class(entry["name"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        model_fields = {f.name for f in dataclasses.fields(cls.Config)}
        grid, params = entry.get("grid") or {}, entry.get("params") or {}
        _check_keys(f"{where}.params", params, tuple(sorted(model_fields)), required=())
        _check_keys(f"{where}.grid", grid, tuple(sorted(model_fields | train_fields)), required=())
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}.grid.{key}: needs a non-empty list of values, got {values!r}")
        seeds = _seeds(entry.get("seeds", sweep_seeds), f"{where}.seeds")
        keys = sorted(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            point = dict(zip(keys, combo, strict=True))
            model_params = {**params, **{k: v for k, v in point.items() if k in model_fields}}
            train_point = {**shared, **{k: v for k, v in point.items() if k not in model_fields}}
            for seed in seeds:
                name = run_name(format_value(entry.get("label", entry["name"])), point, seed)
                try:
                    cls.Config.from_dict(model_params)  # the dataset fills image_shape etc. on the worker
                    config = TrainConfig.from_dict({**train_point, "model": entry["name"], "model_params": model_params,
                                                    "dataset": spec["dataset"], "seed": seed})
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{where} run {name}: {e}") from None
                if name in runs:
                    raise ValueError(f"two runs would share the directory {name!r}: give one of the model entries a distinct label")
                runs[name] = SweepRun(name, config)
    return list(runs.values())


def select(runs: list[SweepRun], patterns: list[str] | tuple[str, ...] | None) -> list[SweepRun]:
    """The runs whose name matches one of the shell-style `patterns` (None: all), in spec order.

    A pattern matching no run is a ValueError naming the runs, so a typo does not train nothing quietly."""
    if not patterns:
        return list(runs)
    names = [r.name for r in runs]
    unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
    if unmatched:
        raise ValueError(f"no run of the spec matches {', '.join(map(repr, unmatched))}; its runs: {', '.join(names)}")
    return [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]


def _comparable(train_config: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in train_config.items() if k not in EXECUTION}))


def plan(runs: list[SweepRun], out: Path) -> tuple[list[SweepRun], list[Outcome], int]:
    """(runs to train, outcomes of runs already finished, how many of those to train resume a checkpoint).

    A run directory holding a different train config means the spec changed under an old folder: ValueError,
    rather than mixing two sweeps or overwriting work. A diverged run is kept (a retry would diverge again)."""
    todo, finished, resumed, conflicts = [], [], 0, []
    for run in runs:
        path = out / run.name / io.CONFIG
        if not path.is_file():
            todo.append(run)
            continue
        saved = io.read_json(path)
        if _comparable(saved.get("train", {})) != _comparable(dataclasses.asdict(run.config)):
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


def train_one(name: str, config: TrainConfig, run_dir: str, threads: int, use_gpu: bool, command: str) -> Outcome:
    """One run, inside a Ray worker. Never raises: a failure is written to error.txt and returned."""
    start, run_dir = time.perf_counter(), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR).unlink(missing_ok=True)
    try:
        torch.set_num_threads(threads)
        if use_gpu:
            config = dataclasses.replace(config, device="cuda")  # Ray points CUDA_VISIBLE_DEVICES at this task's GPUs
        result = train(config, run_dir, command=command, resume=True)
    except Exception as e:
        (run_dir / ERROR).write_text(traceback.format_exc())
        return Outcome(name, "failed", f"{type(e).__name__}: {e}", time.perf_counter() - start)
    return Outcome(name, result.status, result.message, time.perf_counter() - start)


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


def run_sweep(spec: dict, out: str | Path, *, address: str | None = None, num_cpus: int | None = None, cpus_per_run: int = 1,
              gpus_per_run: float = 0, only: list[str] | None = None, command: str = "", log=print) -> list[Outcome]:
    """Train every run of `spec` under `out` through Ray; returns one Outcome per run, in finishing order.

    `only`: shell-style patterns on run names (`select`) to train a part of the spec now and the rest by a later
    call into the same folder; sweep.json still records the whole spec.
    Uses the Ray connection already open in this process, else ray.init(address) (None: a local instance with
    num_cpus CPUs, None: all). `log` receives the progress lines."""
    import ray

    if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) or cpus_per_run < 1:
        raise ValueError(f"cpus_per_run must be an integer >= 1, got {cpus_per_run!r}")
    if not isinstance(gpus_per_run, int | float) or not 0 <= gpus_per_run <= 64:
        raise ValueError(f"gpus_per_run must be a number in 0..64, got {gpus_per_run!r}")
    every = expand(spec)
    runs = select(every, only)
    out = Path(out).resolve()  # workers do not share the driver's working directory
    out.mkdir(parents=True, exist_ok=True)
    todo, outcomes, resumed = plan(runs, out)
    io.write_json(out / SWEEP, {"spec": spec, "command": command, "runs": [{"name": r.name, "train": dataclasses.asdict(r.config)} for r in every]})
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
