"""Models: every available model with its headline numbers, the picked one in detail, deleting your own runs."""

from pathlib import Path

import pandas as pd
import streamlit as st

from services import run_curves, run_listing, run_tables
from ui import curves, guard, layout, widgets
from ui.report_button import report_download_button

layout.page("Models")

st.title("Models")
st.caption("The shipped zoo and your own runs. Pick one in the sidebar: every page explores the picked model.")

entries = run_listing.available_runs()
if not entries:
    st.info(widgets.NO_MODEL)
    st.stop()

st.subheader("Available models")
st.caption("One row per run. Its TCs with 95% intervals and its reconstruction (recon: nats per held-out image, from the "
           "mean codes) come from its stored evaluation (`evaluate`), the numbers every page shows; without one, the TCs "
           "are the last training record's Gaussian TCs of a batch (no interval) and recon is empty. KL, active latents and "
           "recon (last training batch) are the last training record's. Click a header to sort; scroll sideways for more.")
widgets.table(pd.DataFrame(run_curves.models_rows(entries)), key="models_table", file_name="models.csv",
              column_config={**{c: st.column_config.TextColumn(width="medium") for c in  # an interval's text, not cut
                                run_curves.INTERVAL_COLUMNS},
                             "recon": st.column_config.NumberColumn("recon", format="%.2f"),
                             "recon (last training batch)": st.column_config.NumberColumn(format="%.2f"),
                             "kl": st.column_config.NumberColumn("KL (last training batch)", format="%.2f")})
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
st.markdown(f"**{config['model']['name']}** on **{config['dataset']['name']}**, status *{config.get('status')}*, "
            f"step {config.get('step')}")
report_download_button(path)
tc = curves.headline(path, key="models_headline")
curves.training_curves(path, key="models_curves", tc=tc)
left, right = st.columns(2)
with left.expander("Model config", expanded=False):
    st.json(config["model"].get("params", {}), expanded=True)
with right.expander("Training config, dataset and command"):
    st.json({"train": config.get("train"), "dataset": config["dataset"]}, expanded=2)
    st.code(config.get("command") or "(not recorded)", language="bash", wrap_lines=True)
evaluation = run_tables.read_evaluation(path)
if evaluation:
    with st.expander("Evaluation (metrics.json)"):
        st.json(evaluation, expanded=1)

if not run_listing.is_user_run(path):
    st.caption("Zoo models are read-only.")
    st.stop()
with st.expander("Delete this run", icon=":material/delete:"):
    guard.note("Deleting")
    training = run_listing.busy(path)  # any process training it (this server, a terminal, a sweep) holds its lock
    if training:
        st.caption(f":material/lock: {training}: it can be deleted once that process stops.")
    blocked = guard.read_only() or training is not None
    confirm = st.checkbox(f"Yes, delete {Path(path).name} and its files permanently", key="models_delete_confirm",
                          disabled=blocked)
    if st.button("Delete run", key="models_delete", disabled=not confirm or blocked, type="primary"):
        try:
            guard.check("delete")  # again here: a disabled button is no guarantee
            run_listing.delete_run(path)
        except ValueError as error:
            st.error(str(error))
        else:
            st.rerun()
