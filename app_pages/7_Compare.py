"""Compare: every model's metrics on mean and sampled codes, mean TC against sampled TC, CSV export."""

import streamlit as st

from mtc_core import figures
from ui import cache, runs, widgets

st.title("Compare models")
st.caption("Each metric on the mean codes and on the sampled codes. From a run's metrics.json when it was evaluated, "
           f"else computed here once per model ({cache.EVAL_SIZES['num_train']} training points).")

paths = [entry.path for entry in runs.comparable_runs()]
if not paths:
    st.info(widgets.NO_MODEL)
    st.stop()

with st.spinner("Evaluating the models without a stored evaluation (once per model)..."):
    table = cache.comparison(paths)
widgets.table(table, key="cmp_table", file_name="compare.csv")

estimator = st.radio("TC estimator", ["gaussian_tc", "knn_tc"], horizontal=True, key="cmp_estimator",
                     format_func={"gaussian_tc": "Gaussian", "knn_tc": "kNN"}.get)
widgets.plotly_chart(figures.tc_disparity_scatter(table[f"{estimator} (mean)"].tolist(), table[f"{estimator} (sampled)"].tolist(),
                                                  table["model"].tolist()), key="cmp_scatter")
st.caption("Above the diagonal: the mean codes are more correlated than the sampled codes a TC penalty sees.")

st.header("Sweeps")
st.caption("A sweep folder from `python -m mtc_core sweep` under your runs directory: mean and sampled TC against the "
           "regularisation strength, mean ± sd over seeds (Locatello et al. 2019, Sec. 5.1, for these models).")
folders = cache.sweep_folders()
if not folders:
    st.info("No sweep yet: run e.g. `python -m mtc_core sweep sweeps/toy_demo.yaml` (it writes under runs/sweeps/).")
    st.stop()
folder = st.selectbox("Sweep folder", folders, format_func=lambda p: str(p.relative_to(runs.runs_dir())), key="cmp_sweep")
sweep_table, plot_png = cache.sweep_summary(folder)
widgets.table(sweep_table, key="cmp_sweep_table", file_name=f"{folder.name}.csv")
if plot_png is None:
    st.info("No finished run in this sweep yet.")
else:
    st.image(plot_png)
    st.download_button("TC vs regularisation (PNG)", plot_png, file_name=f"{folder.name}_tc.png", mime="image/png",
                       key="cmp_sweep_png", icon=":material/download:")
