"""Every st.cache_* wrapper of the app, and the keys of its background computations (services.background).

Models are cached as resources keyed by run path + config.json mtime (a re-saved run reloads) and are read-only.
A run's numbers come from its stored evaluation (metrics.json, what `python -m mtc_core evaluate` wrote) whenever it has
one: the same values the CLI, Compare and RESULTS.md show, read in milliseconds. What a run lacks (its encoded points
for the heatmaps and scatters, a TC report or an evaluation when none is stored) is computed once per server in the
background (`Task`s), keyed by that same (path, mtime) pair; pages draw a progress indicator until it is there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mtc_core import estimators, runs, theory
from mtc_core.data import GroundTruthDataset, make_dataset
from mtc_core.estimators.sampling import draw_sampled_codes
from mtc_core.evaluation.tc_report import tc_report as measure_tc
from mtc_core.models import VAE
from mtc_core.training.trainer import resolve_device
from mtc_core.visualize import figures, traversal
from services import background, run_listing, run_tables

# mtc_core.metrics.disintegration is imported where it is used: it brings mtc_core.metrics and scikit-learn (~1.5 s), which the
# first page does not need
NUM_POINTS = 2000  # encoded points behind the analysis pages (the whole grid when the dataset is smaller)
EVAL_SIZES = {"num_train": 2000, "num_test": 1000, "intervention_points": 100, "dataset_tc_samples": 2000}


@st.cache_resource(max_entries=16, show_spinner="Loading model...")
def _load(path: str, mtime: int) -> tuple[VAE, dict]:
    vae, config = runs.load_run(path, resolve_device("auto"))
    ds = dataset(config["dataset"])
    if tuple(ds.image_shape) != tuple(vae.config.image_shape):
        raise runs.CheckpointError(f"{Path(path) / runs.CONFIG}: dataset {ds.name!r} renders images of shape {tuple(ds.image_shape)} "
                                 f"but the model takes {tuple(vae.config.image_shape)}")
    return vae, config


def model(path: str) -> tuple[VAE, dict]:
    """(model in eval mode, config) of a run directory; CheckpointError (a ValueError) when it cannot be loaded or does
    not fit its dataset."""
    return _load(path, run_listing.config_mtime(path))


@st.cache_resource(max_entries=8, show_spinner=False)
def _dataset(spec_json: str) -> GroundTruthDataset:
    return make_dataset(json.loads(spec_json))


def dataset(spec: dict | str) -> GroundTruthDataset:
    return _dataset(json.dumps(spec if isinstance(spec, dict) else {"name": spec}, sort_keys=True))


def _points(ds: GroundTruthDataset, n: int, seed: int) -> np.ndarray:
    """Factors of the analysed points: the whole grid when it has at most n points, else n uniform draws."""
    if len(ds) <= n:
        return ds.index_to_factors(np.arange(len(ds)))
    return ds.sample_factors(n, np.random.default_rng(seed))


def _encode(task: background.Task, vae: VAE, ds: GroundTruthDataset, n: int, seed: int) -> dict[str, np.ndarray]:
    factors = _points(ds, n, seed)
    chunks, size = [], 250
    for start in range(0, len(factors), size):
        task.report(start / len(factors), f"{start:,} of {len(factors):,} images encoded")
        chunks.append(traversal.encode_numpy(vae, ds.render(factors[start:start + size])))
    mu, logvar = np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
    sampled = draw_sampled_codes(mu, logvar, np.random.default_rng([seed, 1]))
    return {"factors": factors, "mean": mu, "logvar": logvar, "sampled": sampled}


def codes(path: str, n: int = NUM_POINTS, seed: int = 0) -> background.Task:
    """Task: factors [N, K], mean and sampled codes and logvar [N, D] of `n` points of the run's dataset."""
    vae, config = model(path)
    ds = dataset(config["dataset"])
    count = min(n, len(ds))
    return background.submit(("codes", path, run_listing.config_mtime(path), n, seed), f"Encoding {count:,} images of {ds.name}",
                             _encode, vae, ds, n, seed)


def ready_codes(path: str, n: int = NUM_POINTS, seed: int = 0) -> dict[str, np.ndarray] | None:
    """The run's codes when their task has finished, else None (without waiting)."""
    task = codes(path, n, seed)
    return task.value() if task.done and task.future.exception() is None else None


def _tc(task: background.Task, codes_task: background.Task, seed: int) -> tuple[dict, str]:
    c = codes_task.value(wait=3600)  # submitted before this task, so already done on the one worker
    task.report(None, "Gaussian, kNN and dataset Monte-Carlo estimates")
    report = measure_tc(c["mean"], c["logvar"], c["sampled"], seed=seed)
    return report, (f"computed here on {report['settings']['n']:,} points (no stored evaluation: "
                    "`python -m mtc_core evaluate` stores one)")


def tc_report(path: str, n: int = NUM_POINTS, seed: int = 0) -> background.Task:
    """Task: (mtc_core.evaluation.tc_report.tc_report, where it comes from). The stored evaluation's report when the run has
    one (the numbers `evaluate`, the Models table, Compare and RESULTS.md show; ready at once); else computed in the
    background on the app's `n` encoded points, a smaller sample, which the source says."""
    stored = run_tables.read_evaluation(path)
    if stored is not None:
        settings = stored["tc"].get("settings", {})
        return background.ready(("tc", path), (stored["tc"], f"the run's stored evaluation ({settings.get('n', 0):,} points, "
                                                             f"seed {settings.get('seed', '?')})"))
    codes_task = codes(path, n, seed)
    return background.submit(("tc", path, run_listing.config_mtime(path), n, seed), "Estimating total correlations",
                             _tc, codes_task, seed)


@st.cache_data(max_entries=32, show_spinner=False)
def _activity_of(path: str, mtime: int, n: int, seed: int) -> dict[str, np.ndarray]:
    c = codes(path, n, seed).value()
    return {"var_mu": c["mean"].var(0, ddof=1), "mean_sigma2": np.exp(c["logvar"]).mean(0),
            "kl": traversal.latent_activity(c["mean"], c["logvar"]), "source": f"{len(c['mean']):,} encoded points"}


def activity(path: str, n: int = NUM_POINTS, seed: int = 0) -> dict | None:
    """Per latent: Var(mu_j), E[sigma_j^2], mean KL, and the latents ordered by KL (most active first). From the stored
    evaluation when there is one, else from the encoded points (None until they are ready)."""
    stored = run_tables.read_evaluation(path)
    act = stored.get("activity") if stored is not None else None
    if isinstance(act, dict) and all(isinstance(act.get(k), list) for k in ("var_mu", "mean_sigma2", "kl")):
        out = {k: np.asarray(act[k], dtype=float) for k in ("var_mu", "mean_sigma2", "kl")}
        out["source"] = "the run's stored evaluation"
    elif ready_codes(path, n, seed) is not None:
        out = dict(_activity_of(path, run_listing.config_mtime(path), n, seed))
    else:
        return None
    out["order"] = np.argsort(-out["kl"], kind="stable")
    return out


@st.cache_data(max_entries=64, show_spinner=False)
def _traversal(path: str, mtime: int, base: tuple[int, ...], values: np.ndarray, latents: tuple[int, ...], kl: tuple[float, ...],
               with_gif: bool) -> dict:
    vae, config = _load(path, mtime)
    ds = dataset(config["dataset"])
    image = ds.render(np.array([base]))
    mu, _ = traversal.encode_numpy(vae, image)
    grid = traversal.traverse(vae, mu[0], list(latents), values)
    scale = max(1, 96 // ds.image_shape[1])
    out = {
        "grid_png": figures.png_bytes(figures.image_grid(grid, scale=scale)),
        "pair_png": figures.png_bytes(figures.image_grid(np.stack([image, traversal.reconstruct(vae, image)], 1), scale=scale)),
        "latents": list(latents),
        "kl": list(kl),
        "values": values[list(latents)].tolist(),
    }
    if with_gif:
        out["gif"] = figures.traversal_gif(grid, scale=scale)
    return out


def traversal_grid(path: str, base: tuple[int, ...], mode: str = "prior", steps: int = 10, extent: float = 2.0,
                   quantile: float = 0.05, num_latents: int = 10, with_gif: bool = True) -> dict | None:
    """A latents x steps traversal around the image with factors `base`, latents ordered by KL:
    PNG of the grid, PNG of [input | reconstruction], the GIF, latent indices, their KL and swept values.
    None while what it needs (the activity order; the mean codes' quantiles in quantile mode) is being computed."""
    acts = activity(path)
    if acts is None:
        return None
    if mode == "quantile":
        c = ready_codes(path)
        if c is None:
            return None
        values = traversal.traversal_values(c["mean"], steps, mode, extent, quantile)
    else:
        values = traversal.traversal_values(np.zeros((1, len(acts["kl"]))), steps, mode, extent, quantile)
    latents = tuple(int(j) for j in acts["order"][:num_latents])
    return _traversal(path, run_listing.config_mtime(path), tuple(int(b) for b in base), values, latents,
                      tuple(float(acts["kl"][j]) for j in latents), with_gif)


@st.cache_data(max_entries=16, show_spinner=False)
def _reconstructions(path: str, mtime: int, count: int, seed: int) -> bytes:
    vae, config = _load(path, mtime)
    ds = dataset(config["dataset"])
    images = ds.render(ds.sample_factors(count, np.random.default_rng(seed)))
    grid = np.stack([images, traversal.reconstruct(vae, images)])  # [2, count, C, H, W]: inputs above reconstructions
    return figures.png_bytes(figures.image_grid(grid, scale=max(1, 64 // ds.image_shape[1])))


def reconstructions(path: str, count: int = 8, seed: int = 0) -> bytes:
    """PNG: `count` random inputs (top row) above their reconstructions from the mean codes (bottom row)."""
    return _reconstructions(path, run_listing.config_mtime(path), count, seed)


@st.cache_data(max_entries=64, show_spinner=False)
def _render_one(spec_json: str, factors: tuple[int, ...]) -> bytes:
    ds = _dataset(spec_json)
    return figures.png_bytes(figures.image_grid(ds.render(np.array([factors]))[None], scale=max(1, 192 // ds.image_shape[1])))


def render_one(spec: dict, factors: tuple[int, ...]) -> bytes:
    """PNG of the one image with these factor classes, upscaled."""
    return _render_one(json.dumps(spec, sort_keys=True), tuple(int(f) for f in factors))


@st.cache_data(max_entries=16, show_spinner=False)
def _sample_grid(spec_json: str, rows: int, cols: int, seed: int) -> bytes:
    ds = _dataset(spec_json)
    images = ds.render(ds.sample_factors(rows * cols, np.random.default_rng(seed)))
    grid = images.reshape(rows, cols, *ds.image_shape)
    return figures.png_bytes(figures.image_grid(grid, scale=max(1, 64 // ds.image_shape[1])))


def sample_grid(spec: dict, rows: int = 4, cols: int = 8, seed: int = 0) -> bytes:
    """PNG of rows x cols uniformly drawn images."""
    return _sample_grid(json.dumps(spec, sort_keys=True), rows, cols, seed)


@st.cache_data(max_entries=16, show_spinner="Computing mutual information...")
def _mi(path: str, mtime: int, n: int, seed: int, tau: float) -> dict:
    from mtc_core.metrics import disintegration

    c = codes(path, n, seed).value()
    _, config = _load(path, mtime)
    names = list(dataset(config["dataset"]).factor_names)
    return {rep: disintegration.disintegration_report(c[rep], c["factors"], factor_names=names, tau=tau)
            for rep in ("mean", "sampled")}


def _at_tau(stored: dict, tau: float) -> dict:
    """A stored disintegration report re-read at another tau (the MI matrix does not depend on it)."""
    from mtc_core.metrics import disintegration

    m = np.asarray(stored["mi_matrix"], dtype=float)
    return {**stored, **disintegration.factor_summary(m, tau, stored.get("noise_floor")), "tau": float(tau)}


def disintegration_reports(path: str, tau: float = 0.1, n: int = NUM_POINTS, seed: int = 0) -> dict[str, dict] | None:
    """mtc_core.disintegration_report of the mean and of the sampled codes, plus "source": the stored evaluation's MI
    matrices when there are some, else computed on the encoded points (None until they are ready)."""
    stored = run_tables.read_evaluation(path)
    reports = {rep: (stored.get(rep) or {}).get("disintegration") for rep in ("mean", "sampled")} if stored else {}
    if reports and all(isinstance(r, dict) and isinstance(r.get("mi_matrix"), list) for r in reports.values()):
        return {**{rep: _at_tau(r, tau) for rep, r in reports.items()}, "source": "the run's stored evaluation"}
    if ready_codes(path, n, seed) is None:
        return None
    return {**_mi(path, run_listing.config_mtime(path), n, seed, tau), "source": f"{NUM_POINTS:,} encoded points"}


def mig(path: str, n: int = NUM_POINTS, seed: int = 0) -> float | None:
    """MIG of the mean codes: the stored evaluation's, else on the encoded points (None until they are ready)."""
    from mtc_core import metrics

    stored = run_tables.read_evaluation(path)
    if stored is not None:
        return (stored.get("mean") or {}).get("mig")
    c = ready_codes(path, n, seed)
    return None if c is None else metrics.mig(c["mean"], c["factors"])


@st.cache_data(max_entries=8, show_spinner="Building the synthetic split...")
def synthetic_split(n: int = NUM_POINTS, tau: float = 0.1, seed: int = 0) -> dict:
    """The example of docs/design.md, "Factor disintegration": position u in 0..31 coded as (u // 8, u % 8) plus two direct factors;
    its codes, factors, TC (Gaussian, kNN), MIG and disintegration report."""
    from mtc_core import metrics
    from mtc_core.metrics import disintegration

    codes, factors = disintegration.synthetic_split(n, rng=seed)
    names = ["u (split)", "v1", "v2"]
    return {
        "codes": codes, "factors": factors, "factor_names": names,
        "gaussian_tc": estimators.gaussian_tc(np.cov(codes, rowvar=False)),
        "knn_tc": estimators.tc_knn(codes),
        "mig": metrics.mig(codes, factors),
        "report": disintegration.disintegration_report(codes, factors, factor_names=names, tau=tau),
    }


@st.cache_data(max_entries=32, show_spinner=False)
def theorem_curves(d: int, s: float, points: int = 200) -> dict:
    """Closed forms of docs/design.md, "The theorem" on a rho grid in [0, 0.995]: TC of the means, of the samples, and the bound."""
    rho = np.linspace(0.0, 0.995, points)
    return {"rho": rho, "mean_tc": np.array([theory.mean_tc(d, r) for r in rho]),
            "sampled_tc": np.array([theory.sampled_tc(d, r, s) for r in rho]), "bound": theory.sampled_tc_bound(d, s)}


@st.cache_data(max_entries=32, show_spinner="Sampling...")
def monte_carlo(d: int, rho: float, s: float, n: int, seed: int = 0) -> dict:
    """mtc_core.theory.monte_carlo_check: sample mu and z, estimate both TCs beside the closed forms."""
    return theory.monte_carlo_check(d, rho, s, n=n, rng=seed, knn_points=min(n, 5000))


def _evaluate(task: background.Task, vae: VAE, ds: GroundTruthDataset) -> tuple[dict, str]:
    import mtc_core

    return mtc_core.evaluate(vae, ds, seed=0, progress=lambda stage, partial: task.report(None, stage), **EVAL_SIZES), "computed by the app"


def evaluation(path: str) -> background.Task:
    """Task: (evaluation dict, where it came from): metrics.json's "evaluation" when the run has one (ready at once),
    else mtc_core.evaluate at the app's smaller sizes (EVAL_SIZES), computed once in the background."""
    stored = run_tables.read_evaluation(path)
    if stored is not None:
        return background.ready(("evaluation", path), (stored, "metrics.json"))
    vae, config = model(path)
    return background.submit(("evaluation", path, run_listing.config_mtime(path)), f"Evaluating {Path(path).name}",
                             _evaluate, vae, dataset(config["dataset"]))


def _store(task: background.Task, path: str) -> dict:
    from mtc_core.evaluation import stored
    from mtc_core.training.trainer import resolve_device

    return stored.evaluate_and_store(path, device=resolve_device("auto"), progress=lambda stage, partial: task.report(None, stage))


def store_evaluation(path: str, start: bool = False) -> background.Task | None:
    """Task: the run evaluated and stored in its metrics.json as `python -m mtc_core evaluate RUN` does
    (mtc_core.evaluation.stored), in the background; started only when `start`, else the one started (or None)."""
    key = ("store_evaluation", path, run_listing.config_mtime(path))
    if start:
        return background.submit(key, f"Evaluating {Path(path).name} and storing it", _store, path)
    return background.get(key)


def evaluated(entries: list[run_listing.RunEntry]) -> tuple[list[dict], list[dict], list[background.Task]]:
    """(rows as run_tables.evaluation_rows gives them, with "from": metrics.json or computed here; runs that failed, as
    {"model", "problem"}; the tasks still evaluating runs without a stored evaluation, which are left out until done)."""
    rows, failed, pending = [], [], []
    for entry in entries:
        try:
            task = evaluation(entry.path)
            if not task.done:
                pending.append(task)
                continue
            result, source = task.value()
        except Exception as error:  # a run that cannot be loaded or scored is named with the reason; the others stay
            failed.append({"model": run_listing.short_label(entry.path), "problem": f"{type(error).__name__}: {error}"})
            continue
        rows.append({"label": entry.label if entry.source == "zoo" else run_listing.short_label(entry.path), "model": entry.model,
                     "seed": entry.seed, "dataset": entry.dataset, "group": entry.group, "evaluation": result, "path": entry.path,
                     "source": entry.source, "from": source, "status": entry.status})
    return rows, failed, pending


def comparison(rows: list[dict]) -> pd.DataFrame:
    """One row per run: model, family, configuration, seed, status, where its numbers come from and its evaluation
    flattened (run_tables.flatten_evaluation), TC columns first."""
    table = pd.DataFrame([{"model": run_listing.short_label(r["path"]), "family": run_listing.FAMILIES.get(r["model"], r["model"]),
                           "configuration": run_listing.group_label(r["label"]), "seed": r["seed"], "status": r["status"],
                           "from": r["from"], **run_tables.flatten_evaluation(r["evaluation"])} for r in rows])
    for column in ("model", "gaussian_tc (mean)", "gaussian_tc (sampled)", "knn_tc (mean)", "knn_tc (sampled)"):
        if column not in table:
            table[column] = None
    first = [c for c in ("model", "family", "configuration", "seed", "status", "from") if c in table.columns]
    first += [c for c in table.columns if "_tc" in c]
    return table[first + [c for c in table.columns if c not in first]]


def sweep_folders() -> list[Path]:
    """Sweep folders (those with a sweep.json) under the runs directory, newest first."""
    root = run_listing.runs_dir()
    found = [p.parent for p in root.glob("**/sweep.json")] if root.is_dir() else []
    return sorted(found, key=lambda p: (p / "sweep.json").stat().st_mtime, reverse=True)


@st.cache_data(max_entries=8, show_spinner="Reading the sweep...")
def _sweep_summary(folder: str, stamp: float) -> tuple[pd.DataFrame, bytes | None]:
    import tempfile

    from mtc_core.evaluation import sweep_results

    table = sweep_results.aggregate(sweep_results.load_sweep(folder))
    frame = pd.DataFrame([{k: v for k, v in row.items() if k != "settings"} for row in table])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            png = sweep_results.plot_regularisation(table, Path(tmp) / "tc.png").read_bytes()
    except ValueError:  # no finished run yet
        png = None
    return frame, png


def sweep_summary(folder: str | Path) -> tuple[pd.DataFrame, bytes | None]:
    """mtc_core.evaluation.sweep_results on a sweep folder: (table of mean +- sd over seeds, TC-vs-regularisation PNG).
    Keyed by the newest config.json in the folder, so a sweep that progresses is re-read."""
    folder = Path(folder)
    stamp = max((p.stat().st_mtime for p in folder.glob("*/config.json")), default=0.0)
    return _sweep_summary(str(folder), stamp)


@st.cache_data(max_entries=8, show_spinner="Reading the runs...")
def _strength_points(folder: str, stamp: float, only: tuple[str, ...] | None) -> tuple[list[dict], int]:
    from services import run_curves

    return run_curves.strength_points(folder, None if only is None else list(only))


def strength_points(folder: str | Path, only: list[str] | None = None) -> tuple[list[dict], int]:
    """services.run_curves.strength_points (TC against regularisation strength, one point per run of the zoo or a sweep
    folder), keyed by the newest config.json or metrics.json in the folder, so that new runs and evaluations are read."""
    folder = Path(folder)
    stamp = max((p.stat().st_mtime for pattern in ("*/config.json", "*/metrics.json") for p in folder.glob(pattern)), default=0.0)
    return _strength_points(str(folder), stamp, None if only is None else tuple(sorted(only)))
