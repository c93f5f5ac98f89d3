"""Where the app finds models: the shipped zoo and the user's own runs (no streamlit here).

Zoo: `$MTC_ZOO_DIR` (default `<repo>/pretrained`) with an `index.json` in the format of
`mtc_core.zoo`. Without an index the zoo directory's run directories are listed. User runs: every run directory under
`$MTC_RUNS_DIR` (default `<repo>/runs`); the app trains into it and may delete from
it, never from the zoo.

One bad run must not take the app down: every run is inspected (config, the weights' header against the config) before
it is offered, and a run that fails is listed by `broken_runs()` with the reason and skipped everywhere else.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtc_core import io, zoo
from mtc_core.data import DATASETS, make_dataset
from mtc_core.estimators import report
from mtc_core.models import MODELS
from mtc_core.reproduce import group_label
from mtc_core.train import history_tc, resolve_device
from ui import training

REPO = Path(__file__).resolve().parent.parent
HEADLINE_KEYS = ("recon", "kl", "active_dims")
FAMILIES = {"vae": "VAE", "beta_vae": "beta-VAE", "beta_tcvae": "beta-TCVAE", "factor_vae": "FactorVAE", "dip_vae": "DIP-VAE",
            "rtc_vae": "RTC-VAE"}  # model key -> the name a chart's legend shows
FINISHED = ("complete",)  # what Compare and the overview count unless asked for more
UNFINISHED = ("cancelled", "diverged", "running", "interrupted")


def zoo_dir() -> Path:
    return Path(os.environ.get("MTC_ZOO_DIR") or REPO / "pretrained")


def runs_dir() -> Path:
    return Path(os.environ.get("MTC_RUNS_DIR") or REPO / "runs")


@dataclass(frozen=True)
class RunEntry:
    path: str  # absolute run directory
    label: str  # what the picker shows
    source: str  # zoo | runs
    model: str | None = None  # registry key
    dataset: str | None = None  # dataset name
    seed: int | None = None  # training seed
    status: str | None = None  # config.json's status; "interrupted": "running" with no training of this server behind it
    group: str = ""  # runs that differ only in their seed share it (seeds are aggregated over it)
    problem: str | None = None  # why the run cannot be explored; None for a usable run

    @property
    def family(self) -> str:
        return FAMILIES.get(self.model or "", self.model or "?")

    @property
    def group_label(self) -> str:
        """The label without its seed: one configuration."""
        return group_label(self.label)


@functools.lru_cache(maxsize=512)
def _inspect(path: str, stamp: tuple) -> tuple[dict | None, str | None]:
    """(validated config.json, None) or (None, the reason the run cannot be used), without reading any weights: the
    config (model key, bounded sizes, dataset spec) and the weights' header (dtypes, offsets, size). Checking the
    header's tensors against the model (a meta model per run, ~0.1 s) is left to loading (`cache.model`)."""
    try:
        config = io.read_run_config(path)
        model_cfg = io.model_config(config, Path(path) / io.CONFIG)
        io.read_safetensors_header(Path(path) / io.WEIGHTS)
        if not isinstance(config.get("dataset"), dict):
            raise io.CheckpointError(f"{Path(path) / io.CONFIG}: no dataset spec")
        shape = _image_shape(json.dumps(config["dataset"], sort_keys=True))
        if tuple(model_cfg.image_shape) != shape:
            raise io.CheckpointError(f"{Path(path) / io.CONFIG}: dataset {config['dataset'].get('name')!r} renders images of "
                                     f"shape {shape} but the model takes {tuple(model_cfg.image_shape)}")
    except Exception as error:  # any failure makes the run unusable; the reason is what the user sees
        return None, f"{type(error).__name__}: {error}" if not isinstance(error, ValueError) else str(error)
    return config, None


@functools.lru_cache(maxsize=64)
def _image_shape(spec_json: str) -> tuple[int, ...]:
    """The (C, H, W) a dataset spec renders: the class's constant when it has one (no sprite tables built), else the
    built dataset's."""
    spec = json.loads(spec_json)
    cls = DATASETS.get(spec.get("name"))
    if cls is not None and isinstance(cls.__dict__.get("image_shape"), tuple):
        return tuple(cls.image_shape)
    return tuple(make_dataset(spec).image_shape)


def _stamp(path: Path) -> tuple:
    """Cache key of a run's files: a re-saved config or new weights give a new key."""
    out = []
    for name in (io.CONFIG, io.WEIGHTS):
        try:
            stat = (path / name).stat()
            out.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def inspect_run(path: str | Path) -> tuple[dict | None, str | None]:
    """(config, None) for a usable run directory, (None, reason) for a broken one; cached by the files' mtimes."""
    path = Path(path)
    return _inspect(str(path), _stamp(path))


def _entry(path: Path, label: str, source: str) -> RunEntry:
    config, problem = inspect_run(path)
    if config is None:
        return RunEntry(str(path), label, source, problem=problem)
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seed = train.get("seed") if isinstance(train.get("seed"), int) else None
    params = {k: v for k, v in config["model"].get("params", {}).items() if k != "dataset_size"}
    status = config.get("status") if isinstance(config.get("status"), str) else None
    if status == "running" and not training.is_training(path):
        status = "interrupted"
    group = json.dumps([source, config["model"]["name"], params, config["dataset"]], sort_keys=True, default=str)
    return RunEntry(str(path), label, source, config["model"]["name"], str(config["dataset"].get("name")), seed, status, group)


def zoo_runs() -> list[RunEntry]:
    """The zoo's runs from its index.json (mtc_core.zoo); without an index, its run directories. Ordered by dataset, the
    model registry, configuration and seed. A malformed index raises ValueError naming the problem (the picker shows it)."""
    root = zoo_dir()
    items = zoo.read_index(root) if (root / zoo.INDEX).is_file() else [{"path": str(p.resolve())} for p in io.list_runs(root)]
    entries = [_entry(Path(item["path"]), str(item.get("label") or Path(item["path"]).name), "zoo")
               for item in items if (Path(item["path"]) / io.CONFIG).is_file()]
    order = list(MODELS)
    return sorted(entries, key=lambda e: (e.dataset or "~", order.index(e.model) if e.model in order else len(order),
                                          e.group_label, e.seed if e.seed is not None else -1))


def user_runs() -> list[RunEntry]:
    """The user's run directories, newest first; the label says a status other than complete."""
    out = []
    for path in io.list_runs(runs_dir()):
        entry = _entry(path.resolve(), path.name, "runs")
        suffix = "" if entry.status in ("complete", None) else f" ({entry.status})"
        out.append(RunEntry(**{**entry.__dict__, "label": f"run · {path.name}{suffix}"}))
    return out


def all_runs() -> list[RunEntry]:
    """Zoo first, then the user's runs, broken ones included. An unreadable zoo index leaves the zoo out."""
    try:
        zoo_entries = zoo_runs()
    except ValueError:
        zoo_entries = []
    return zoo_entries + user_runs()


def available_runs() -> list[RunEntry]:
    """Runs that can be explored (see `broken_runs` for the others)."""
    return [e for e in all_runs() if e.problem is None]


def broken_runs() -> list[RunEntry]:
    """Runs that cannot be explored, each with the reason in `problem`."""
    return [e for e in all_runs() if e.problem is not None]


def interrupted_runs() -> list[RunEntry]:
    """The user's runs marked running in config.json that no training of this server is writing: their process died
    (a server restart, a kill). They can be resumed from their last checkpoint."""
    return [e for e in user_runs() if e.status == "interrupted"]


def short_label(path: str | Path) -> str:
    """The run directory's name, with "zoo/" in front for the zoo's."""
    path = Path(path)
    return path.name if is_user_run(path) else f"zoo/{path.name}"


def comparable_runs(statuses: tuple[str, ...] = FINISHED) -> list[RunEntry]:
    """Usable runs whose status is one of `statuses` (default: complete only; cancelled, diverged or interrupted runs
    are left out unless asked for)."""
    return [e for e in available_runs() if e.status in statuses]


def default_pair(entries: list[RunEntry]) -> tuple[RunEntry | None, RunEntry | None]:
    """Side by side's defaults: a beta-TCVAE and an RTC-VAE on the same dataset with the same seed (the zoo's
    most-seeded RTC-VAE configuration, i.e. its main one), preferring Shapes2D and seed 0."""
    def rank(e: RunEntry) -> tuple:
        return (e.source != "zoo", e.dataset != "shapes2d", e.seed != 0, e.seed if e.seed is not None else 1 << 40)

    seeds: dict[str, int] = {}
    for e in entries:
        seeds[e.group] = seeds.get(e.group, 0) + 1
    for a in sorted((e for e in entries if e.model == "beta_tcvae"), key=rank):
        partners = [b for b in entries if b.model == "rtc_vae" and (b.dataset, b.seed, b.source) == (a.dataset, a.seed, a.source)]
        if partners:
            return a, max(partners, key=lambda b: seeds[b.group])  # max keeps the first of equals: zoo order
    return (entries[0] if entries else None), (entries[1] if len(entries) > 1 else None)


def evaluation_rows(entries: list[RunEntry]) -> tuple[list[dict], list[RunEntry]]:
    """(rows for mtc_core.reproduce.aggregate, the entries without a stored evaluation). A row is one run: its label,
    model, seed, dataset, configuration group and stored evaluation (metrics.json, what `evaluate` wrote)."""
    rows, missing = [], []
    for e in entries:
        evaluation = read_evaluation(e.path)
        if evaluation is None:
            missing.append(e)
            continue
        rows.append({"label": e.label if e.source == "zoo" else short_label(e.path), "model": e.model, "seed": e.seed,
                     "dataset": e.dataset, "group": e.group, "evaluation": evaluation, "path": e.path, "source": e.source})
    return rows, missing


TC_QUANTITIES = {  # name -> (code, estimator, part of the Gaussian split or None); values read with report.value
    "mean": ("mean", "gaussian", None), "sampled": ("sampled", "gaussian", None),
    "mean_knn": ("mean", "knn", None), "sampled_knn": ("sampled", "knn", None),
    "mean_between": ("mean", "gaussian", "between"), "mean_active": ("mean", "gaussian", "active"),
    "mean_passive": ("mean", "gaussian", "passive"),
}


def aggregate(rows: list[dict]) -> list[dict]:
    """Seeds aggregated per configuration (rows from `evaluation_rows`), in the order of the rows: label (without the
    seed), family, model, dataset, seeds, paths, and for each of TC_QUANTITIES {"mean", "sd" (None for one seed),
    "per_seed": [...], "ci": the 95% interval of a single seed's estimate}, with mtc_core.sweep_results.mean_sd as
    `reproduce` uses it for RESULTS.md, so the numbers are the same."""
    from mtc_core.sweep_results import mean_sd

    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    out = []
    for members in groups.values():
        members = sorted(members, key=lambda r: r["seed"] if r["seed"] is not None else -1)
        first = members[0]
        item = {"label": group_label(first["label"]), "family": FAMILIES.get(first["model"], first["model"]), "model": first["model"],
                "dataset": first["dataset"], "seeds": [m["seed"] for m in members], "paths": [m["path"] for m in members]}
        for name, (code, estimator, part) in TC_QUANTITIES.items():
            values = [v for m in members if (v := report.value(m["evaluation"]["tc"], code, estimator, part)) is not None]
            mean, sd = mean_sd(values)
            ci = report.interval(first["evaluation"]["tc"], code, estimator, part) if len(members) == 1 else None
            item[name] = {"mean": mean, "sd": sd, "per_seed": values, "ci": ci}
        recon = [m["evaluation"]["recon"] for m in members if _is_number(m["evaluation"].get("recon"))]
        item["recon"] = dict(zip(("mean", "sd"), mean_sd(recon), strict=True))
        out.append(item)
    return out


def flatten_evaluation(evaluation: dict[str, Any]) -> dict[str, Any]:
    """One table row from an mtc_core.evaluate result: its TCs first ("gaussian_tc (mean)", with their 95% intervals
    and the active/passive split of the means), every other number of the mean and sampled codes as
    "name (mean)" / "name (sampled)", nested scores as "metric.key (rep)", then recon and active latents."""
    row: dict[str, Any] = {}
    tc = evaluation.get("tc")
    for estimator in ("gaussian", "knn"):
        for code in ("mean", "sampled"):
            row[f"{estimator}_tc ({code})"] = report.value(tc, code, estimator)
            row[f"{estimator}_tc 95% CI ({code})"] = report.describe(tc, code, estimator)
    for part in ("active", "passive", "between"):
        row[f"gaussian_tc {part} (mean)"] = report.value(tc, "mean", "gaussian", part)
    row["dataset_mc_tc (sampled)"] = report.value(tc, "sampled", "dataset_mc")
    for rep in ("mean", "sampled"):
        scores = evaluation.get(rep)
        for name, value in (scores.items() if isinstance(scores, dict) else ()):
            if isinstance(value, dict):
                row.update({f"{name}.{k} ({rep})": v for k, v in value.items() if _is_number(v)})
            elif _is_number(value) or value is None:
                row[f"{name} ({rep})"] = value
    row["recon"] = evaluation.get("recon") if _is_number(evaluation.get("recon")) else None
    activity = evaluation.get("activity")
    row["active_latents"] = activity.get("active_latents") if isinstance(activity, dict) else None
    return row


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_user_run(path: str | Path) -> bool:
    path = Path(path).resolve()
    return path.parent == runs_dir().resolve() and (path / io.CONFIG).is_file()


def delete_run(path: str | Path) -> None:
    """Delete one of the user's run directories; anything else (the zoo) is refused."""
    if not is_user_run(path):
        raise ValueError(f"{path} is not one of your runs under {runs_dir()}; only those can be deleted")
    if training.is_training(path):
        raise ValueError(f"{Path(path).name} is still training; cancel it on the Train page first")
    shutil.rmtree(path)


def config_mtime(path: str | Path) -> int:
    """Cache key part: a re-saved run (new config.json) gets a new key and reloads."""
    return (Path(path) / io.CONFIG).stat().st_mtime_ns


def run_summary(path: str | Path) -> dict[str, Any]:
    """One row of the Models table: what the run is and its headline numbers (last history record); its Gaussian
    TCs from the stored evaluation (with 95% intervals) when metrics.json has one, else from the last history record.
    A history file that cannot be read leaves those columns empty and says so in "history"."""
    path = Path(path)
    config, problem = inspect_run(path)
    if config is None:
        raise io.CheckpointError(problem)
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    params = config["model"].get("params", {})
    try:
        history, history_note = io.read_history(path), None
    except (ValueError, OSError) as error:
        history, history_note = [], f"unreadable: {error}"
    last = (history or [{}])[-1]
    row = {
        "run": path.name,
        "model": config["model"]["name"],
        "dataset": config["dataset"].get("name"),
        "latent_dim": params.get("latent_dim"),
        "steps": config.get("step", train.get("steps")),
        "status": config.get("status"),
        **{k: last.get(k) for k in HEADLINE_KEYS},
    }
    if history_note:
        row["history"] = history_note
    evaluation = read_evaluation(path)
    if evaluation:
        tc = evaluation["tc"]
        row["TC mean codes"] = report.describe(tc, "mean", "gaussian")
        row["TC sampled codes"] = report.describe(tc, "sampled", "gaussian")
        row["TC of means between active and passive"] = report.describe(tc, "mean", "gaussian", part="between")
        settings = tc.get("settings") if isinstance(tc.get("settings"), dict) else {}
        row["TC from"] = f"evaluate, {settings.get('n', '?'):,} points" if isinstance(settings.get("n"), int) else "evaluate"
        mean_scores = evaluation.get("mean")
        row["MIG mean"] = mean_scores.get("mig") if isinstance(mean_scores, dict) else None
    elif history:
        row["TC mean codes"], row["TC sampled codes"] = (_plain(history_tc(last, code)) for code in ("mean", "sampled"))
        row["TC from"] = f"last training record, batch of {last.get('tc_n', '?')} (no interval)"
    return row


def _plain(value: float | None) -> str:
    return "n/a" if not _is_number(value) else f"{value:.3f}"


def summaries(entries: list[RunEntry]) -> list[dict[str, Any]]:
    """`run_summary` of each entry with its source; a run that cannot be summarised gets a row that says why."""
    rows = []
    for entry in entries:
        try:
            rows.append({"source": entry.source, **run_summary(entry.path)})
        except Exception as error:  # one bad run gets a row saying why; the table stays
            rows.append({"source": entry.source, "run": Path(entry.path).name, "status": f"unreadable: {error}"})
    return rows


def read_evaluation(path: str | Path) -> dict[str, Any] | None:
    """metrics.json's "evaluation" (what mtc_core.evaluate returned when the run was evaluated), if any; None also for
    a metrics.json that cannot be read or holds no TC report."""
    file = Path(path) / io.METRICS
    try:
        stat = file.stat()
    except OSError:
        return None
    return _evaluation(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _evaluation(file: str, mtime: int, size: int) -> dict[str, Any] | None:
    try:
        metrics = io.read_json(file)
    except (ValueError, OSError):
        return None
    evaluation = metrics.get("evaluation") if isinstance(metrics, dict) else None
    # an evaluation from before the TC report (no "tc") is stale: its TCs had no intervals and mixed sizes
    if not isinstance(evaluation, dict) or not _tc_report_shape(evaluation.get("tc")):
        return None
    # parts of another type than `evaluate` writes are left out, so that no page trips over them
    kinds = {"mean": dict, "sampled": dict, "activity": dict, "settings": dict}
    return {k: v for k, v in evaluation.items() if k not in kinds or isinstance(v, kinds[k])}


def _tc_report_shape(tc: Any) -> bool:
    """Whether `tc` has the nesting of an estimators.tc_report (code -> estimator -> entry; split -> code -> part ->
    entry; index lists): the shape every reader of a report relies on."""
    if not isinstance(tc, dict):
        return False
    nested = [tc.get(code, {}) for code in ("mean", "sampled")] + list((tc.get("split") or {}).values()) \
        if isinstance(tc.get("split", {}), dict) else None
    return (nested is not None and all(isinstance(n, dict) and all(isinstance(e, dict) for e in n.values()) for n in nested)
            and all(isinstance(tc.get(k, []), list) for k in ("active", "passive", "dropped"))
            and isinstance(tc.get("settings", {}), dict))


def device_label() -> str:
    """What the app computes on: the GPU's name, or the CPU."""
    device = resolve_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads > 1 else ''})"
