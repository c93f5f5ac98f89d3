"""The tables the app shows from runs' stored evaluations (no streamlit here): one row per run, configurations
aggregated over seeds (`mtc_core.evaluation.seeds`, as RESULTS.md is), an evaluation flattened into one row, and the
Models page's headline numbers per run."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from mtc_core import runs
from mtc_core.evaluation import tc_report
from mtc_core.evaluation.seeds import group_label, group_runs, mean_sd
from mtc_core.models import FAMILIES
from mtc_core.training.history import history_tc
from mtc_core.visualize.charts import short_name
from mtc_core.visualize.compare_charts import seeds_text
from services.run_listing import RunEntry, inspect_run, short_label

HEADLINE_KEYS = ("recon", "kl", "active_dims")


def evaluation_rows(entries: list[RunEntry]) -> tuple[list[dict], list[RunEntry]]:
    """(rows for mtc_core.evaluation.claims.aggregate, the entries without a stored evaluation). A row is one run: its label,
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


TC_QUANTITIES = {  # name -> (code, estimator, part of the Gaussian split or None); values read with tc_report.value
    "mean": ("mean", "gaussian", None), "sampled": ("sampled", "gaussian", None),
    "mean_knn": ("mean", "knn", None), "sampled_knn": ("sampled", "knn", None),
    "mean_between": ("mean", "gaussian", "between"), "mean_active": ("mean", "gaussian", "active"),
    "mean_passive": ("mean", "gaussian", "passive"),
}


def aggregate(rows: list[dict]) -> list[dict]:
    """Seeds aggregated per configuration (rows from `evaluation_rows`), in the order of the rows: label (without the
    seed), family, model, dataset, seeds, paths, and for each of TC_QUANTITIES {"mean", "sd" (None for one seed),
    "per_seed": [...], "ci": the 95% interval of a single seed's estimate}, with mtc_core.evaluation.seeds, as
    `reproduce` uses it for RESULTS.md, so the numbers are the same."""
    out = []
    for members in group_runs(rows):
        members = sorted(members, key=lambda r: r["seed"] if r["seed"] is not None else -1)
        first = members[0]
        item = {"label": group_label(first["label"]), "family": FAMILIES.get(first["model"], first["model"]), "model": first["model"],
                "dataset": first["dataset"], "seeds": [m["seed"] for m in members], "paths": [m["path"] for m in members]}
        for name, (code, estimator, part) in TC_QUANTITIES.items():
            values = [v for m in members if (v := tc_report.value(m["evaluation"]["tc"], code, estimator, part)) is not None]
            mean, sd = mean_sd(values)
            ci = tc_report.interval(first["evaluation"]["tc"], code, estimator, part) if len(members) == 1 else None
            item[name] = {"mean": mean, "sd": sd, "per_seed": values, "ci": ci}
        recon = [m["evaluation"]["recon"] for m in members if _is_number(m["evaluation"].get("recon"))]
        item["recon"] = dict(zip(("mean", "sd"), mean_sd(recon), strict=True))
        out.append(item)
    return out


SUMMARY_COLUMNS = {"mean": "TC mean codes", "sampled": "TC sampled codes",
                   "mean_between": "TC mean codes between active and passive (Gaussian)"}
SD_HEADER, CI_HEADER = "mean ± sd over seeds", "95% interval (one seed only)"


def _number(v: float, digits: int = 3) -> str:
    if v <= 0:
        return "0 (raised to 0)"
    return f"{v:.{digits}f}"


def _over_seeds(value: dict, digits: int = 3) -> str:
    """mean ± sd over seeds; one seed: its value alone (no sd)."""
    if value["mean"] is None:
        return "n/a"
    return _number(value["mean"], digits) + (f" ± {value['sd']:.{digits}f}" if value["sd"] is not None else "")


def _one_seed_interval(value: dict) -> str:
    """A one-seed configuration's 95% interval; "" where the configuration has several seeds (their sd says the spread)."""
    if value["sd"] is not None or value.get("ci") is None:
        return ""
    lo, hi = value["ci"]
    return f"[{max(lo, 0.0):.3f}, {hi:.3f}]" + (" (lower end clipped at 0)" if lo < 0 else "")


def configuration_table(groups: list[dict], estimator: str = "gaussian") -> list[dict]:
    """Compare's table, one row per configuration (`aggregate`'s groups): its label without the dataset, family, seeds
    as "3 (0, 1, 2)", and per TC one column of one convention each: mean ± sd over seeds, and a one-seed
    configuration's 95% interval; then recon (mean ± sd over seeds)."""
    suffix = "" if estimator == "gaussian" else "_knn"
    rows = []
    for g in groups:
        row = {"configuration": short_name(g["label"], g["dataset"]), "family": g["family"], "seeds": seeds_text(g["seeds"])}
        for key, title in SUMMARY_COLUMNS.items():
            value = g[key if key == "mean_between" else key + suffix]
            row[f"{title}: {SD_HEADER}"] = _over_seeds(value)
            row[f"{title}: {CI_HEADER}"] = _one_seed_interval(value)
        recon = g["recon"]
        row[f"recon: {SD_HEADER}"] = "n/a" if recon["mean"] is None else (
            f"{recon['mean']:.2f}" + (f" ± {recon['sd']:.2f}" if recon["sd"] is not None else ""))
        rows.append(row)
    return rows


def flatten_evaluation(evaluation: dict[str, Any]) -> dict[str, Any]:
    """One table row from an mtc_core.evaluate result: its TCs first ("gaussian_tc (mean)", with their 95% intervals
    and the active/passive split of the means), every other number of the mean and sampled codes as
    "name (mean)" / "name (sampled)", nested scores as "metric.key (rep)", then recon and active latents."""
    row: dict[str, Any] = {}
    tc = evaluation.get("tc")
    for estimator in ("gaussian", "knn"):
        for code in ("mean", "sampled"):
            row[f"{estimator}_tc ({code})"] = tc_report.value(tc, code, estimator)
            row[f"{estimator}_tc 95% CI ({code})"] = tc_report.describe(tc, code, estimator)
    for part in ("active", "passive", "between"):
        row[f"gaussian_tc {part} (mean)"] = tc_report.value(tc, "mean", "gaussian", part)
    row["dataset_mc_tc upper estimate of the mixture's TC (not a peer)"] = (
        tc_report.value(tc, "mixture", "dataset_mc") if tc_report.value(tc, "mixture", "dataset_mc") is not None
        else tc_report.value(tc, "sampled", "dataset_mc"))
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


def run_summary(path: str | Path) -> dict[str, Any]:
    """One row of the Models table: what the run is and its headline numbers (last history record); its Gaussian
    TCs from the stored evaluation (with 95% intervals) when metrics.json has one, else from the last history record.
    A history file that cannot be read leaves those columns empty and says so in "history"."""
    path = Path(path)
    config, problem = inspect_run(path)
    if config is None:
        raise runs.CheckpointError(problem)
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    params = config["model"].get("params", {})
    try:  # the last record only, read from the file's end: a table of every run reads no whole history
        last, history_note = runs.last_history_record(path), None
    except (ValueError, OSError) as error:
        last, history_note = None, f"unreadable: {error}"
    history, last = last is not None, last or {}
    row = {
        "run": path.name,
        "model": config["model"]["name"],
        "dataset": config["dataset"].get("name"),
        "latent_dim": params.get("latent_dim"),
        "steps": config.get("step", train.get("steps")),
        "status": config.get("status"),
        **{k: last.get(k) if _is_number(last.get(k)) else None for k in HEADLINE_KEYS},  # one type per column
    }
    if history_note:
        row["history"] = history_note
    evaluation = read_evaluation(path)
    if evaluation:
        tc = evaluation["tc"]
        row["TC mean codes"] = tc_report.describe(tc, "mean", "gaussian")
        row["TC sampled codes"] = tc_report.describe(tc, "sampled", "gaussian")
        row["TC of means between active and passive"] = tc_report.describe(tc, "mean", "gaussian", part="between")
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
    file = Path(path) / runs.METRICS
    try:
        stat = file.stat()
    except OSError:
        return None
    return _evaluation(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _evaluation(file: str, mtime: int, size: int) -> dict[str, Any] | None:
    try:
        metrics = runs.read_json(file)
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
    """Whether `tc` has the nesting of an tc_report.tc_report (code -> estimator -> entry; split -> code -> part ->
    entry; index lists): the shape every reader of a report relies on."""
    if not isinstance(tc, dict):
        return False
    nested = [tc.get(code, {}) for code in ("mean", "sampled")] + list((tc.get("split") or {}).values()) \
        if isinstance(tc.get("split", {}), dict) else None
    return (nested is not None and all(isinstance(n, dict) and all(isinstance(e, dict) for e in n.values()) for n in nested)
            and all(isinstance(tc.get(k, []), list) for k in ("active", "passive", "dropped"))
            and isinstance(tc.get("settings", {}), dict))
