"""Reproduce the paper's claim on the zoo: evaluate every listed model (cached in its metrics.json), aggregate
mean +- sd over seeds per model, and state with the numbers whether

(1) beta-TCVAE and FactorVAE have low sampled TC but clearly higher mean TC, and
(2) RTC-VAE cuts the mean TC by at least 2x against both at a reconstruction error within 10% of theirs
    (read as: at most 10% above theirs).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from mtc_core import runs
from mtc_core.data import make_dataset
from mtc_core.evaluation import tc_report, thresholds, verdicts
from mtc_core.evaluation.scoring import refresh_tc_report
from mtc_core.evaluation.seeds import configuration_key, group_label, group_runs, mean_sd
from mtc_core.evaluation.verdicts import cut, num
from mtc_core.runs import zoo

# (column title, representation, path into the evaluation dict); every TC is the evaluation's TC report (one value
# per quantity: tc_report.tc_report), the split of the Gaussian TC into active and passive latents included
COLUMNS = [
    ("TC mean codes (Gaussian)", None, ("tc", "mean", "gaussian", "value")),
    ("TC mean codes, active latents (Gaussian)", None, ("tc", "split", "mean", "active", "value")),
    ("TC mean codes, between active and passive (Gaussian)", None, ("tc", "split", "mean", "between", "value")),
    ("TC mean codes (kNN)", None, ("tc", "mean", "knn", "value")),
    ("TC sampled codes (Gaussian)", None, ("tc", "sampled", "gaussian", "value")),
    ("TC sampled codes, active latents (Gaussian)", None, ("tc", "split", "sampled", "active", "value")),
    ("TC sampled codes (kNN)", None, ("tc", "sampled", "knn", "value")),
    ("MIG mean", "mean", ("mig",)),
    ("MIG sampled", "sampled", ("mig",)),
    ("DCI dis. mean", "mean", ("dci", "disentanglement")),
    ("SAP mean", "mean", ("sap",)),
    ("FactorVAE mean", "mean", ("factor_vae", "eval_accuracy")),
    ("BetaVAE mean", "mean", ("beta_vae", "eval_accuracy")),
    ("latents/factor mean", "mean", ("disintegration", "latents_per_factor")),
    ("active latents", None, ("activity", "active_latents")),
    ("recon", None, ("recon",)),
]
TC_PENALISED = ("beta_tcvae", "factor_vae")


def _get(evaluation: dict, rep: str | None, path: tuple[str, ...]) -> float | None:
    value = evaluation if rep is None else evaluation.get(rep, {})
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return statistics.mean(value)  # a per-factor list (latents per factor): its average over factors
    return value if isinstance(value, int | float) else None


def evaluate_zoo(root: str | Path, settings: dict, say: Callable[[str], None] = print, skipped: list[str] | None = None) -> list[dict]:
    """One row per zoo model: its label, model key, seed and evaluation (computed once, then read from metrics.json).

    A model that cannot be read or evaluated (a broken config, weights or metrics file, a missing dataset) is
    skipped with a warning through `say` naming it and the reason, also appended to `skipped` if given; the
    others still make the table."""
    rows = []
    entries = zoo.read_index(root)
    for i, entry in enumerate(entries, 1):
        path = Path(entry["path"])
        label, counter = entry.get("label", path.name), f"[{i}/{len(entries)}]"
        try:
            rows.append(_zoo_row(path, label, settings, counter, say))
        except (ValueError, OSError) as e:  # runs.CheckpointError is a ValueError
            say(f"{counter} warning: skipped {label} ({path}): {e}")
            if skipped is not None:
                skipped.append(f"{label} ({path}): {e}")
    return rows


def _zoo_row(path: Path, label: str, settings: dict, counter: str, say: Callable[[str], None]) -> dict:
    import mtc_core

    config = runs.read_json(path / runs.CONFIG)
    model_name, params, seed, dataset = _facts(config, path)
    metrics = runs.read_json(path / runs.METRICS) if (path / runs.METRICS).is_file() else {}
    if not isinstance(metrics, dict):
        raise ValueError(f"{path / runs.METRICS}: not a JSON object (left as it is)")
    evaluation = metrics.get("evaluation")
    stored = evaluation.get("settings") if isinstance(evaluation, dict) else None
    # an evaluation without the TC report ("tc") predates it: its TCs had no intervals, so it is redone
    if not isinstance(stored, dict) or "tc" not in evaluation or any(stored.get(k) != v for k, v in settings.items()):
        say(f"{counter} evaluating {label}")
        model, config = runs.load_run(path)
        evaluation = runs.json_safe(mtc_core.evaluate(model, make_dataset(config["dataset"], model.config.image_shape), **settings))
        runs.write_json(path / runs.METRICS, {**metrics, "evaluation": evaluation})
    elif evaluation["tc"].get("settings", {}).get("report_version") != tc_report.REPORT_VERSION:
        say(f"{counter} {label}: TC report of an earlier version, recomputed on the evaluation's points")
        model, config = runs.load_run(path)
        evaluation = refresh_tc_report(model, make_dataset(config["dataset"], model.config.image_shape), evaluation)
        runs.write_json(path / runs.METRICS, {**metrics, "evaluation": evaluation})
    else:
        say(f"{counter} {label}: stored evaluation")
    return {"label": label, "model": model_name, "seed": seed, "dataset": dataset["name"], "steps": config["train"].get("steps"),
            "params": params, "group": configuration_key(config), "evaluation": evaluation}


def _facts(config, path: Path) -> tuple[str, dict, int, dict]:
    """(model name, model params, seed, dataset spec) of a run's config.json; ValueError naming a missing or bad field."""
    model = config.get("model") if isinstance(config, dict) else None
    train = config.get("train") if isinstance(config, dict) else None
    dataset = config.get("dataset") if isinstance(config, dict) else None
    if not (isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("params"), dict)):
        raise ValueError(f"{path / runs.CONFIG}: needs model.name and model.params")
    if not (isinstance(train, dict) and isinstance(train.get("seed"), int)):
        raise ValueError(f"{path / runs.CONFIG}: needs an integer train.seed")
    if not (isinstance(dataset, dict) and isinstance(dataset.get("name"), str)):
        raise ValueError(f"{path / runs.CONFIG}: needs a dataset with a name")
    return model["name"], model["params"], train["seed"], dataset


def _interval(evaluation: dict, path: tuple[str, ...]) -> list[float] | None:
    """The stored 95% interval of a TC column: path ("tc", code, estimator) or ("tc", "split", code, part)."""
    if path[1] == "split":
        return tc_report.interval(evaluation.get("tc"), path[2], "gaussian", path[3])
    return tc_report.interval(evaluation.get("tc"), path[1], path[2])


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of every column, per model configuration (labelled by its first seed's label, seed
    dropped). Rows come grouped by dataset (in order of first appearance), then in the model registry's order
    (baselines first, RTC-VAE last), then in zoo order: not in the order the models happened to be trained."""
    from mtc_core.models import MODELS

    table = []
    for members in group_runs(rows):
        first = members[0]
        out = {"label": group_label(first["label"]), "model": first["model"], "dataset": first.get("dataset"),
               "steps": first.get("steps"), "seeds": len(members),
               "tc_settings": first["evaluation"].get("tc", {}).get("settings"),
               # each seed's TC report and reconstruction: what the verdicts judge, seed by seed and pair by pair
               "runs": sorted(({"seed": m.get("seed"), "tc": m["evaluation"].get("tc") or {}, "recon": m["evaluation"].get("recon")}
                               for m in members), key=lambda r: (r["seed"] is None, r["seed"] or 0))}
        for title, rep, path in COLUMNS:
            values = [v for m in members if (v := _get(m["evaluation"], rep, path)) is not None]
            out[title] = mean_sd(values)
            out.setdefault("per_seed", {})[title] = values
            if len(members) == 1 and path[-1] == "value":  # one seed: the estimate's own 95% interval instead of an sd
                out.setdefault("ci", {})[title] = _interval(members[0]["evaluation"], path[:-1])
        table.append(out)
    datasets = list(dict.fromkeys(r["dataset"] for r in table))
    models = list(MODELS)
    return sorted(table, key=lambda r: (datasets.index(r["dataset"]),
                                        models.index(r["model"]) if r["model"] in models else len(models)))


def claims(table: list[dict]) -> list[str]:
    """The two statements of the issue, each with the numbers that decide it, judged seed by seed and pair by pair, on
    all latents and on the active latents over the activity cut, claim 2 also on the kNN TC of the means
    (`verdicts`; docs/design.md, "Conclusions that survive the analysis choices"); models are compared within a dataset
    and a training budget."""
    lines = []
    penalised = [r for r in table if r["model"] in TC_PENALISED]
    for r in penalised:
        lines += verdicts.claim_one_lines(r)
    for r in (r for r in table if r["model"] == "rtc_vae"):
        lines += verdicts.claim_two_lines(r, [p for p in penalised if (p.get("dataset"), p.get("steps")) == (r.get("dataset"), r.get("steps"))])
    return lines


def budget_groups(table: list[dict]) -> list[tuple[str, list[dict]]]:
    """(heading, rows) per dataset and training budget: a dataset's first budget in zoo order (the zoo's) is headed by
    the dataset alone, another by "dataset, N training steps". Claims are judged within one group, so a model trained
    longer is compared only with models trained as long (docs/design.md, "Conclusions that survive the analysis
    choices")."""
    groups: dict[tuple, list[dict]] = {}
    for r in table:
        groups.setdefault((r.get("dataset"), r.get("steps")), []).append(r)
    first = _zoo_budgets(table)
    return [(f"{dataset}" if steps == first[dataset] else f"{dataset}, {steps:,} training steps", rows)
            for (dataset, steps), rows in groups.items()]


def _zoo_budgets(rows: list[dict]) -> dict:
    """dataset -> the training steps of its first row in zoo order (the zoo's budget on it)."""
    first: dict = {}
    for r in rows:
        first.setdefault(r.get("dataset"), r.get("steps"))
    return first


BUDGET_IGNORED = ("warmup_steps",)  # scaled with the budget: a longer run of "the same model" has a longer warm-up


def budget_lines(models: list[dict]) -> list[str]:
    """Each run trained at another budget than its dataset's zoo beside the zoo's run of the same model, parameters
    (the warm-up apart) and seed: the TCs with their 95% intervals, the active latents, MIG and the reconstruction;
    then the claims judged on those runs only, at each budget, so a verdict that changes with the budget shows on the
    same models and seeds. Empty when every dataset has one budget."""
    base = _zoo_budgets(models)

    def same(r: dict) -> tuple:
        return r["model"], r.get("dataset"), r.get("seed"), {k: v for k, v in (r.get("params") or {}).items() if k not in BUDGET_IGNORED}

    pairs = [(short, long) for long in models if long.get("steps") != base[long.get("dataset")]
             for short in models if short.get("steps") == base[short.get("dataset")] and same(short) == same(long)]
    if not pairs:
        return []
    verdict_lines = []
    for steps in dict.fromkeys(long["steps"] for _, long in pairs):  # the claims at both budgets, on the same models and seeds
        shorts = list({id(short): short for short, long in pairs if long["steps"] == steps}.values())
        longs = list({id(long): long for _, long in pairs if long["steps"] == steps}.values())
        for rows, budget in ((shorts, base[shorts[0].get("dataset")]), (longs, steps)):
            verdict_lines += [f"**At {budget:,} steps** ({', '.join(r['label'] for r in rows)}):", "",
                              *[f"- {c}" for c in claims(aggregate(rows))], ""]
    columns = PER_SEED[:1] + PER_SEED[2:]  # the split's "between" left out
    head = ["model", "training steps", *[c[0] for c in columns], *RUN_TAIL]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pair in pairs:
        for row in pair:
            lines.append("| " + " | ".join([row["label"], f"{row['steps']:,}", *_run_cells(row["evaluation"], columns)]) + " |")
    return [*lines, "", "The claims on these runs alone at each budget (the zoo's other seeds left out):", "", *verdict_lines[:-1]]


def _cell(row: dict, title: str) -> str:
    (mean, sd), ci = row[title], row.get("ci", {}).get(title)
    if mean is None:
        return "-"
    if ci is not None:
        return f"{num(mean)} [{num(ci[0])}, {num(ci[1])}]"
    return f"{num(mean)} ± {num(sd)}" if sd is not None else num(mean)


PER_SEED = [("mean codes: Gaussian TC", "mean", "gaussian", None), ("... between active and passive", "mean", "gaussian", "between"),
            ("sampled codes: Gaussian TC", "sampled", "gaussian", None), ("mean codes: kNN TC", "mean", "knn", None),
            ("sampled codes: kNN TC", "sampled", "knn", None)]


def per_seed_lines(rows: list[dict]) -> list[str]:
    """One line per zoo model (every seed) with its TCs and 95% intervals, as the app shows them."""
    head = ["model", *[c[0] for c in PER_SEED], *RUN_TAIL]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join([row["label"], *_run_cells(row["evaluation"], PER_SEED)]) + " |")
    return lines


RUN_TAIL = ("active latents", "MIG mean", "recon")  # the columns after a run's TCs in `_run_cells`


def _run_cells(ev: dict, columns: list[tuple]) -> list[str]:
    """One run's cells: its TCs with their 95% intervals (`columns`: PER_SEED entries), then RUN_TAIL."""
    cells = [tc_report.describe(ev.get("tc"), code, est, part) for _, code, est, part in columns]
    mig, recon = _get(ev, "mean", ("mig",)), ev.get("recon")
    return [*cells, str(_get(ev, None, ("activity", "active_latents"))), *("-" if v is None else num(v) for v in (mig, recon))]


SHOWN_CUTS = (1e-3, 10 ** -2.5, 1e-2, 10 ** -1.5, 1e-1)  # the cuts of the curve RESULTS.md tabulates


def configuration_curves(row: dict) -> dict[str, dict | None]:
    reports = [r["tc"] for r in row.get("runs", [])]
    return {part: thresholds.configuration_curve(reports, "mean", part) for part in ("active", "between")}


def curve_lines(table: list[dict]) -> list[str]:
    """Per dataset, per configuration: the mean codes' Gaussian TC among active latents and between active and passive,
    and the number of active latents, at SHOWN_CUTS (mean over seeds), with each seed's chosen cut and stable range."""
    lines = []
    for dataset in dict.fromkeys(r.get("dataset") for r in table):
        head = ["model", "seeds", "chosen cut [stable range] per seed", *[f"Var mu_j > {cut(t)}" for t in SHOWN_CUTS]]
        lines += [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in (r for r in table if r.get("dataset") == dataset):
            curves, cells = configuration_curves(r), []
            if curves["active"] is None:
                cells = ["no curve stored"] + ["-"] * len(SHOWN_CUTS)
            else:
                acts = [thresholds.activity(run["tc"]) for run in r["runs"]]
                cells.append("; ".join(f"{cut(a['threshold'])} " + (f"[{cut(a['stable'][0])}, {cut(a['stable'][1])}]"
                                                                      if a.get("stable") else "[none]") for a in acts))
                for t in SHOWN_CUTS:
                    i = next((i for i, u in enumerate(curves["active"]["thresholds"]) if abs(u / t - 1) < 1e-6), None)
                    cells.append("-" if i is None else f"{num(curves['active']['mean'][i])} / {num(curves['between']['mean'][i])} / "
                                                       f"{curves['active']['active_count'][i]:.3g}")
            lines.append("| " + " | ".join([r["label"], str(r["seeds"]), *cells]) + " |")
        lines.append("")
    return lines


def markdown(table: list[dict], settings: dict, command: str, models: list[dict] | None = None) -> str:
    tc_columns = [c[0] for c in COLUMNS if c[2][0] == "tc"] + ["active latents", "recon"]
    metric_columns = [c[0] for c in COLUMNS if c[0] not in tc_columns]

    def rows(columns: list[str]) -> list[str]:
        head = ["model", "seeds", *columns]
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                *["| " + " | ".join([r["label"], str(r["seeds"]), *[_cell(r, c) for c in columns]]) + " |" for r in table]]

    tc_settings = next((r["tc_settings"] for r in table if r.get("tc_settings")), {})
    rule = next((a["rule"] for r in table for run in r.get("runs", []) if (a := thresholds.activity(run["tc"])) and a.get("rule")), None)
    claim_lines = [line for heading, group in budget_groups(table) for line in [f"### {heading}", "", *[f"- {c}" for c in claims(group)], ""]]
    budget = budget_lines(models or [])
    lines = ["# Results: mean vs sampled total correlation on the model zoo", "",
             f"Made by `{command}` from `pretrained/index.json`; `mtc_core.evaluate` settings {json.dumps(settings)}. "
             "Values are mean ± sd over seeds; a model with one seed shows its estimate with the 95% interval in brackets. "
             "TC in nats; recon = Bernoulli NLL per image (nats).", "",
             "## Total correlation", "",
             f"`mtc_core.evaluation.tc_report` on the {tc_settings.get('n', '?')} training points of the evaluation: the Gaussian TC "
             f"over all of them (95% interval: {tc_settings.get('bootstrap', '?')} bootstrap resamples), the kNN TC as the "
             f"mean of {tc_settings.get('knn_batches', '?')} disjoint batches of {tc_settings.get('knn_points', '?')} distinct "
             "points, the same points for mean and sampled codes. Active latents: Var mu_j above "
             + (f"each run's own cut, chosen from the data ({rule}; the cuts are under \"Over the activity cut\")" if rule
                else f"{tc_settings.get('active_threshold', '?')}")
             + "; the Gaussian TC of all latents is exactly TC(active) + TC(passive) + I(active; passive) (docs/design.md: "
             "Active and passive latents), the third column.", "",
             *rows(tc_columns), "",
             "## Over the activity cut", "",
             "Where a latent counts as active is an analysis choice, so the split is shown over a range of cuts "
             "(docs/design.md, \"Conclusions that survive the analysis choices\"). Each cell: the mean codes' Gaussian TC among "
             "the active latents / between active and passive latents (bias-corrected point estimates, nats) / the number of "
             "active latents, each the mean over seeds. The stable range of a seed: the cuts of the curve that give the "
             "active set of its chosen cut.", "",
             *curve_lines(table),
             *(["![activity curves](docs/results/activity_curves.png)", ""] if any(configuration_curves(r)["active"] for r in table) else []),
             "## Disentanglement metrics", "", *rows(metric_columns), "",
             "## The claims", "", *[f"- {c}" for c in verdicts.CRITERIA], "",
             "Claim 1 is judged seed by seed, claim 2 pair of seeds by pair (every seed of RTC-VAE against every seed of "
             "the other model): a claim holds when it holds for every seed or pair, is \"mixed\" when it holds for some (the "
             "numbers say which) and does not hold when it holds for none. A value whose 95% interval reaches 0 is \"below "
             "resolution\", and two such values are not divided. On the active latents a claim is judged at every cut of "
             "the curves where the active set of every seed involved is stable (the intersection of their stable ranges); "
             "it holds \"on the active latents\" only if it holds at all of them, otherwise it \"depends on the activity "
             "threshold\". Claim 2 is judged on the Gaussian TC of the means, which the Gaussian penalty optimises, and "
             "on the kNN TC of the means, which no penalty optimises.", "",
             *claim_lines,
             *(["## At a longer training budget", "",
                "The training budget is an analysis choice too: the zoo trains far shorter than the literature. The runs "
                "below were trained longer (the warm-up scaled alike) and are shown beside the zoo's run of the same model "
                "and seed; their claims are judged above under their own heading, against each other only. Each value with "
                "its 95% interval.", "", *budget, ""] if budget else []),
             *(["## Every model, every seed", "", "Each value with its 95% interval.", "", *per_seed_lines(models), ""] if models else []),
             "![mean vs sampled TC](docs/results/tc_mean_vs_sampled.png)", "", "![metrics](docs/results/metrics.png)", ""]
    return "\n".join(lines)
