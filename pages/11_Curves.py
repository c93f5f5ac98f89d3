"""Training curves: several runs' histories overlaid (the TC of the mean and of the sampled codes by one estimator,
recon, KL), smoothed as TensorBoard does; a sortable table of the runs; TC against regularisation strength for the zoo
or a sweep folder, one point per run."""

import collections

import pandas as pd
import streamlit as st

from mtc_core.training.history import history_tc_estimator
from mtc_core.visualize import curves
from services import run_curves, run_listing
from ui import cache, layout, widgets

layout.page("Training curves")

st.title("Training curves")
st.caption("Runs of the zoo and yours, overlaid against the training step. Each history records, at its evaluation "
           "steps, the Gaussian TC of the mean and of the sampled codes of one held-out batch (one estimator for both), "
           "the reconstruction and the KL. Smoothing is TensorBoard's exponential moving average: s_t = w s_(t-1) + "
           "(1 - w) x_t, starting at the first value; the raw value is in the hover.")

entries = run_listing.available_runs()
if not entries:
    st.info(widgets.NO_MODEL)
    st.stop()
by_path = {e.path: e for e in entries}
if "curves_runs" not in st.session_state:  # first visit: the model picked in the sidebar
    st.session_state["curves_runs"] = [p for p in [widgets.selected_run()] if p in by_path] or [entries[0].path]
st.session_state["curves_runs"] = [p for p in st.session_state["curves_runs"] if p in by_path]  # deleted runs leave
picked = st.multiselect("Runs", list(by_path), format_func=lambda p: by_path[p].label, key="curves_runs",
                        placeholder="Pick runs to overlay")
left, middle, right = st.columns([2, 2, 1])
quantity = left.selectbox("Quantity", [curves.BOTH_TCS, *curves.QUANTITIES], key="curves_quantity")
smoothing = middle.slider("Smoothing (EMA weight w)", 0.0, 0.99, 0.0, 0.01, key="curves_smoothing")
log_y = right.checkbox("log y", key="curves_log_y", help="Values of 0 (a TC clipped at 0) have no place on a log axis and are left out.")

if not picked:
    st.info("Pick one or more runs above.")
else:
    histories, problems = run_curves.histories([by_path[p] for p in picked])
    for problem in problems:
        st.warning(f"History not read: {problem}")
    widgets.plotly_chart(curves.overlay(histories, quantity, smoothing, log_y), key="curves_overlay")
    notes = [f"`{h['label']}`: {history_tc_estimator(h['history'])}" for h in histories]
    missing = [h["label"] for h in histories if "sampled" in quantity and not curves.has_sampled_tc(h["history"])]
    st.caption("TC estimator per run: " + "; ".join(notes) + ".")
    if missing:
        st.caption(f"No sampled-code TC curve for {', '.join(f'`{m}`' for m in missing)}: their histories predate it "
                   "(their \"tc_sampled\" is the minibatch MSS, a biased training signal, negative in most records, which no "
                   "page shows as a TC). The table below and the Models page give their final sampled TC from the TC report.")

st.subheader("Runs")
st.caption("Final Gaussian TCs (nats, bias-corrected, from each run's stored TC report) and reconstruction (nats per "
           "held-out image, stored evaluation); empty where a run has no stored evaluation. Click a header to sort.")
widgets.table(pd.DataFrame(run_curves.run_table(entries)), key="curves_table", file_name="runs.csv",
              column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("TC mean codes", "TC sampled codes")}
              | {"recon": st.column_config.NumberColumn(format="%.2f")})

st.subheader("TC against regularisation strength")
st.caption("Each model's regularisation strength (its swept field: beta, gamma, lambda_od, lambda_t) on a log axis, the "
           "Gaussian TC of the sampled (left) and the mean codes (right) from each run's stored TC report; one point per "
           "run, so the seeds of a configuration sit one above another (Locatello et al. 2019, Sec. 5.1). A model without a "
           "regulariser is a dotted line.")
sources = {"The zoo": (run_listing.zoo_dir(), [e.path for e in entries if e.source == "zoo"])}
sources.update({f"Sweep folder {folder.name}": (folder, None) for folder in cache.sweep_folders()})
source = st.selectbox("Runs from", list(sources), key="curves_source")
folder, only = sources[source]
try:
    points, left_out = cache.strength_points(folder, only) if folder.is_dir() else ([], 0)
except (ValueError, OSError, KeyError, TypeError) as error:
    st.error(f"Cannot read {folder}: {error}")
    st.stop()
datasets = sorted({p["dataset"] for p in points if p["dataset"]})
if not points:
    st.info(f"No complete run with a stored TC report in {folder}" + (f" ({left_out} without one)." if left_out else "."))
    st.stop()
dataset = st.segmented_control("Dataset", datasets, default=datasets[0], key="curves_dataset") or datasets[0]
shown = [p for p in points if p["dataset"] == dataset]
budgets = collections.Counter(p["steps"] for p in shown)
if len(budgets) > 1:  # a model trained longer is another model: one budget at a time, the most common first
    choices = {f"{steps:,} steps" if isinstance(steps, int) else "unknown": steps for steps, _ in budgets.most_common()}
    first = next(iter(choices))
    picked = st.segmented_control("Training budget", list(choices), default=first, key="curves_budget") or first
    shown = [p for p in shown if p["steps"] == choices[picked]]
widgets.plotly_chart(curves.strength_figure(shown), key="curves_strength")
zero = [p for p in shown if p["field"] and not (isinstance(p["strength"], int | float) and p["strength"] > 0)]
trained = f" trained {shown[0]['steps']:,} steps" if len(budgets) > 1 and isinstance(shown[0]["steps"], int) else ""
st.caption(f"{len(shown)} runs on {dataset}{trained}" + (f"; {left_out} run(s) of the folder left out (not complete or no stored "
           "TC report: `python -m mtc_core evaluate RUN` stores one)" if left_out else "")
           + (f"; {len(zero)} at strength 0 or none, which a log axis cannot show" if zero else "") + ".")
