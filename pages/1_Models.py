"""Models: every available model with its headline numbers, the picked one in detail, deleting your own runs."""

from pathlib import Path

import pandas as pd
import streamlit as st

from mtc_core import runs
from mtc_core.visualize import figures
from services import run_listing, run_tables
from ui import guard, layout, widgets

layout.page("Models")

st.title("Models")
st.caption("The shipped zoo and your own runs. Pick one in the sidebar: every page explores the picked model.")

entries = run_listing.available_runs()
if not entries:
    st.info(widgets.NO_MODEL)
    st.stop()

st.subheader("Available models")
st.caption("One row per run: reconstruction and KL (nats) and active latents from its last training record (held-out "
           "batch); its TCs with 95% intervals from its stored evaluation (`evaluate`), else the last training record's "
           "Gaussian TCs of a batch (no interval).")
widgets.table(pd.DataFrame(run_tables.summaries(entries)), key="models_table", file_name="models.csv")
broken = run_listing.broken_runs()
if broken:
    st.warning(f"{len(broken)} run(s) cannot be opened and are left out of every page:")
    st.dataframe(pd.DataFrame([{"run": e.path, "problem": e.problem} for e in broken]), hide_index=True, width="stretch",
                 key="models_broken")

path = widgets.selected_run()
if path is None:
    st.info("Pick a model in the sidebar to see its details.")
    st.stop()

config, problem = run_listing.inspect_run(path)
if config is None:
    st.error(f"Cannot read {Path(path).name}: {problem}")
    st.stop()
st.subheader(f"Picked: {Path(path).name}")
left, right = st.columns([2, 3])
with left:
    st.markdown(f"**{config['model']['name']}** on **{config['dataset']['name']}**, status *{config.get('status')}*, "
                f"step {config.get('step')}")
    st.json(config["model"].get("params", {}), expanded=True)
    with st.expander("Training config, dataset and command"):
        st.json({"train": config.get("train"), "dataset": config["dataset"]}, expanded=2)
        st.code(config.get("command") or "(not recorded)", language="bash", wrap_lines=True)
with right:
    try:
        history = runs.read_history(path)
    except (ValueError, OSError) as error:
        history = []
        st.warning(f"The training history cannot be read: {error}")
    if history:
        widgets.plotly_chart(figures.training_curves(history), key="models_curves")
    evaluation = run_tables.read_evaluation(path)
    if evaluation:
        with st.expander("Evaluation (metrics.json)"):
            st.json(evaluation, expanded=1)

if not run_listing.is_user_run(path):
    st.caption("Zoo models are read-only.")
    st.stop()
with st.expander("Delete this run", icon=":material/delete:"):
    guard.note("Deleting")
    confirm = st.checkbox(f"Yes, delete {Path(path).name} and its files permanently", key="models_delete_confirm",
                          disabled=guard.read_only())
    if st.button("Delete run", key="models_delete", disabled=not confirm or guard.read_only(), type="primary"):
        try:
            guard.check("delete")  # again here: a disabled button is no guarantee
            run_listing.delete_run(path)
        except ValueError as error:
            st.error(str(error))
        else:
            st.rerun()
