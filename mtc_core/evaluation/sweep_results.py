"""Sweep results: a sweep folder (mtc_core.training.sweep) -> a table of mean +- sd over seeds and the figure of
Locatello et al. 2019 (ICML), Sec. 5.1 (mean and sampled TC against the regularisation strength), for our models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtc_core import runs
from mtc_core.evaluation import tc_report
from mtc_core.evaluation.seeds import configuration_key, group_runs, mean_sd
from mtc_core.models import MODELS, REGULARISERS
from mtc_core.training.history import history_tc
from mtc_core.training.sweep import EXECUTION, PER_RUN, format_value


def load_sweep(folder: str | Path) -> list[dict]:
    """One row per run directory (a sub-folder with config.json) of a sweep folder, sorted by name.

    Keys: run, run_dir, model, seed, status, step, params (the model's full config), train (the other train
    settings), tc_mean, tc_sampled, recon (history.jsonl's last record: Gaussian TC of the mean and of the sampled
    codes on the held-out batch, `train.history_tc`) and eval_tc_mean, eval_tc_sampled, eval_recon (metrics.json
    "evaluation": its TC report's Gaussian TC of mean and sampled codes; None where there is no evaluation)."""
    rows = []
    for run_dir in sorted(p for p in Path(folder).iterdir() if (p / runs.CONFIG).is_file()):
        config = runs.read_json(run_dir / runs.CONFIG)
        last = runs.last_history_record(run_dir) or {}  # read from the file's end
        metrics = runs.read_json(run_dir / runs.METRICS) if (run_dir / runs.METRICS).is_file() else {}
        evaluation = metrics.get("evaluation") or {}
        train_config = config.get("train", {})
        rows.append({
            "run": run_dir.name, "run_dir": str(run_dir), "model": config["model"]["name"], "seed": train_config.get("seed"),
            "status": config.get("status"), "step": config.get("step"), "params": config["model"].get("params", {}),
            "train": {k: v for k, v in train_config.items() if k not in (*PER_RUN, *EXECUTION)},
            "group": configuration_key(config),
            "tc_mean": history_tc(last, "mean"), "tc_sampled": history_tc(last, "sampled"), "recon": last.get("recon"),
            "eval_tc_mean": tc_report.value(evaluation.get("tc"), "mean", "gaussian"),
            "eval_tc_sampled": tc_report.value(evaluation.get("tc"), "sampled", "gaussian"), "eval_recon": evaluation.get("recon"),
        })
    return rows


def _sort_value(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, int | float) and not isinstance(value, bool) else (1, 0, str(value))


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of the final TCs and recon, per model and setting (complete runs only).

    The numbers come from metrics.json "evaluation" when every complete run has one, else from history.jsonl for
    all (never a mix); each row says which in "source". "setting" shows the fields that vary between one model's
    rows, plus its regularisation strength. Keys: model, setting, settings, regulariser, value, n, seeds,
    not_complete, source, tc_mean, tc_mean_sd, tc_sampled, tc_sampled_sd, recon, recon_sd (sd None for n < 2)."""
    complete = [r for r in rows if r["status"] == "complete"]
    source = "evaluation" if complete and all(r["eval_tc_mean"] is not None for r in complete) else "history"
    prefix = "eval_" if source == "evaluation" else ""
    groups = group_runs(rows)
    values_per_key: dict[tuple[str, str], set[str]] = {}
    for members in groups:
        for k, v in {**members[0]["params"], **members[0]["train"]}.items():
            values_per_key.setdefault((members[0]["model"], k), set()).add(json.dumps(v))
    table = []
    for members in groups:
        model, done = members[0]["model"], [r for r in members if r["status"] == "complete"]
        merged = {**members[0]["params"], **members[0]["train"]}
        regulariser = REGULARISERS.get(model)
        shown = sorted(k for k in merged if len(values_per_key[(model, k)]) > 1 or k == regulariser)
        row = {"model": model, "setting": ", ".join(f"{k}={format_value(merged[k])}" for k in shown) or "-",
               "settings": {k: merged[k] for k in shown}, "regulariser": regulariser, "value": merged.get(regulariser),
               "n": len(done), "seeds": sorted(r["seed"] for r in done), "not_complete": len(members) - len(done), "source": source}
        for metric in ("tc_mean", "tc_sampled", "recon"):
            row[metric], row[f"{metric}_sd"] = mean_sd([r[prefix + metric] for r in done if r[prefix + metric] is not None])
        table.append(row)
    order = list(MODELS)
    return sorted(table, key=lambda r: (order.index(r["model"]) if r["model"] in order else len(order), r["model"],
                                        [_sort_value(v) for v in r["settings"].values()]))


SOURCES = {
    "history": "history.jsonl, last record: Gaussian TC of the mean and of the sampled codes of the held-out batch; "
               "recon = Bernoulli NLL (nats)",
    "evaluation": "metrics.json evaluation: Gaussian TC of the mean and of the sampled codes (evaluate's points); "
                  "recon = Bernoulli NLL of test images (nats)",
}


def cell(mean: float | None, sd: float | None) -> str:
    """A table cell: '0.123 ± 0.004', '0.123' without an sd, '-' without a value."""
    if mean is None:
        return "-"
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"


def markdown_table(table: list[dict]) -> str:
    """The aggregate as markdown: mean ± sd over seeds, with a line saying where the numbers come from."""
    lines = [f"Source: {SOURCES[table[0]['source']] if table else 'no runs'}. Mean ± sd over seeds (sample sd).", "",
             "| model | setting | seeds | TC mean codes | TC sampled codes | recon |", "|---|---|---|---|---|---|"]
    for r in table:
        seeds = ",".join(map(str, r["seeds"])) or "-"
        if r["not_complete"]:
            seeds += f" (+{r['not_complete']} not complete)"
        lines.append(f"| {r['model']} | {r['setting']} | {seeds} | {cell(r['tc_mean'], r['tc_mean_sd'])} | "
                     f"{cell(r['tc_sampled'], r['tc_sampled_sd'])} | {cell(r['recon'], r['recon_sd'])} |")
    return "\n".join(lines) + "\n"


def plot_regularisation(table: list[dict], path: str | Path) -> Path:
    """TC of the sampled (left) and mean (right) codes against regularisation strength, one line per model (and per
    value of its other varying fields), error bars sd over seeds; models without a regulariser are dashed lines.
    Locatello et al. 2019, Sec. 5.1 (their Fig. 2). Writes a PNG; ValueError when no row has numbers."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, safe inside the app's server

    rows = [r for r in table if r["tc_mean"] is not None and r["tc_sampled"] is not None]  # both panels need a number
    if not rows:
        raise ValueError("no complete run with TC numbers to plot")
    lines: dict[str, list[dict]] = {}
    for r in rows:
        if r["regulariser"] is not None and isinstance(r["value"], int | float):
            others = ", ".join(f"{k}={format_value(v)}" for k, v in r["settings"].items() if k != r["regulariser"])
            lines.setdefault(f"{r['model']} ({r['regulariser']}{', ' + others if others else ''})", []).append(r)
    baselines = [r for r in rows if r["regulariser"] is None]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    xs = [r["value"] for points in lines.values() for r in points]
    for ax, metric, which in zip(axes, ("tc_sampled", "tc_mean"), ("sampled", "mean"), strict=True):
        for label, points in lines.items():
            points = sorted(points, key=lambda r: r["value"])
            ax.errorbar([p["value"] for p in points], [p[metric] for p in points], yerr=[p[f"{metric}_sd"] or 0 for p in points],
                        marker="o", capsize=3, label=label)
        for i, r in enumerate(baselines):
            label = r["model"] + (f" ({r['setting']})" if r["settings"] else "")
            ax.axhline(r[metric], linestyle="--", color=f"C{(len(lines) + i) % 10}", label=label)
        if xs:
            positive = min(xs) > 0
            ax.set_xscale("log" if positive else "symlog", **({} if positive else {"linthresh": min([x for x in xs if x > 0], default=1)}))
            ax.set_xticks(sorted(set(xs)), labels=[format_value(x) for x in sorted(set(xs))])  # the grid's values, not powers of 10
            ax.minorticks_off()
        ax.set_xlabel("regularisation strength (beta, gamma, lambda_od or lambda_t)")
        ax.set_ylabel(f"TC of the {which} codes (nats)")
        ax.set_title(f"{which} representation")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize="small")
    source = "metrics.json evaluation, Gaussian TC" if rows[0]["source"] == "evaluation" else "history.jsonl last record"
    fig.suptitle(f"Total correlation vs regularisation, mean ± sd over seeds ({source}); cf. Locatello et al. 2019, Sec. 5.1")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path

