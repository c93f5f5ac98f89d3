"""Sweep specs: YAML or JSON read safely, validated whole, and expanded into one `TrainConfig` per run.

A spec names the dataset, the shared train settings, the seeds and, per model, a grid:

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

Every run becomes a `TrainConfig` before Ray starts, so a bad value fails the whole sweep at once. YAML tags, alias
bombs, huge grids and deep nesting are refused before anything is built.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtc_core.data import DATASETS
from mtc_core.data.spec import short_repr
from mtc_core.models import model_class
from mtc_core.training.trainer import TrainConfig

SPEC_KEYS, MODEL_KEYS = ("dataset", "train", "seeds", "models"), ("name", "grid", "params", "seeds", "label")
PER_RUN = ("model", "model_params", "dataset", "seed")  # TrainConfig fields the spec sets outside `train`
EXECUTION = ("device", "num_threads")  # where a run executes, not what it computes: ignored when matching a run directory
MAX_RUNS = 1_000  # runs one spec may expand to unless the caller raises it (CLI: --max-runs)
MAX_SPEC_BYTES = 1_000_000  # a spec is a few KB; a bigger file is a mistake (or /dev/zero)
MAX_SPEC_NODES = 100_000  # YAML nodes with every alias expanded: a "billion laughs" spec is refused before it is built
MAX_SPEC_DEPTH = 50  # nesting levels
SHOWN_NAMES = 8  # run names an error message lists
MAX_NAME = 200  # characters of a run directory name (file systems allow 255 bytes)


@dataclass(frozen=True)
class SweepRun:
    name: str  # run directory under the sweep folder, e.g. beta_tcvae-beta=6-seed=0
    config: TrainConfig


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
                raise ValueError(f"{where}: key {short_repr(k)}{' in ' + at if at else ''} must be a string")
            _check_plain(v, where, f"{at}.{k}" if at else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(v, where, f"{at}[{i}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: {at or 'the document'} is a {type(value).__name__} ({str(value)[:40]!r}); a spec holds "
                         "only strings, numbers, booleans, null, lists and mappings")


def _check_keys(where: str, mapping: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where} must be a mapping, got {short_repr(mapping)}")
    unknown = sorted(map(str, set(mapping) - set(allowed)))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {short_repr(unknown)}; known: {list(allowed)}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ValueError(f"{where} must be a non-empty list of integers, got {short_repr(value)}")
    return value


def _check_dataset(spec: Any) -> None:
    """Name and arguments only: the dataset itself (maybe a file on the workers) is built by each run."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in DATASETS:
        raise ValueError(f"dataset must be a mapping with a name in {sorted(DATASETS)}, got {short_repr(spec)}")
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
        raise ValueError(f"models must be a non-empty list of {{name, grid, params, seeds, label}}, got {short_repr(spec['models'])}")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(PER_RUN)
    entries = []
    for i, entry in enumerate(spec["models"]):
        where = f"models[{i}]"
        _check_keys(where, entry, MODEL_KEYS, required=("name",))
        if not isinstance(entry["name"], str):
            raise ValueError(f"{where}.name must be a model name (a string), got {short_repr(entry['name'])}")
        try:
            cls = model_class(entry["name"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        label = entry.get("label", entry["name"])
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"{where}.label must be a non-empty string, got {short_repr(label)}")
        model_fields = {f.name for f in dataclasses.fields(cls.Config)}
        grid, params = entry.get("grid") or {}, entry.get("params") or {}
        _check_keys(f"{where}.params", params, tuple(sorted(model_fields)), required=())
        _check_keys(f"{where}.grid", grid, tuple(sorted(model_fields | train_fields)), required=())
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}.grid.{key}: needs a non-empty list of values, got {short_repr(values)}")
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
