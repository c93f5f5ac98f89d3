"""Where the app finds models: the shipped zoo and the user's own runs (no streamlit here).

Zoo: `$MTC_ZOO_DIR` (default `<repo>/pretrained`) with an `index.json` in the format of
`mtc_core.zoo`. Without an index the zoo directory's run directories are listed. User runs: every run directory under
`$MTC_RUNS_DIR` (default `<repo>/runs`); the app trains into it and may delete from
it, never from the zoo.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtc_core import io, zoo
from mtc_core.estimators import report
from mtc_core.train import history_tc, resolve_device
from ui import training

REPO = Path(__file__).resolve().parent.parent
HEADLINE_KEYS = ("recon", "kl", "active_dims")


def zoo_dir() -> Path:
    return Path(os.environ.get("MTC_ZOO_DIR") or REPO / "pretrained")


def runs_dir() -> Path:
    return Path(os.environ.get("MTC_RUNS_DIR") or REPO / "runs")


@dataclass(frozen=True)
class RunEntry:
    path: str  # absolute run directory
    label: str  # what the picker shows
    source: str  # zoo | runs


def zoo_runs() -> list[RunEntry]:
    """The zoo's runs from its index.json (mtc_core.zoo); without an index, its run directories.
    A malformed index raises ValueError naming the problem (the picker shows it)."""
    root = zoo_dir()
    items = zoo.read_index(root) if (root / zoo.INDEX).is_file() else [{"path": str(p.resolve())} for p in io.list_runs(root)]
    return [RunEntry(item["path"], f"zoo · {item.get('label') or Path(item['path']).name}", "zoo")
            for item in items if (Path(item["path"]) / io.CONFIG).is_file()]


def user_runs() -> list[RunEntry]:
    out = []
    for path in io.list_runs(runs_dir()):
        try:
            status = io.read_json(path / io.CONFIG).get("status", "?")
        except io.CheckpointError:
            status = "unreadable"
        suffix = "" if status == "complete" else f" ({status})"
        out.append(RunEntry(str(path.resolve()), f"run · {path.name}{suffix}", "runs"))
    return out


def available_runs() -> list[RunEntry]:
    """Zoo first, then the user's runs, newest first. An unreadable zoo index leaves the zoo out."""
    try:
        zoo_entries = zoo_runs()
    except ValueError:
        zoo_entries = []
    return zoo_entries + user_runs()


def short_label(path: str | Path) -> str:
    """The run directory's name, with "zoo/" in front for the zoo's."""
    path = Path(path)
    return path.name if is_user_run(path) else f"zoo/{path.name}"


def comparable_runs() -> list[RunEntry]:
    """Available runs that have finished training (complete, cancelled or diverged)."""
    out = []
    for entry in available_runs():
        try:
            if io.read_json(Path(entry.path) / io.CONFIG).get("status") in ("complete", "cancelled", "diverged"):
                out.append(entry)
        except (io.CheckpointError, AttributeError):
            continue
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
        for name, value in evaluation.get(rep, {}).items():
            if isinstance(value, dict):
                row.update({f"{name}.{k} ({rep})": v for k, v in value.items() if _is_number(v)})
            elif _is_number(value) or value is None:
                row[f"{name} ({rep})"] = value
    row["recon"] = evaluation.get("recon")
    row["active_latents"] = evaluation.get("activity", {}).get("active_latents")
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
    TCs from the stored evaluation (with 95% intervals) when metrics.json has one, else from the last history record."""
    path = Path(path)
    config = io.read_json(path / io.CONFIG)
    train = config.get("train", {})
    params = config.get("model", {}).get("params", {})
    history = io.read_history(path)
    last = (history or [{}])[-1]
    row = {
        "run": path.name,
        "model": config.get("model", {}).get("name"),
        "dataset": config.get("dataset", {}).get("name"),
        "latent_dim": params.get("latent_dim"),
        "steps": config.get("step", train.get("steps")),
        "status": config.get("status"),
        **{k: last.get(k) for k in HEADLINE_KEYS},
    }
    evaluation = read_evaluation(path)
    if evaluation:
        tc = evaluation["tc"]
        row["TC mean codes"] = report.describe(tc, "mean", "gaussian")
        row["TC sampled codes"] = report.describe(tc, "sampled", "gaussian")
        row["TC of means between active and passive"] = report.describe(tc, "mean", "gaussian", part="between")
        row["TC from"] = f"evaluate, {tc['settings']['n']:,} points"
        row["MIG mean"] = evaluation.get("mean", {}).get("mig")
    elif history:
        row["TC mean codes"], row["TC sampled codes"] = (_plain(history_tc(last, code)) for code in ("mean", "sampled"))
        row["TC from"] = f"last training record, batch of {last.get('tc_n', '?')} (no interval)"
    return row


def _plain(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summaries(entries: list[RunEntry]) -> list[dict[str, Any]]:
    """`run_summary` of each entry with its source; an unreadable run gets a row that says so."""
    rows = []
    for entry in entries:
        try:
            rows.append({"source": entry.source, **run_summary(entry.path)})
        except (io.CheckpointError, AttributeError, KeyError, TypeError) as error:
            rows.append({"source": entry.source, "run": Path(entry.path).name, "status": f"unreadable: {error}"})
    return rows


def read_evaluation(path: str | Path) -> dict[str, Any] | None:
    """metrics.json's "evaluation" (what mtc_core.evaluate returned when the run was evaluated), if any."""
    file = Path(path) / io.METRICS
    if not file.is_file():
        return None
    try:
        evaluation = io.read_json(file).get("evaluation")
    except (io.CheckpointError, AttributeError):
        return None
    # an evaluation from before the TC report (no "tc") is stale: its TCs had no intervals and mixed sizes
    return evaluation if isinstance(evaluation, dict) and isinstance(evaluation.get("tc"), dict) else None


def device_label() -> str:
    """What the app computes on: the GPU's name, or the CPU."""
    device = resolve_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads > 1 else ''})"
