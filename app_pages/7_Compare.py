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
