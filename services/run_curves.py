"""What the curve views read from runs (no streamlit here): several runs' histories, a run's reconstruction as every
page shows it, the sortable table of runs, and the points of TC against regularisation strength for the zoo or a
sweep folder (read by `mtc_core.evaluation.sweep_results.load_sweep`, one point per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtc_core import runs
from mtc_core.evaluation import sweep_results, tc_report
from mtc_core.models import FAMILIES, REGULARISERS
from services import run_tables
from services.run_listing import RunEntry, inspect_run, short_label


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def recon(path: str | Path) -> tuple[float | None, float | None]:
    """(the stored evaluation's reconstruction, the one every page shows; the last training record's): each None when
    absent."""
    evaluation = run_tables.read_evaluation(path)
    try:
        last = runs.last_history_record(path) or {}
    except (ValueError, OSError):
        last = {}
    return _number((evaluation or {}).get("recon")), _number(last.get("recon"))


def histories(entries: list[RunEntry]) -> tuple[list[dict], list[str]]:
    """([{"label", "path", "history"}, ...] of the runs whose history can be read, [what could not be read, why])."""
    out, problems = [], []
    for e in entries:
        try:
            history = runs.read_history(e.path)
        except (ValueError, OSError) as error:
            problems.append(f"{short_label(e.path)}: {error}")
            continue
        out.append({"label": short_label(e.path), "path": e.path, "history": history})
    return out, problems


def strength(config: dict) -> tuple[str | None, Any]:
    """(the model's swept field, its value in the run's config; the config default's when not stored)."""
    model = (config.get("model") or {}).get("name")
    field = REGULARISERS.get(model)
    return field, ((config.get("model") or {}).get("params") or {}).get(field) if field else None


def run_table(entries: list[RunEntry]) -> list[dict]:
    """One row per run for a sortable table: what it is (model, its swept field = value, dataset, seed, status, step)
    and its final numbers, each a plain number so that the columns sort: the Gaussian TC of the mean and of the sampled
    codes from its stored TC report and its stored evaluation's reconstruction (None without one)."""
    rows = []
    for e in entries:
        config, _ = inspect_run(e.path)
        field, value = strength(config or {})
        evaluation = run_tables.read_evaluation(e.path)
        tc = (evaluation or {}).get("tc")
        rows.append({"run": short_label(e.path), "source": e.source, "model": FAMILIES.get(e.model or "", e.model),
                     "strength": f"{field}={value}" if field else "-", "dataset": e.dataset, "seed": e.seed, "status": e.status,
                     "step": (config or {}).get("step"), "TC mean codes": tc_report.value(tc, "mean", "gaussian"),
                     "TC sampled codes": tc_report.value(tc, "sampled", "gaussian"),
                     "recon": _number((evaluation or {}).get("recon"))})
    return rows


def strength_points(folder: str | Path, only: list[str] | None = None) -> tuple[list[dict], int]:
    """(points for `mtc_core.visualize.curves.strength_figure`, runs left out): one per complete run of the folder (the zoo
    or a sweep folder; `only`: these run paths of it) with a stored TC report: its family, swept field and strength,
    seed, dataset, training steps and the Gaussian TC of its mean and sampled codes (`sweep_results.load_sweep`'s eval_tc_*). Runs
    without a stored report or not complete are counted, not drawn."""
    keep = None if only is None else {str(Path(p).resolve()) for p in only}
    points, left_out = [], 0
    for row in sweep_results.load_sweep(folder):
        if keep is not None and str(Path(row["run_dir"]).resolve()) not in keep:
            continue
        if row["status"] != "complete" or row["eval_tc_mean"] is None or row["eval_tc_sampled"] is None:
            left_out += 1
            continue
        config, _ = inspect_run(row["run_dir"])
        field = REGULARISERS.get(row["model"])
        points.append({"family": FAMILIES.get(row["model"], row["model"]), "model": row["model"], "field": field,
                       "strength": row["params"].get(field) if field else None, "seed": row["seed"], "run": row["run"],
                       "dataset": ((config or {}).get("dataset") or {}).get("name"), "steps": ((config or {}).get("train") or {}).get("steps"),
                       "tc_mean": row["eval_tc_mean"], "tc_sampled": row["eval_tc_sampled"]})
    return points, left_out


INTERVAL_COLUMNS = ("TC mean codes", "TC sampled codes", "TC of means between active and passive")  # text: value [95% CI]


def models_rows(entries: list[RunEntry]) -> list[dict]:
    """The Models table (`run_tables.summaries`) with one reconstruction: "recon", the stored evaluation's (what every
    page shows, None without one), beside the TCs; the last training record's kept as "recon (last training batch)"."""
    rows = []
    for entry, row in zip(entries, run_tables.summaries(entries), strict=True):
        row = dict(row)
        last = row.pop("recon", None)
        evaluated = _number((run_tables.read_evaluation(entry.path) or {}).get("recon"))
        ordered = {}
        for key, value in row.items():
            ordered[key] = value
            if key == "status":
                ordered["recon"] = evaluated
        ordered.setdefault("recon", evaluated)
        ordered["recon (last training batch)"] = last
        rows.append(ordered)
    return rows
