"""Compare: one dataset at a time, seeds aggregated per configuration, mean TC against sampled TC; tables and figures
to download for a paper."""

import pandas as pd
import streamlit as st

from mtc_core.evaluation import thresholds
from mtc_core.visualize import charts, compare_charts, figures
from services import run_listing, run_tables
from ui import cache, layout, widgets

layout.page("Compare")

st.title("Compare models")
st.caption("Each configuration's TC of the mean codes against the TC of its sampled codes, and every metric on both. From "
           "a run's stored evaluation (metrics.json) when it has one, else evaluated here once in the background at the "
           f"app's smaller sizes ({cache.EVAL_SIZES['num_train']:,} training points), which the table says.")

candidates = run_listing.comparable_runs(("complete", *run_listing.UNFINISHED))
if not candidates:
    st.info(widgets.NO_MODEL)
    st.stop()
datasets = list(dict.fromkeys(e.dataset for e in candidates))
first, second, third = st.columns([2, 2, 3])
dataset = first.segmented_control("Dataset", datasets, default="shapes2d" if "shapes2d" in datasets else datasets[0],
                                  key="cmp_dataset", help="One dataset at a time: TCs of different latent sizes and data do "
                                                          "not belong on one axis.") or datasets[0]
estimator = second.segmented_control("TC estimator", ["gaussian", "knn"], default="gaussian", key="cmp_estimator",
                                     format_func={"gaussian": "Gaussian", "knn": "kNN"}.get) or "gaussian"
with third:
    widgets.figure_format()
options = st.columns([3, 2, 2])
extra = options[0].multiselect("Also include runs that did not finish", list(run_listing.UNFINISHED), key="cmp_extra",
                               help="Cancelled, diverged or interrupted runs are left out unless asked for: their codes "
                                    "are not those of a trained model.")
mine = options[1].checkbox("Include your runs", value=True, key="cmp_mine")
per_seed = options[2].checkbox("Show every seed", value=False, key="cmp_per_seed")

entries = [e for e in candidates if e.dataset == dataset and e.status in ("complete", *extra) and (mine or e.source == "zoo")]
rows, failed, pending = cache.evaluated(entries)
if pending:
    st.caption(f"{len(pending)} run(s) without a stored evaluation are being evaluated; they join the chart when done.")
    widgets.wait(pending[0], key="cmp_wait", wait_s=0.0)
if failed:
    with st.expander(f"{len(failed)} run(s) could not be evaluated and are left out", icon=":material/error:"):
        st.dataframe(pd.DataFrame(failed), hide_index=True, width="stretch")
if not rows:
    st.stop()

groups = run_tables.aggregate(rows)
log = st.toggle("Log axes", value=compare_charts.log_advised(groups, estimator), key=f"cmp_log_{estimator}",
                help="On by default where the TCs span more than two decades: on linear axes every TC-penalised model sits "
                     "on x = 0. A TC at 0 (an estimate raised to 0) is drawn at the axis' floor with an open dotted marker.")
widgets.plotly_chart(compare_charts.tc_scatter(groups, estimator, per_seed=per_seed, log=log), key="cmp_scatter")
st.caption("One point per configuration, each with its own colour and marker (shades of its model family's colour): the mean "
           "over its seeds with error bars of the sd over seeds, or, for a configuration with one seed, that estimate's 95% "
           "interval. Above the diagonal the mean codes are more correlated than the sampled codes a TC penalty sees. Hover "
           "a point for its configuration and seeds; click a legend entry to hide it.")
if zero := compare_charts.at_zero(groups, estimator):
    where = f", drawn at the axis floor {compare_charts.floor_value(groups, estimator):g} with an open dotted marker" if log else ""
    st.caption(f"A TC at 0 (an estimate raised to 0: TC >= 0){where}: {'; '.join(charts.short_name(label, dataset) for label in zero)}.")

summary = pd.DataFrame(run_tables.configuration_table(groups, estimator))
st.subheader("Per configuration")
st.caption(f"Each column has one convention, named in its header: \"{run_tables.SD_HEADER}\" (one seed: its value, no sd) or "
           f"\"{run_tables.CI_HEADER}\" (the estimate's own interval, given for configurations with a single seed). "
           f"TCs: {'Gaussian' if estimator == 'gaussian' else 'kNN'} estimate, nats; the split between active and passive "
           "latents is Gaussian.")
widgets.table(summary, key="cmp_summary", file_name=f"compare_{dataset}_{estimator}.csv")
curves = thresholds.configuration_curves(rows)
if curves:
    st.subheader("Over the activity cut")
    for curve in curves:
        curve["label"] = charts.short_name(curve["label"], dataset)
    widgets.plotly_chart(figures.active_tc_curves(curves), key="cmp_active_curves")
    st.caption("The mean codes' Gaussian TC among the active latents as the cut between active and passive latents moves "
               "(Var(mu_j) > t; bias-corrected point estimates), one line per configuration: the mean over its seeds, each "
               "seed faint, each seed's cut chosen from the data as a circle. Where a line jumps, a latent crosses the cut: "
               "a claim about \"the active latents\" holds only where it does not move.")
left_out = len({r["group"] for r in rows}) - len(curves)
if left_out:
    st.caption(f"{left_out} configuration(s) have a TC report without an activity curve (made before there was one) and "
               "are not in this chart; `python -m mtc_core evaluate` makes a new report.")
st.subheader("Per run")
widgets.table(cache.comparison(rows), key="cmp_table", file_name=f"compare_{dataset}_runs.csv")

st.header("Sweeps")
st.caption("A sweep folder from `python -m mtc_core sweep` under your runs directory: mean and sampled TC against the "
           "regularisation strength, mean ± sd over seeds (Locatello et al. 2019, Sec. 5.1, for these models).")
folders = cache.sweep_folders()
if not folders:
    st.info("No sweep yet: run e.g. `python -m mtc_core sweep sweeps/toy_demo.yaml` (it writes under runs/sweeps/).")
    st.stop()
folder = st.selectbox("Sweep folder", folders, format_func=lambda p: str(p.relative_to(run_listing.runs_dir())), key="cmp_sweep")
sweep_table, plot_png = cache.sweep_summary(folder)
widgets.table(sweep_table, key="cmp_sweep_table", file_name=f"{folder.name}.csv")
if plot_png is None:
    st.info("No finished run in this sweep yet.")
else:
    st.image(plot_png)
    st.download_button("TC vs regularisation (PNG)", plot_png, file_name=f"{folder.name}_tc.png", mime="image/png",
                       key="cmp_sweep_png", icon=":material/download:")
