"""Side by side: two models' codes, TC estimates, traversals and disintegration next to each other."""

from pathlib import Path

import pandas as pd
import streamlit as st

from mtc_core.evaluation import tc_report
from mtc_core.visualize import charts, figures
from services import run_listing, run_tables
from ui import cache, layout, widgets

layout.page("Side by side")

st.title("Two models side by side")
st.caption("By default a beta-TCVAE and our RTC-VAE on the same dataset with the same seed: the TC penalty on the sampled "
           "codes against the remedy that also penalises the mean codes' TC. Every number is the run's stored evaluation "
           "when it has one (as on every page).")

entries = run_listing.available_runs()
if len(entries) < 2:
    st.info("Side by side needs two models. " + widgets.NO_MODEL)
    st.stop()
labels = {e.path: e.label for e in entries}
default_a, default_b = run_listing.default_pair(entries)
for key, default in (("sbs_a", default_a), ("sbs_b", default_b)):
    if st.session_state.get(key) not in labels:
        st.session_state[key] = default.path
pick_a, pick_b = st.columns(2, gap="large")
path_a = pick_a.selectbox("Model A", list(labels), format_func=labels.get, key="sbs_a")
path_b = pick_b.selectbox("Model B", list(labels), format_func=labels.get, key="sbs_b")
picked = {"A": widgets.load(path_a), "B": widgets.load(path_b)}
if any(v is None for v in picked.values()):
    st.stop()
entry = {e.path: e for e in entries}
for column, (name, (path, model, _)) in zip((pick_a, pick_b), picked.items(), strict=True):
    e = entry[path]
    column.caption(f"{name}: `{e.model}` on {e.dataset}, seed {e.seed}, {model.config.latent_dim} latents, {e.status}")

st.subheader("Total correlation (nats, 95% intervals)")
tasks = {name: cache.tc_report(path) for name, (path, _, _) in picked.items()}
results = {name: widgets.wait(task, key=f"sbs_tc_{name}") for name, task in tasks.items()}
if all(results.values()):
    quantities = [("Gaussian, mean codes", "mean", "gaussian", None), ("Gaussian, sampled codes", "sampled", "gaussian", None),
                  ("kNN, mean codes", "mean", "knn", None), ("kNN, sampled codes", "sampled", "knn", None),
                  ("Gaussian, mean codes, between active and passive", "mean", "gaussian", "between"),
                  ("Gaussian, mean codes, among active latents", "mean", "gaussian", "active")]
    rows = [{"quantity": title, **{name: tc_report.describe(results[name][0], code, est, part) for name in picked}}
            for title, code, est, part in quantities]
    rows.append({"quantity": "active / passive latents",
                 **{name: f"{len(results[name][0]['active'])} / {len(results[name][0]['passive'])}" for name in picked}})
    evaluations = {name: run_tables.read_evaluation(path) for name, (path, _, _) in picked.items()}
    rows.append({"quantity": "reconstruction (nats per image)",
                 **{name: f"{ev['recon']:.2f}" if ev and isinstance(ev.get("recon"), int | float) else "n/a" for name, ev in evaluations.items()}})
    rows.append({"quantity": "from", **{name: results[name][1] for name in picked}})
    widgets.table(pd.DataFrame(rows).rename(columns={n: f"{n}: {Path(p).name}" for n, (p, _, _) in picked.items()}),
                  key="sbs_tc", file_name="side_by_side_tc.csv")

st.subheader("Correlations of the mean and the sampled codes")
st.caption("Both models on one -1..1 colour scale. A passive latent copying an active one shows as a strong "
           "correlation in the mean codes that the sampled codes wash out. On each model's encoded points (the whole grid, "
           f"or {cache.NUM_POINTS:,} of it), one draw of the sampled codes; hover for the values.")
codes = {name: widgets.wait(cache.codes(path), key=f"sbs_codes_{name}") for name, (path, _, _) in picked.items()}
if all(c is not None for c in codes.values()):
    panels = {f"{name}: {kind} codes": c[kind] for name, c in codes.items() for kind in ("mean", "sampled")}
    widgets.plotly_chart(charts.correlation_row(panels), key="sbs_heatmaps")

st.subheader("Traversals")
seed = st.number_input("Base image (random seed)", min_value=0, max_value=2**31 - 1, value=0, key="sbs_seed")
columns = st.columns(2, gap="large")
for column, (name, (path, model, config)) in zip(columns, picked.items(), strict=True):
    with column:
        ds = cache.dataset(config["dataset"])
        base = widgets.random_factors(ds, int(seed))
        grid = widgets.needing_codes(path, lambda path=path, base=base, model=model: cache.traversal_grid(
            path, base, num_latents=min(model.config.latent_dim, 10), with_gif=False), key=f"sbs_trav_{name}")
        if grid is not None:
            rows_text = ", ".join(f"z{j}" for j in grid["latents"])
            st.image(grid["grid_png"], caption=f"{name}: rows {rows_text} (most active first), ±2 prior sd", output_format="PNG")

st.subheader("Factor disintegration")
st.caption("Per factor: how many latents carry it (normalised MI ≥ tau) and how split it is (0: one latent holds it all).")
tau = st.slider("tau", 0.02, 0.5, 0.1, 0.01, key="sbs_tau")
reports = {name: widgets.needing_codes(path, lambda path=path: cache.disintegration_reports(path, tau=tau), key=f"sbs_mi_{name}")
           for name, (path, _, _) in picked.items()}
if all(reports.values()):
    names = {name: rep["mean"]["factor_names"] for name, rep in reports.items()}
    if names["A"] == names["B"]:
        split = pd.DataFrame({"factor": names["A"],
                              **{f"latents ({name})": rep["mean"]["latents_per_factor"] for name, rep in reports.items()},
                              **{f"split ratio ({name})": ["carried by no latent" if v is None else f"{v:.3f}" for v in rep["mean"]["split_ratio"]]
                                 for name, rep in reports.items()}})  # None: a factor no latent carries
        widgets.table(split, key="sbs_dis", file_name="side_by_side_disintegration.csv")
    columns = st.columns(2, gap="large")
    for column, (name, rep) in zip(columns, reports.items(), strict=True):
        with column:
            widgets.plotly_chart(figures.mi_heatmaps({f"{name}, mean codes": rep["mean"]["mi_matrix"]}, rep["mean"]["factor_names"]),
                                 key=f"sbs_mi_heat_{name}")
            st.caption(f"{name}: mean codes, from {rep['source']}.")
