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
import math
import os
import re
import socket
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
MAX_RUNS = 1_000  # runs one spec may expand to unless the caller raises it (CLI: --max-runs)
MAX_SPEC_BYTES = 1_000_000  # a spec is a few KB; a bigger file is a mistake (or /dev/zero)
MAX_SPEC_NODES = 100_000  # YAML nodes with every alias expanded: a "billion laughs" spec is refused before it is built
MAX_SPEC_DEPTH = 50  # nesting levels
SHOWN_NAMES = 8  # run names an error message lists
MAX_NAME = 200  # characters of a run directory name (file systems allow 255 bytes)
ADDRESS_TIMEOUT_S = 10.0  # how long a cluster address may take to answer before the sweep gives up


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
    """Read a YAML or JSON spec (JSON is YAML). Note YAML 1.1 reads `1e-3` as a string: write 0.001.

    Only plain data is read (yaml's safe constructors; no tags are executed), at most MAX_SPEC_BYTES, and the
    document is sized with its aliases expanded before anything is built from it: ValueError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a sweep spec is a YAML or JSON file)")
    with path.open("rb") as f:
        raw = f.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        raise ValueError(f"{path}: larger than {MAX_SPEC_BYTES:,} bytes; a sweep spec is a few KB of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); a sweep spec is a YAML or JSON file") from None
    spec = parse_spec(text, str(path))
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep spec is a mapping with keys {list(SPEC_KEYS)}, got {type(spec).__name__}")
    return spec


def parse_spec(text: str, where: str = "sweep spec") -> Any:
    """YAML text -> plain data (dict, list, str, int, float, bool, None); ValueError for anything else.

    yaml.safe_load turns aliases into shared references, so a few hundred bytes of nested aliases (a "billion
    laughs") build a tiny object graph that explodes in whatever walks it later (5.8 GB in `expand`). The
    composed node graph is sized first, each alias counted at its full size, and refused beyond MAX_SPEC_NODES."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_nodes(node, {}, set(), 0, where)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{where}: not valid YAML: {at}{' '.join(filter(None, [e.context, e.problem]))}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply (more than {MAX_SPEC_DEPTH} levels)") from None
    finally:
        loader.dispose()
    _check_plain(data, where)
    return data


def _count_nodes(node: yaml.Node, memo: dict[int, int], path: set[int], depth: int, where: str) -> int:
    """Nodes under `node` with aliases expanded; `memo` keeps it linear in the file, `path` catches cycles."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in path:
        raise ValueError(f"{where}: a YAML alias contains itself (a recursive structure); a sweep spec is a finite tree")
    if depth > MAX_SPEC_DEPTH:
        raise ValueError(f"{where}: nested too deeply (more than {MAX_SPEC_DEPTH} levels)")
    children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
        node.value if isinstance(node, yaml.SequenceNode) else []
    path.add(key)
    total = 1
    for child in children:
        total += _count_nodes(child, memo, path, depth + 1, where)
        if total > MAX_SPEC_NODES:
            raise ValueError(f"{where}: expands to more than {MAX_SPEC_NODES:,} values once its YAML aliases (&name / *name) "
                             "are expanded; refused (a sweep spec lists a few models and grids)")
    path.discard(key)
    memo[key] = total
    return total


def _check_plain(value: Any, where: str, at: str = "") -> None:
    """JSON-compatible data only: sweep.json records the spec, and dates, sets or bytes do not survive that."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {_short(k)}{' in ' + at if at else ''} must be a string")
            _check_plain(v, where, f"{at}.{k}" if at else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(v, where, f"{at}[{i}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: {at or 'the document'} is a {type(value).__name__} ({str(value)[:40]!r}); a spec holds "
                         "only strings, numbers, booleans, null, lists and mappings")


def _check_keys(where: str, mapping: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where} must be a mapping, got {_short(mapping)}")
    unknown = sorted(map(str, set(mapping) - set(allowed)))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {_short(unknown)}; known: {list(allowed)}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")


def _short(value: Any, limit: int = 80) -> str:
    """repr for an error message, cut to `limit` characters: a message names the value, it does not echo a file."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ValueError(f"{where} must be a non-empty list of integers, got {_short(value)}")
    return value


def _check_dataset(spec: Any) -> None:
    """Name and arguments only: the dataset itself (maybe a file on the workers) is built by each run."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in DATASETS:
        raise ValueError(f"dataset must be a mapping with a name in {sorted(DATASETS)}, got {_short(spec)}")
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


def count_runs(spec: dict) -> int:
    """How many runs `expand` builds from a spec, from its grid sizes alone (nothing is built); ValueError if malformed."""
    return sum(len(seeds) * math.prod(len(v) for v in grid.values()) for _, _, grid, _, seeds in _entries(spec))


def _entries(spec: dict) -> list[tuple[dict, type, dict, dict, list[int]]]:
    """The spec's model entries checked field by field: (entry, model class, grid, params, seeds) each."""
    _check_keys("sweep spec", spec, SPEC_KEYS, required=("dataset", "models"))
    _check_dataset(spec["dataset"])
    shared = spec.get("train") or {}
    _check_keys("train", shared, tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in PER_RUN), required=())
    sweep_seeds = _seeds(spec.get("seeds", [0]), "seeds")
    if not isinstance(spec["models"], list) or not spec["models"]:
        raise ValueError(f"models must be a non-empty list of {{name, grid, params, seeds, label}}, got {_short(spec['models'])}")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(PER_RUN)
    entries = []
    for i, entry in enumerate(spec["models"]):
        where = f"models[{i}]"
        _check_keys(where, entry, MODEL_KEYS, required=("name",))
        if not isinstance(entry["name"], str):
            raise ValueError(f"{where}.name must be a model name (a string), got {_short(entry['name'])}")
        try:
            cls = model_class(entry["name"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        label = entry.get("label", entry["name"])
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"{where}.label must be a non-empty string, got {_short(label)}")
        model_fields = {f.name for f in dataclasses.fields(cls.Config)}
        grid, params = entry.get("grid") or {}, entry.get("params") or {}
        _check_keys(f"{where}.params", params, tuple(sorted(model_fields)), required=())
        _check_keys(f"{where}.grid", grid, tuple(sorted(model_fields | train_fields)), required=())
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}.grid.{key}: needs a non-empty list of values, got {_short(values)}")
        entries.append((entry, cls, grid, params, _seeds(entry.get("seeds", sweep_seeds), f"{where}.seeds")))
    return entries


def expand(spec: dict, max_runs: int = MAX_RUNS) -> list[SweepRun]:
    """Every run of a spec as a validated TrainConfig; ValueError naming the first problem.

    A spec of more than `max_runs` runs is refused before any is built (six keys of ten values are a million runs)."""
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
        raise ValueError(f"max_runs must be an integer >= 1, got {max_runs!r}")
    entries = _entries(spec)
    total = count_runs(spec)
    if total > max_runs:
        per_model = ", ".join(f"{entry['name']}: {len(seeds) * math.prod(len(v) for v in grid.values()):,}"
                              for entry, _, grid, _, seeds in entries)
        raise ValueError(f"the spec expands to {total:,} runs ({per_model}), more than the limit of {max_runs:,}; "
                         "shrink the grids or raise the limit (CLI: --max-runs)")
    shared = spec.get("train") or {}
    runs: dict[str, SweepRun] = {}
    for i, (entry, cls, grid, params, seeds) in enumerate(entries):
        model_fields = {f.name for f in dataclasses.fields(cls.Config)}
        keys = sorted(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            point = dict(zip(keys, combo, strict=True))
            model_params = {**params, **{k: v for k, v in point.items() if k in model_fields}}
            train_point = {**shared, **{k: v for k, v in point.items() if k not in model_fields}}
            for seed in seeds:
                name = run_name(format_value(entry.get("label", entry["name"])), point, seed)
                if len(name) > MAX_NAME:
                    raise ValueError(f"models[{i}]: the run directory name {name[:60]}... is {len(name)} characters long, more than "
                                     f"{MAX_NAME}; give the model entry a shorter label or shorter grid values")
                try:
                    cls.Config.from_dict(model_params)  # the dataset fills image_shape etc. on the worker
                    config = TrainConfig.from_dict({**train_point, "model": entry["name"], "model_params": model_params,
                                                    "dataset": spec["dataset"], "seed": seed})
                except (TypeError, ValueError) as e:
                    raise ValueError(f"models[{i}] run {name}: {e}") from None
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
        shown = ", ".join(names[:SHOWN_NAMES]) + (f", ... ({len(names):,} runs in all)" if len(names) > SHOWN_NAMES else "")
        patterns_text = ", ".join(repr(p[:80] + "..." if len(p) > 80 else p) for p in unmatched[:SHOWN_NAMES])
        raise ValueError(f"no run of the spec matches {patterns_text}{', ...' if len(unmatched) > SHOWN_NAMES else ''}; its runs: {shown}")
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
        try:
            saved = io.read_json(path)
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
        raise ValueError(f"address must be a string, got {_short(address)}")
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:  # a private helper of Ray's: without it ray.init resolves "auto" itself
            return
        address = canonicalize_bootstrap_address_or_die("auto")  # ConnectionError when no instance runs here
    match = _ADDRESS.fullmatch(address)
    if not match or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"Ray address {_short(address)}: expected auto, HOST:PORT or ray://HOST:PORT with a port in 1..65535")
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
    todo, outcomes, resumed = plan(runs, out)
    if todo and not ray.is_initialized():
        check_address(address)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
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
