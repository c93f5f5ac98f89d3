"""Shared widgets: the sidebar model picker and device badge, charts and tables with downloads,
and the progress indicator of background computations."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mtc_core import runs
from mtc_core.data import BUILT_IN, GroundTruthDataset
from mtc_core.evaluation import tc_report
from mtc_core.models import VAE
from mtc_core.visualize import figures
from services import background, run_listing
from ui import cache, pages

RUN_KEY = "run_path"  # the sidebar picker's value: the selected run directory
PENDING_KEY = "run_path_next"  # set by the Train page; selected at the next rerun, before the picker is drawn
FORMAT_KEY = "figure_format"  # what the charts' camera button downloads: png | svg
NO_MODEL = ("No model to explore yet: train one on the **Train** page (about a minute on the toy dataset), "
            "or point the environment variable MTC_ZOO_DIR at a model zoo.")
POLL_S = 0.5  # how often a page looks at a background computation it waits for


def plotly_config(fmt: str | None = None) -> dict:
    """Plotly's modebar, always shown; its camera button saves the chart as PNG (scale 2) or SVG (for a paper)."""
    fmt = fmt or st.session_state.get(FORMAT_KEY, "png")
    return {"displayModeBar": True, "displaylogo": False, "toImageButtonOptions": {"format": fmt, "scale": 2 if fmt == "png" else 1}}


@st.cache_resource
def app_icon():
    """The tab's icon, drawn here (no network): two clouds of points, a round one (sampled codes) and a thin
    diagonal one (mean codes), in the charts' colours."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    rng = np.random.default_rng(0)
    for x, y in rng.normal(32, 9, (40, 2)):
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=figures.SAMPLED_COLOUR)
    for t in rng.normal(0, 11, 40):
        x, y = 32 + t + rng.normal(0, 1.5), 32 - t + rng.normal(0, 1.5)
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=figures.MEAN_COLOUR)
    return picture


def model_picker() -> None:
    """The sidebar select box shared by every page: the zoo (by dataset, model, seed), then the user's runs.
    Runs that cannot be opened are listed under it with the reason, and offered nowhere."""
    everything = run_listing.all_runs()
    try:
        run_listing.zoo_runs()
    except ValueError as problem:
        st.sidebar.warning(f"The model zoo could not be read: {problem}")
    entries = [e for e in everything if e.problem is None]
    if PENDING_KEY in st.session_state:
        st.session_state[RUN_KEY] = st.session_state.pop(PENDING_KEY)
    labels = {e.path: e.label for e in entries}
    if st.session_state.get(RUN_KEY) not in labels:
        st.session_state.pop(RUN_KEY, None)  # deleted, broken, or not there yet: fall back to the default
    if not entries:
        st.sidebar.info("No models yet: train one on the **Train** page.")
    else:
        # set on every run, not only the first: each page's picker is a widget of its own (Streamlit's widget ids
        # include the page), which would start at its default after a page switch; this carries the pick over
        st.session_state[RUN_KEY] = st.session_state.get(RUN_KEY) or (run_listing.default_pair(entries)[0] or entries[0]).path
        picked = next(e for e in entries if e.path == st.session_state[RUN_KEY])
        # the box shows a compact label (a full one is cut at the sidebar's width); the full one is in the help and below
        st.sidebar.selectbox("Model", list(labels), format_func=lambda path: compact_label(labels[path]), key=RUN_KEY,
                             help=f"**{picked.label}**  \nZoo: {run_listing.zoo_dir()}  \nYour runs: {run_listing.runs_dir()}")
        st.sidebar.caption(f"{picked.label} · `{picked.model}` on {picked.dataset}, seed {picked.seed}, {picked.status}")
    broken = [e for e in everything if e.problem is not None]
    if broken:
        with st.sidebar.expander(f"{len(broken)} run{'s' if len(broken) > 1 else ''} cannot be opened", icon=":material/error:"):
            for e in broken:
                st.caption(f"**{Path(e.path).name}**: {e.problem}")


COMPACT = ((r"^ours,\s*", ""), (r" mean-TC\b", ""), (r"\blambda_od (?=\d)", "λ_od "), (r"\blambda (?=\d)", "λ"),
           (r"\bbeta (?=\d)", "β"), (r"\bgamma (?=\d)", "γ"), (r"\bwarm-up (?=\d)", "wu "), (r",\s*", " "))


def compact_label(label: str) -> str:
    """A zoo label short enough for the sidebar's select box: "RTC-VAE (ours, KDE mean-TC, lambda 2, warm-up 5k),
    Shapes2D, seed 0" -> "RTC-VAE KDE λ2 wu 5k · Shapes2D · s0" (the full label is in the picker's help and caption).
    Your runs ("run · folder") keep their label."""
    if label.startswith("run · "):
        return label
    match = re.fullmatch(r"([^(]*?)\s*\((.*)\)(.*)", label)
    head, inner, tail = match.groups() if match else (label, "", "")
    if not match:
        head, _, tail = label.partition(",")
        tail = "," + tail if tail else ""
    for pattern, replacement in COMPACT:
        inner = re.sub(pattern, replacement, inner)
    tail = re.sub(r",\s*", " · ", re.sub(r",\s*seed (\d+)$", r" · s\1", tail))
    return f"{head} {inner}".strip() + tail


def device_badge() -> None:
    label = run_listing.device_label()
    st.sidebar.badge(label, icon=":material/memory:", color="green" if label.startswith("GPU") else "gray")


def selected_run() -> str | None:
    path = st.session_state.get(RUN_KEY)
    return path if path and (Path(path) / runs.CONFIG).is_file() else None


def load(path: str | None) -> tuple[str, VAE, dict] | None:
    """(path, model, config) of a run; None (after an error message naming the problem) when it cannot be loaded."""
    if path is None:
        return None
    try:
        model, config = cache.model(path)
    except ValueError as error:  # CheckpointError: the message names the file and the problem
        st.error(f"Cannot load {Path(path).name}: {error}")
        return None
    return path, model, config


def loaded_run() -> tuple[str, VAE, dict] | None:
    """(path, model, config) of the picked run; None (after an error message when the run is broken) otherwise."""
    return load(selected_run())


def wait(task: background.Task, key: str, wait_s: float | None = None) -> Any:
    """The task's value when it is done (after waiting up to `wait_s`, by default what is left of the page run's budget,
    `pages.wait_left`, so quick ones show at once); else None, after drawing its progress, redrawn every POLL_S until it
    is done, then the whole page reruns with the value. A failed computation shows its reason (None is returned)."""
    try:
        return task.value(wait=pages.wait_left(0.3) if wait_s is None else wait_s)
    except TimeoutError:
        st.fragment(_progress, run_every=POLL_S)(task.key, key)
        return None
    except Exception as error:  # the computation's own error: shown, the rest of the page goes on
        st.error(f"{task.label} failed: {type(error).__name__}: {error}")
        return None


def needing_codes(path: str, compute: Callable[[], Any], key: str) -> Any:
    """compute() (a cache function that returns None until the run's encoded points are ready); while they are being
    computed, their progress (see `wait`) and None."""
    value = compute()
    if value is None and wait(cache.codes(path), key=key) is not None:
        value = compute()
    return value


def _progress(task_key: Any, key: str) -> None:
    task = background.get(task_key)
    if task is None or task.done:
        st.rerun(scope="app")
    waiting = [t for t in background.pending() if not t.started]
    ahead = f" ({len(waiting)} computation(s) queued)" if not task.started and waiting else ""
    elapsed = time.time() - (task.started or task.created)
    text = f"{task.label}: {task.stage or ('queued' if not task.started else 'working')} · {elapsed:.0f} s{ahead}"
    if task.fraction is None:
        st.progress(0.0 if not task.started else min(0.95, elapsed / (elapsed + 10)), text=text)
    else:
        st.progress(min(max(task.fraction, 0.0), 1.0), text=text)


def plotly_chart(fig: go.Figure, key: str, fmt: str | None = None) -> None:
    st.plotly_chart(fig, key=key, config=plotly_config(fmt), width="stretch")


def figure_format() -> None:
    """A switch for what the charts' camera button downloads: PNG, or SVG for a paper."""
    st.segmented_control("Chart download (camera button)", ["png", "svg"], default="svg", key=FORMAT_KEY,
                         format_func=str.upper, help="The camera icon in each chart's toolbar saves the chart in this format.")


def table(df: pd.DataFrame, key: str, file_name: str, **kwargs) -> None:
    """A dataframe and a button that downloads it as CSV."""
    st.dataframe(df, key=key, hide_index=True, width="stretch", **kwargs)
    st.download_button("Download CSV", df.to_csv(index=False).encode(), file_name=file_name, mime="text/csv",
                       key=f"{key}_csv", icon=":material/download:")


def factor_sliders(ds: GroundTruthDataset, key: str) -> tuple[int, ...]:
    """One slider per factor (class index, default the middle class; named classes show their names); returns the
    factor tuple."""
    values = []
    for k, (name, size) in enumerate(zip(ds.factor_names, ds.factor_sizes, strict=True)):
        names = ds.class_names(k)
        if size == 1:
            values.append(0)
        elif names is not None:
            values.append(st.select_slider(f"{name} (of {size})", options=list(range(size)), value=size // 2,
                                           format_func=names.__getitem__, key=f"{key}_{ds.name}_{name}"))
        else:
            values.append(st.slider(f"{name} (of {size})", 0, size - 1, size // 2, key=f"{key}_{ds.name}_{name}"))
    return tuple(values)


def random_factors(ds: GroundTruthDataset, seed: int) -> tuple[int, ...]:
    return tuple(int(v) for v in ds.sample_factors(1, np.random.default_rng(seed))[0])


def dataset_choices() -> dict[str, dict]:
    """Datasets the Dataset page can show: the picked model's first, then the built-in ones."""
    choices: dict[str, dict] = {}
    path = selected_run()
    if path is not None:
        config, _ = run_listing.inspect_run(path)
        if config is not None:
            spec = config["dataset"]
            choices[f"{spec['name']} (the picked model's)"] = spec
    for name in BUILT_IN:
        if {"name": name} not in choices.values():
            choices[name] = {"name": name}
    if os.environ.get("MTC_DSPRITES") and not any(s["name"] == "dsprites" for s in choices.values()):
        choices["dsprites"] = {"name": "dsprites"}
    return choices


def factor_classes(ds: GroundTruthDataset, k: int, most: int = 8) -> list[str] | None:
    """Names of factor k's classes when it has few enough for discrete colours (a shape, a small grid), else None
    (a colour bar suits a long ordered factor such as a position)."""
    names = ds.class_names(k)
    if names is not None:
        return list(names)
    size = ds.factor_sizes[k]
    return None if size > most else [str(v) for v in range(size)]


def top_latents(mi_row: list[float], k: int = 2) -> tuple[int, ...]:
    """Indices of the k latents with the most normalised MI with one factor, most first."""
    return tuple(int(j) for j in np.argsort(-np.asarray(mi_row), kind="stable")[:k])


def most_correlated_pair(codes: np.ndarray) -> tuple[int, int]:
    """The two latents whose codes [N, D] have the largest |correlation| (constant latents never win)."""
    corr = np.nan_to_num(np.abs(figures.correlations(codes)), nan=0.0)
    np.fill_diagonal(corr, -1.0)
    i, j = np.unravel_index(np.argmax(corr), corr.shape)
    return int(min(i, j)), int(max(i, j))


def latent_pair(dim: int, default: tuple[int, int], key: str) -> tuple[int, int]:
    """Two select boxes choosing latents i and j (default: the given pair)."""
    left, right = st.columns(2)
    i = left.selectbox("Latent on x", range(dim), index=default[0], format_func=lambda j: f"z{j}", key=f"{key}_i")
    j = right.selectbox("Latent on y", range(dim), index=default[1], format_func=lambda j: f"z{j}", key=f"{key}_j")
    return i, j


def tc_estimates(tc: dict) -> pd.DataFrame:
    """The TC report as a table: one estimator per row, mean and sampled codes side by side, each value with its 95%
    interval, the points it rests on and how the interval was made (Mean vs sampled, Your codes). The dataset
    Monte-Carlo upper estimate is not a row: `tc_report.mixture_note` says it apart, with its warning."""
    settings = tc["settings"]
    knn = tc["mean"].get("knn", {})
    return pd.DataFrame([
        {"estimator": "Gaussian, -1/2 log det R, bias-corrected", "mean codes": tc_report.describe(tc, "mean", "gaussian"),
         "sampled codes": tc_report.describe(tc, "sampled", "gaussian"), "points": f"{settings['n']:,}",
         "95% interval": f"+- 1.96 bootstrap sd ({settings['bootstrap']} resamples)"},
        {"estimator": "kNN (KSG, Gaussian-reference corrected)", "mean codes": tc_report.describe(tc, "mean", "knn"),
         "sampled codes": tc_report.describe(tc, "sampled", "knn"),
         "points": f"{knn.get('batches', 0)} batches of {knn.get('n', 0):,} distinct", "95% interval": "t interval over the batches"},
    ])
