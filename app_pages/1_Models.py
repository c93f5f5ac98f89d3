"""Models: every available model with its headline numbers, the picked one in detail, deleting your own runs."""

from pathlib import Path

import pandas as pd
import streamlit as st

from mtc_core import figures, io
from ui import runs, widgets

st.title("Models")
st.caption("The shipped zoo and your own runs. Pick one in the sidebar: every page explores the picked model.")

entries = runs.available_runs()
if not entries:
    st.info(widgets.NO_MODEL)
    st.stop()

st.subheader("Available models")
st.caption("Headline numbers from each run's last training record (held-out batch): reconstruction and KL in nats, "
           "tc_mean = Gaussian TC of the mean codes, tc_sampled = minibatch TC of the sampled codes; "
           "eval_* from metrics.json when the run was evaluated.")
widgets.table(pd.DataFrame(runs.summaries(entries)), key="models_table", file_name="models.csv")

path = widgets.selected_run()
if path is None:
    st.info("Pick a model in the sidebar to see its details.")
    st.stop()

config = io.read_json(Path(path) / io.CONFIG)
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
    history = io.read_history(path)
    if history:
        widgets.plotly_chart(figures.training_curves(history), key="models_curves")
    evaluation = runs.read_evaluation(path)
    if evaluation:
        with st.expander("Evaluation (metrics.json)"):
            st.json(evaluation, expanded=1)

if not runs.is_user_run(path):
    st.caption("Zoo models are read-only.")
    st.stop()
with st.expander("Delete this run", icon=":material/delete:"):
    confirm = st.checkbox(f"Yes, delete {Path(path).name} and its files permanently", key="models_delete_confirm")
    if st.button("Delete run", key="models_delete", disabled=not confirm, type="primary"):
        try:
            runs.delete_run(path)
        except ValueError as error:
            st.error(str(error))
        else:
            st.rerun()
