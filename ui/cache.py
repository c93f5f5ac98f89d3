"""Every st.cache_* wrapper of the app.

Models are cached as resources keyed by run path + config.json mtime (a re-saved run
reloads) and are read-only. Derived arrays are cached as data keyed by that same
(path, mtime) pair and plain numbers; `_model`-style arguments stay out of the keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mtc_core import disintegration, estimators, figures, io, theory, traversal
from mtc_core.data import GroundTruthDataset, make_dataset
from mtc_core.models import VAE
from mtc_core.train import resolve_device
from ui import runs

NUM_POINTS = 2000  # encoded points behind the analysis pages (the whole grid when the dataset is smaller)
EVAL_SIZES = {"num_train": 2000, "num_test": 1000, "intervention_points": 100, "dataset_tc_samples": 2000}


@st.cache_resource(max_entries=8, show_spinner="Loading model...")
def _load(path: str, mtime: int) -> tuple[VAE, dict]:
    return io.load_run(path, resolve_device("auto"))


def model(path: str) -> tuple[VAE, dict]:
    """(model in eval mode, config) of a run directory; CheckpointError (a ValueError) when it cannot be loaded."""
    return _load(path, runs.config_mtime(path))


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


@st.cache_data(max_entries=16, show_spinner="Encoding...")
def _codes(path: str, mtime: int, n: int, seed: int) -> dict[str, np.ndarray]:
    vae, config = _load(path, mtime)
    ds = dataset(config["dataset"])
    factors = _points(ds, n, seed)
    mu, logvar = traversal.encode_numpy(vae, ds.render(factors))
    eps = np.random.default_rng([seed, 1]).standard_normal(mu.shape)
    return {"factors": factors, "mean": mu, "logvar": logvar, "sampled": mu + np.exp(0.5 * logvar) * eps}


def codes(path: str, n: int = NUM_POINTS, seed: int = 0) -> dict[str, np.ndarray]:
    """factors [N, K], mean and sampled codes and logvar [N, D] of the run's dataset."""
    return _codes(path, runs.config_mtime(path), n, seed)


@st.cache_data(max_entries=16, show_spinner="Estimating total correlations...")
def _tc_report(path: str, mtime: int, n: int, seed: int) -> dict:
    c = _codes(path, mtime, n, seed)
    return estimators.tc_report(c["mean"], c["logvar"], c["sampled"], seed=seed)


def tc_report(path: str, n: int = NUM_POINTS, seed: int = 0) -> tuple[dict, str]:
    """(mtc_core.estimators.tc_report, where it comes from). The stored evaluation's report when the run has
    one (the numbers `evaluate`, the Models table, Compare and RESULTS.md show); else computed here on the app's
    `n` encoded points, a smaller sample, which the source says."""
    stored = runs.read_evaluation(path)
    if stored is not None:
        return stored["tc"], f"the run's stored evaluation ({stored['tc']['settings']['n']:,} points, seed {stored['tc']['settings']['seed']})"
    report = _tc_report(path, runs.config_mtime(path), n, seed)
    return report, f"computed here on {report['settings']['n']:,} points (no stored evaluation: `python -m mtc_core evaluate` stores one)"


@st.cache_data(max_entries=16, show_spinner=False)
def _activity(path: str, mtime: int, n: int, seed: int) -> dict[str, np.ndarray]:
    c = _codes(path, mtime, n, seed)
    kl = traversal.latent_activity(c["mean"], c["logvar"])
    return {"var_mu": c["mean"].var(0, ddof=1), "mean_sigma2": np.exp(c["logvar"]).mean(0), "kl": kl,
            "order": np.argsort(-kl, kind="stable")}


def activity(path: str, n: int = NUM_POINTS, seed: int = 0) -> dict[str, np.ndarray]:
    """Per latent: Var(mu_j), E[sigma_j^2], mean KL, and the latents ordered by KL (most active first)."""
    return _activity(path, runs.config_mtime(path), n, seed)


@st.cache_data(max_entries=64, show_spinner=False)
def _traversal(path: str, mtime: int, base: tuple[int, ...], mode: str, steps: int, extent: float, quantile: float,
               num_latents: int, with_gif: bool) -> dict:
    vae, config = _load(path, mtime)
    ds = dataset(config["dataset"])
    image = ds.render(np.array([base]))
    mu, _ = traversal.encode_numpy(vae, image)
    acts = _activity(path, mtime, NUM_POINTS, 0)
    values = traversal.traversal_values(_codes(path, mtime, NUM_POINTS, 0)["mean"], steps, mode, extent, quantile)
    latents = acts["order"][:num_latents]
    grid = traversal.traverse(vae, mu[0], latents, values)
    scale = max(1, 96 // ds.image_shape[1])
    out = {
        "grid_png": figures.png_bytes(figures.image_grid(grid, scale=scale)),
        "pair_png": figures.png_bytes(figures.image_grid(np.stack([image, traversal.reconstruct(vae, image)], 1), scale=scale)),
        "latents": [int(j) for j in latents],
        "kl": [float(acts["kl"][j]) for j in latents],
        "values": values[latents].tolist(),
    }
    if with_gif:
        out["gif"] = figures.traversal_gif(grid, scale=scale)
    return out


def traversal_grid(path: str, base: tuple[int, ...], mode: str = "prior", steps: int = 10, extent: float = 2.0,
                   quantile: float = 0.05, num_latents: int = 10, with_gif: bool = True) -> dict:
    """A latents x steps traversal around the image with factors `base`, latents ordered by KL:
    PNG of the grid, PNG of [input | reconstruction], the GIF, latent indices, their KL and swept values."""
    return _traversal(path, runs.config_mtime(path), tuple(int(b) for b in base), mode, steps, extent, quantile,
                      num_latents, with_gif)


@st.cache_data(max_entries=16, show_spinner=False)
def _reconstructions(path: str, mtime: int, count: int, seed: int) -> bytes:
    vae, config = _load(path, mtime)
    ds = dataset(config["dataset"])
    images = ds.render(ds.sample_factors(count, np.random.default_rng(seed)))
    grid = np.stack([images, traversal.reconstruct(vae, images)])  # [2, count, C, H, W]: inputs above reconstructions
    return figures.png_bytes(figures.image_grid(grid, scale=max(1, 64 // ds.image_shape[1])))


def reconstructions(path: str, count: int = 8, seed: int = 0) -> bytes:
    """PNG: `count` random inputs (top row) above their reconstructions from the mean codes (bottom row)."""
    return _reconstructions(path, runs.config_mtime(path), count, seed)


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
    c = _codes(path, mtime, n, seed)
    _, config = _load(path, mtime)
    names = list(dataset(config["dataset"]).factor_names)
    return {rep: disintegration.disintegration_report(c[rep], c["factors"], factor_names=names, tau=tau)
            for rep in ("mean", "sampled")}


def disintegration_reports(path: str, tau: float = 0.1, n: int = NUM_POINTS, seed: int = 0) -> dict[str, dict]:
    """mtc_core.disintegration_report of the mean and of the sampled codes."""
    return _mi(path, runs.config_mtime(path), n, seed, tau)


def headline(path: str, n: int = NUM_POINTS, seed: int = 0) -> dict:
    """Gaussian and kNN TC of the model's mean codes (as `tc_report`: stored or computed here) and their MIG."""
    from mtc_core import metrics

    report, source = tc_report(path, n, seed)
    stored = runs.read_evaluation(path)
    if stored is not None:
        return {"report": report, "source": source, "mig": stored["mean"].get("mig")}
    c = codes(path, n, seed)
    return {"report": report, "source": source, "mig": metrics.mig(c["mean"], c["factors"])}


@st.cache_data(max_entries=8, show_spinner="Building the synthetic split...")
def synthetic_split(n: int = NUM_POINTS, tau: float = 0.1, seed: int = 0) -> dict:
    """DESIGN 1.3's example: position u in 0..31 coded as (u // 8, u % 8) plus two direct factors;
    its codes, factors, TC (Gaussian, kNN), MIG and disintegration report."""
    from mtc_core import metrics

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
    """Closed forms of DESIGN 1.1 on a rho grid in [0, 0.995]: TC of the means, of the samples, and the bound."""
    rho = np.linspace(0.0, 0.995, points)
    return {"rho": rho, "mean_tc": np.array([theory.mean_tc(d, r) for r in rho]),
            "sampled_tc": np.array([theory.sampled_tc(d, r, s) for r in rho]), "bound": theory.sampled_tc_bound(d, s)}


@st.cache_data(max_entries=32, show_spinner="Sampling...")
def monte_carlo(d: int, rho: float, s: float, n: int, seed: int = 0) -> dict:
    """mtc_core.theory.monte_carlo_check: sample mu and z, estimate both TCs beside the closed forms."""
    return theory.monte_carlo_check(d, rho, s, n=n, rng=seed, knn_points=min(n, 5000))


@st.cache_data(max_entries=64, show_spinner=False)
def _evaluation(path: str, mtime: int) -> dict:
    import mtc_core

    vae, config = _load(path, mtime)
    return mtc_core.evaluate(vae, dataset(config["dataset"]), seed=0, **EVAL_SIZES)


def evaluation_of(path: str) -> tuple[dict, str]:
    """(evaluation dict, where it came from): metrics.json's "evaluation" when the run has one, else
    mtc_core.evaluate at the app's smaller sizes (EVAL_SIZES), computed once and cached."""
    stored = runs.read_evaluation(path)
    if stored is not None:
        return stored, "metrics.json"
    return _evaluation(path, runs.config_mtime(path)), "computed by the app"


def comparison(paths: list[str]) -> pd.DataFrame:
    """One row per run: its evaluation flattened (see runs.flatten_evaluation); TC columns first."""
    rows = []
    for path in paths:
        try:
            evaluation, source = evaluation_of(path)
        except ValueError as error:  # a run that cannot be loaded or scored gets a row saying why
            rows.append({"model": runs.short_label(path), "source": f"failed: {error}"})
            continue
        rows.append({"model": runs.short_label(path), "source": source, **runs.flatten_evaluation(evaluation)})
    table = pd.DataFrame(rows)
    for column in ("gaussian_tc (mean)", "gaussian_tc (sampled)", "knn_tc (mean)", "knn_tc (sampled)"):
        if column not in table:
            table[column] = None
    first = ["model", *[c for c in table.columns if "_tc" in c]]
    return table[first + [c for c in table.columns if c not in first]]


def sweep_folders() -> list[Path]:
    """Sweep folders (those with a sweep.json) under the runs directory, newest first."""
    root = runs.runs_dir()
    found = [p.parent for p in root.glob("**/sweep.json")] if root.is_dir() else []
    return sorted(found, key=lambda p: (p / "sweep.json").stat().st_mtime, reverse=True)


@st.cache_data(max_entries=8, show_spinner="Reading the sweep...")
def _sweep_summary(folder: str, stamp: float) -> tuple[pd.DataFrame, bytes | None]:
    import tempfile

    from mtc_core import sweep_results

    table = sweep_results.aggregate(sweep_results.load_sweep(folder))
    frame = pd.DataFrame([{k: v for k, v in row.items() if k != "settings"} for row in table])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            png = sweep_results.plot_regularisation(table, Path(tmp) / "tc.png").read_bytes()
    except ValueError:  # no finished run yet
        png = None
    return frame, png


def sweep_summary(folder: str | Path) -> tuple[pd.DataFrame, bytes | None]:
    """mtc_core.sweep_results on a sweep folder: (table of mean +- sd over seeds, TC-vs-regularisation PNG).
    Keyed by the newest config.json in the folder, so a sweep that progresses is re-read."""
    folder = Path(folder)
    stamp = max((p.stat().st_mtime for p in folder.glob("*/config.json")), default=0.0)
    return _sweep_summary(str(folder), stamp)
