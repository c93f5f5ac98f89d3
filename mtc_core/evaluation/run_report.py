"""A model's analysis as one self-contained HTML file (`mtc report RUN`, the Models page's "Download report (HTML)").

What it holds, each from the one place the pages read it from: the run's name and config (model, hyperparameters,
seed, steps, dataset, the command); the TC report of its stored evaluation (metrics.json's "evaluation", written by
`mtc evaluate`), formatted with `tc_report.describe` as every page formats it (values with 95% intervals, clipped values
labelled), the dataset Monte-Carlo estimate apart with `tc_report.mixture_note`'s warning; the latents' activity
(Var(mu_j), E[sigma_j^2], the cut and its rule); the metrics; the training curves from history.jsonl; and, when the
model loads, a latent traversal. `mtc_core.visualize.report` draws it and escapes every string the run's files hold.
"""

from __future__ import annotations

import datetime
import io
import json
import math
from pathlib import Path
from typing import Any

from mtc_core import runs
from mtc_core.evaluation import tc_report
from mtc_core.visualize import report as html
from mtc_core.visualize.figures import MEAN_COLOUR, SAMPLED_COLOUR

CODES = ("mean", "sampled")
PART_LABELS = {"all": "all latents", "active": "among active latents", "passive": "among passive latents",
               "between": "between active and passive, I(A; P)"}
TRAVERSAL_STEPS, TRAVERSAL_IMAGES = 8, 200  # columns of the traversal grid; images encoded to pick its base and order


def check_run_folder(run: Path) -> dict:
    """The run's validated config.json; ValueError in one line for a folder that holds no run."""
    if not run.is_dir():
        raise ValueError(f"{run}: not a folder")
    if not (run / runs.CONFIG).is_file():
        raise ValueError(f"{run}: not a run folder (no {runs.CONFIG})")
    return runs.read_run_config(run)


def run_report_html(run: str | Path, *, traversal: bool = True) -> str:
    """The report of the run folder `run` as an HTML document (str). ValueError for a folder that holds no run; a
    metrics.json, history or model that cannot be read leaves its section saying why."""
    run = Path(run)
    config = check_run_folder(run)
    evaluation, note = stored_evaluation(run)
    sections = [html.Section("Run", run_section(run, config), "run")]
    if evaluation is None:
        sections.append(html.Section("Total correlation", html.paragraph(note, "note"), "tc"))
    else:
        sections += [html.Section("Total correlation (nats)", tc_section(evaluation.get("tc")), "tc"),
                     html.Section("Active and passive latents", activity_section(evaluation), "activity"),
                     html.Section("Metrics", metrics_section(evaluation), "metrics")]
    sections.append(html.Section("Training curves", curves_section(run), "curves"))
    if traversal:
        sections.append(html.Section("Latent traversal", traversal_section(run), "traversal"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from mtc_core import __version__

    return html.document(f"MTC Explorer report: {run.name}", sections,
                         subtitle=f"Written {stamp} by mtc_core {__version__} from the files of {run.name}. Every number is "
                                  "in nats unless said otherwise; the TCs in the tables come from the run's stored TC report "
                                  f"({runs.METRICS}).")


def stored_evaluation(run: Path) -> tuple[dict | None, str]:
    """(metrics.json's "evaluation" when it holds a TC report, else None; the reason there is none)."""
    file = run / runs.METRICS
    if not file.is_file():
        return None, f"No stored evaluation: `mtc evaluate {run}` writes one to {runs.METRICS}."
    try:
        metrics = runs.read_json(file)
    except (ValueError, OSError) as error:
        return None, f"{runs.METRICS} cannot be read: {runs.error_text(error)}"
    evaluation = metrics.get("evaluation") if isinstance(metrics, dict) else None
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("tc"), dict):
        return None, f"{runs.METRICS} holds no TC report (its evaluation predates it, or is missing): `mtc evaluate {run}`."
    return evaluation, ""


def run_section(run: Path, config: dict) -> str:
    from mtc_core.models import MODELS

    model = config["model"]
    name = MODELS[model["name"]].display_name
    if model["name"] == "rtc_vae":
        name += " (our reconstruction of Cheng et al.; the exact loss is not published)"
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    rows = [["run", run.name], ["model", f"{name} ({model['name']})"], ["status", config.get("status", "n/a")],
            ["steps trained", config.get("step", "n/a")], ["seed", train.get("seed", "n/a")],
            ["dataset", _json(config.get("dataset"))]]
    rows += [[f"train: {k}", _json(v)] for k, v in sorted(train.items()) if k not in ("model", "model_params", "dataset", "seed")]
    if isinstance(config.get("message"), str) and config["message"]:
        rows.append(["message", config["message"]])
    params = model.get("params", {})
    out = html.table(["setting", "value"], rows, table_id="run-config")
    out += html.table(["hyperparameter", "value"], [[k, _json(v)] for k, v in sorted(params.items())], caption="Model config",
                      table_id="hyperparameters")
    if isinstance(config.get("command"), str):
        out += html.paragraph("The command that made it:") + html.preformatted(config["command"])
    if isinstance(config.get("versions"), dict):
        out += html.paragraph("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(config["versions"].items())), "muted")
    return out


def tc_section(tc: Any) -> str:
    """The TC table (estimator rows, mean and sampled codes side by side), where the Gaussian TC lives, and the mixture
    estimate apart with its warning: the rows `ui.widgets.tc_estimates` and the Your codes split table show."""
    settings = tc.get("settings") if isinstance(tc, dict) and isinstance(tc.get("settings"), dict) else {}
    knn = tc.get("mean", {}).get("knn") if isinstance(tc.get("mean"), dict) else None
    knn = knn if isinstance(knn, dict) else {}
    rows = [["Gaussian, -1/2 log det R, bias-corrected", *(tc_report.describe(tc, c, "gaussian") for c in CODES),
             _count(settings.get("n")), f"+- 1.96 bootstrap sd ({settings.get('bootstrap', '?')} resamples)"],
            ["kNN (KSG, Gaussian-reference corrected)", *(tc_report.describe(tc, c, "knn") for c in CODES),
             f"{knn.get('batches', 0)} batches of {_count(knn.get('n', 0))} distinct", "t interval over the batches"]]
    out = html.table(["estimator", "mean codes", "sampled codes", "points", "95% interval"], rows,
                     caption="TC estimates with 95% intervals", table_id="tc-table")
    if (note := tc_report.mixture_note(tc)) is not None:
        out += html.paragraph(note, "note")
    split = [[label, *(tc_report.describe(tc, c, "gaussian", part=part) for c in CODES)] for part, label in PART_LABELS.items()]
    out += html.table(["Gaussian TC", "mean codes", "sampled codes"], split, table_id="tc-split",
                      caption="Where the Gaussian TC lives: TC(all) = TC(active) + TC(passive) + I(active; passive)")
    active, passive, dropped = (_latents(tc.get(k)) for k in ("active", "passive", "dropped"))
    out += html.paragraph(f"Active latents: {active}; passive: {passive}" + (f"; constant, left out of every TC: {dropped}."
                                                                             if dropped != "none" else "."))
    return out


def activity_section(evaluation: dict) -> str:
    activity = evaluation.get("activity") if isinstance(evaluation.get("activity"), dict) else {}
    tc = evaluation.get("tc") if isinstance(evaluation.get("tc"), dict) else {}
    var_mu, sigma2, kl = (_numbers(activity.get(k)) for k in ("var_mu", "mean_sigma2", "kl"))
    settings = tc.get("settings") if isinstance(tc.get("settings"), dict) else {}
    threshold = settings.get("active_threshold")
    if not var_mu or not _is_number(threshold):
        return html.paragraph("The stored evaluation holds no per-latent variances.", "muted")
    active, dropped = set(_ints(tc.get("active"))), set(_ints(tc.get("dropped")))
    rule = settings.get("threshold_rule")
    stable = (tc.get("activity") or {}).get("stable") if isinstance(tc.get("activity"), dict) else None
    text = (f"A latent is active when Var(mu_j) over the data exceeds the cut {threshold:g} (rule: {rule}). "
            if isinstance(rule, str) else f"A latent is active when Var(mu_j) over the data exceeds the cut {threshold:g}. ")
    if isinstance(stable, list) and len(stable) == 2 and all(_is_number(s) for s in stable):
        text += f"Every cut from {stable[0]:.2g} to {stable[1]:.2g} gives the same active set."
    rows = [[f"z{j}", _fmt(var_mu[j], 4), _fmt(_at(sigma2, j), 4), _fmt(_at(kl, j), 3),
             "constant" if j in dropped else "active" if j in active else "passive"] for j in range(len(var_mu))]
    return (html.paragraph(text) + html.svg_figure(html.activity_chart(var_mu, [_at(sigma2, j) for j in range(len(var_mu))],
                                                                       float(threshold), active))
            + html.table(["latent", "Var(mu_j)", "E[sigma_j^2]", "KL_j (nats)", "activity"], rows, table_id="activity-table"))


def metrics_section(evaluation: dict) -> str:
    def score(rep: str, *path: str):
        node = evaluation.get(rep)
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get("needs_encoder"):
            return "needs the encoder"
        return _fmt(node, 3) if node is not None else "n/a"

    names = [("MIG", ("mig",)), ("SAP", ("sap",)), ("DCI disentanglement", ("dci", "disentanglement")),
             ("DCI completeness", ("dci", "completeness")), ("DCI informativeness (test)", ("dci", "informativeness_test")),
             ("modularity", ("modularity_score",)), ("explicitness (test)", ("explicitness_score_test",)),
             ("FactorVAE score (eval accuracy)", ("factor_vae", "eval_accuracy")),
             ("BetaVAE score (eval accuracy)", ("beta_vae", "eval_accuracy")),
             ("Wasserstein correlation (normalised)", ("gaussian_wasserstein_correlation_norm",)), ("MI score", ("mutual_info_score",))]
    rows = [[label, *(score(rep, *path) for rep in CODES)] for label, path in names]
    rows = [r for r in rows if r[1] != "n/a" or r[2] != "n/a"]
    out = html.table(["metric", "mean codes", "sampled codes"], rows, caption="Disentanglement metrics", table_id="metrics-table")
    if _is_number(evaluation.get("recon")):
        out += html.paragraph(f"Reconstruction: {evaluation['recon']:.2f} nats per image (held-out images, from their mean codes).")
    out += _disintegration(evaluation)
    settings = evaluation.get("settings")
    if isinstance(settings, dict):
        out += html.paragraph("Evaluation settings: " + ", ".join(f"{k} {_json(v)}" for k, v in sorted(settings.items()))
                              + (f"; took {evaluation['seconds']:.0f} s." if _is_number(evaluation.get("seconds")) else "."), "muted")
    return out


def _disintegration(evaluation: dict) -> str:
    parts = {rep: (evaluation.get(rep) or {}).get("disintegration") if isinstance(evaluation.get(rep), dict) else None for rep in CODES}
    if not all(isinstance(p, dict) for p in parts.values()):
        return ""
    names = parts["mean"].get("factor_names")
    if not isinstance(names, list):
        return ""
    columns = [(rep, key) for key in ("latents_per_factor", "split_ratio") for rep in CODES]
    carried = {rep: parts[rep].get("carried") if isinstance(parts[rep].get("carried"), list) else None for rep in CODES}

    def cell(rep: str, key: str, k: int) -> str:  # a factor no latent carries has no split ratio (docs/design.md)
        if key == "split_ratio" and carried[rep] is not None and k < len(carried[rep]) and carried[rep][k] is False:
            return "carried by no latent"
        return _fmt(_at(_numbers(parts[rep].get(key)), k), 3)

    rows = [[str(name), *(cell(rep, key, k) for rep, key in columns)] for k, name in enumerate(names)]
    floor = "max(tau, the factor's noise floor)" if "noise_floor" in parts["mean"] else "tau"
    return html.table(["factor", "latents (mean)", "latents (sampled)", "split ratio (mean)", "split ratio (sampled)"], rows,
                      caption=f"Factor disintegration: latents carrying each factor (normalised MI >= {floor}, tau = "
                              f"{_fmt(_num(parts['mean'].get('tau', 0.1)), 3)}) and how evenly split",
                      table_id="disintegration-table")


def curves_section(run: Path) -> str:
    from mtc_core.training.history import history_tc

    try:
        history = runs.read_history(run)
    except (ValueError, OSError) as error:
        return html.paragraph(f"The training history cannot be read: {runs.error_text(error)}", "note")
    history = [r for r in history if _is_number(r.get("step"))]
    if not history:
        return html.paragraph("No training history recorded.", "muted")
    steps = [r["step"] for r in history]
    tcs = {code: [history_tc(r, code) for r in history] for code in CODES}
    raised = sum(1 for values in tcs.values() for v in values if v is not None and v < 0)
    tcs = {code: [None if v is None else max(v, 0.0) for v in values] for code, values in tcs.items()}
    n = next((r["tc_n"] for r in reversed(history) if _is_number(r.get("tc_n"))), None)
    corrected = any("tc_estimator" in r for r in history)
    missing = [code for code in CODES if all(v is None for v in tcs[code])]
    panels = [html.line_panel("training loss (nats)", [("train_loss", "#000000", steps, [_num(r.get("train_loss")) for r in history])]),
              html.line_panel("reconstruction and KL (nats, log)", [("recon", "#2ca02c", steps, [_num(r.get("recon")) for r in history]),
                                                                    ("kl", "#9467bd", steps, [_num(r.get("kl")) for r in history])], log=True),
              html.line_panel("Gaussian TC of a held-out batch (nats)",
                              [(f"{code} codes", colour, steps, tcs[code]) for code, colour in zip(CODES, (MEAN_COLOUR, SAMPLED_COLOUR),
                                                                                                   strict=True) if code not in missing])]
    caption = (f"{len(history)} records. The TCs: the Gaussian TC of the mean and of the sampled codes of a held-out batch"
               + (f" of {n}" if n else "") + (", bias-corrected" if corrected else
                                             ", the plug-in value (this history predates the bias correction: about D(D - 1) / 4B "
                                             "above the corrected one at batch size B)")
               + (f"; {raised} value(s) below 0 raised to 0 (TC >= 0)" if raised else "")
               + (f"; the {' and '.join(missing)} codes' TC is not in this history" if missing else "")
               + ". Training signals of one batch, not the measurements above.")
    return html.svg_figure("".join(panels), caption)


def traversal_section(run: Path) -> str:
    """A traversal grid (latents in the order of their KL, prior range +-2 sd), or why there is none."""
    try:
        png, order = traversal_png(run)
    except (ValueError, OSError, RuntimeError) as error:
        return html.paragraph(f"No traversal: the model cannot be drawn ({runs.error_text(error)}).", "muted")
    return html.png_figure(png, "latent traversal", f"Each row sweeps one latent from -2 to +2 prior standard deviations "
                           f"({TRAVERSAL_STEPS} steps) with the others at an image's mean code; rows in the order of the "
                           f"latents' mean KL: {', '.join(f'z{j}' for j in order)}.")


def traversal_png(run: Path) -> tuple[bytes, list[int]]:
    import numpy as np

    from mtc_core.data import make_dataset
    from mtc_core.visualize import figures
    from mtc_core.visualize.traversal import encode_numpy, latent_activity, traversal_values, traverse

    model, config = runs.load_run(run, "cpu")
    dataset = make_dataset(config["dataset"], image_shape=model.config.image_shape)
    images = dataset.render(dataset.sample_factors(TRAVERSAL_IMAGES, np.random.default_rng(0)))
    mu, logvar = encode_numpy(model, images)
    order = np.argsort(-latent_activity(mu, logvar))
    grid = traverse(model, mu[0], order, traversal_values(mu, TRAVERSAL_STEPS, "prior", 2.0))
    buffer = io.BytesIO()
    figures.image_grid(grid).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), [int(j) for j in order]


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any) -> float | int | None:
    return value if _is_number(value) else None


def _numbers(value: Any) -> list[float | None]:
    return [_num(v) for v in value] if isinstance(value, list) else []


def _ints(value: Any) -> list[int]:
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)] if isinstance(value, list) else []


def _at(values: list, j: int):
    return values[j] if j < len(values) else None


def _fmt(value: Any, digits: int) -> str:
    if not _is_number(value):
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if digits == 4 else f"{value:.{digits}f}"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def _latents(value: Any) -> str:
    return ", ".join(f"z{j}" for j in _ints(value)) or "none"
