"""Shared widgets: the sidebar model picker and device badge, the page guard, charts and tables with downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mtc_core import figures, io
from mtc_core.data import GroundTruthDataset
from mtc_core.models import VAE
from ui import cache, runs

RUN_KEY = "run_path"  # the sidebar picker's value: the selected run directory
PENDING_KEY = "run_path_next"  # set by the Train page; selected at the next rerun, before the picker is drawn
NO_MODEL = ("No model to explore yet: train one on the **Train** page (about a minute on the toy dataset), "
            "or point the environment variable MTC_ZOO_DIR at a model zoo.")
# Plotly's modebar, always shown; its camera button saves the chart as a PNG.
PLOTLY_CONFIG = {"displayModeBar": True, "displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def model_picker() -> None:
    """The sidebar select box shared by every page: the zoo, then the user's runs."""
    entries = runs.available_runs()
    try:
        runs.zoo_runs()
    except ValueError as problem:
        st.sidebar.warning(f"The model zoo could not be read: {problem}")
    if PENDING_KEY in st.session_state:
        st.session_state[RUN_KEY] = st.session_state.pop(PENDING_KEY)
    labels = {e.path: e.label for e in entries}
    if st.session_state.get(RUN_KEY) not in labels:
        st.session_state.pop(RUN_KEY, None)  # deleted, or not there yet: fall back to the first one
    if not entries:
        st.sidebar.info("No models yet: train one on the **Train** page.")
        return
    st.sidebar.selectbox("Model", list(labels), format_func=labels.get, key=RUN_KEY,
                         help=f"Zoo: {runs.zoo_dir()}  \nYour runs: {runs.runs_dir()}")


def device_badge() -> None:
    label = runs.device_label()
    st.sidebar.badge(label, icon=":material/memory:", color="green" if label.startswith("GPU") else "gray")


def selected_run() -> str | None:
    path = st.session_state.get(RUN_KEY)
    return path if path and (Path(path) / io.CONFIG).is_file() else None


def loaded_run() -> tuple[str, VAE, dict] | None:
    """(path, model, config) of the picked run; None (after an error message when the run is broken) otherwise."""
    path = selected_run()
    if path is None:
        return None
    try:
        model, config = cache.model(path)
    except ValueError as error:  # CheckpointError: the message names the file and the problem
        st.error(f"Cannot load {Path(path).name}: {error}")
        return None
    return path, model, config


def plotly_chart(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, width="stretch")


def table(df: pd.DataFrame, key: str, file_name: str, **kwargs) -> None:
    """A dataframe and a button that downloads it as CSV."""
    st.dataframe(df, key=key, hide_index=True, width="stretch", **kwargs)
    st.download_button("Download CSV", df.to_csv(index=False).encode(), file_name=file_name, mime="text/csv",
                       key=f"{key}_csv", icon=":material/download:")


def factor_sliders(ds: GroundTruthDataset, key: str) -> tuple[int, ...]:
    """One slider per factor (class index, default the middle class); returns the factor tuple."""
    values = []
    for name, size in zip(ds.factor_names, ds.factor_sizes, strict=True):
        if size == 1:
            values.append(0)
            continue
        values.append(st.slider(f"{name} (of {size})", 0, size - 1, size // 2, key=f"{key}_{name}"))
    return tuple(values)


def random_factors(ds: GroundTruthDataset, seed: int) -> tuple[int, ...]:
    return tuple(int(v) for v in ds.sample_factors(1, np.random.default_rng(seed))[0])


def dataset_choices() -> dict[str, dict]:
    """Datasets the Dataset page can show: the picked model's first, then the built-in ones."""
    choices: dict[str, dict] = {}
    path = selected_run()
    if path is not None:
        try:
            spec = io.read_json(Path(path) / io.CONFIG)["dataset"]
            choices[f"{spec['name']} (the picked model's)"] = spec
        except (ValueError, KeyError, TypeError):
            pass
    for name in ("toy", "squares", "shapes2d"):
        if {"name": name} not in choices.values():
            choices[name] = {"name": name}
    if os.environ.get("MTC_DSPRITES") and not any(s["name"] == "dsprites" for s in choices.values()):
        choices["dsprites"] = {"name": "dsprites"}
    return choices


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
