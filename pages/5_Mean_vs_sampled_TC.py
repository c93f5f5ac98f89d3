"""Mean vs sampled TC: the same model's mean codes and sampled codes, side by side."""

import math

import pandas as pd
import streamlit as st

from mtc_core.evaluation import tc_report, thresholds
from mtc_core.metrics.activity import ACTIVITY_THRESHOLD
from mtc_core.visualize import figures
from ui import cache, layout, widgets

layout.page("Mean vs sampled TC")
threshold, activity = ACTIVITY_THRESHOLD, None  # the activity cut shown, and the report's curve over cuts (when it has one)

st.title("Mean vs sampled total correlation")
st.markdown(
    "The encoder gives each image a Gaussian q(z|x) = N(mu(x), diag sigma²(x)). The **mean codes** mu(x) are what "
    "people use downstream; the **sampled codes** z = mu(x) + sigma(x) eps are what the TC penalties of beta-TCVAE "
    "and FactorVAE act on. By the law of total covariance\n\n"
    "$$\\mathrm{Cov}(z) = \\mathrm{Cov}(\\mu) + \\mathbb{E}_x[\\mathrm{diag}\\,\\sigma^2(x)],$$\n\n"
    "so posterior noise adds to the diagonal only and washes correlations out: a **passive** latent "
    "(Var mu_j tiny, E sigma_j² near 1) can copy an active one in its mean while its samples are almost pure noise. "
    "Sampled TC low does not mean mean TC low."
)

loaded = widgets.loaded_run()
if loaded is None:
    st.info(widgets.NO_MODEL)
    st.stop()
path, model, _ = loaded

st.subheader("Total correlation (nats)")
result = widgets.wait(cache.tc_report(path), key="mvs_tc_wait")
if result is not None:
    tc, source = result
    settings = tc["settings"]
    if len(tc["active"]) + len(tc["passive"]) < 2:
        st.warning("Fewer than two mean latents vary: total correlation is not defined for this model.")
        st.stop()
    widgets.table(widgets.tc_estimates(tc), key="mvs_tc", file_name="tc_estimates.csv")
    st.caption(f"From {source}. Mean and sampled codes are scored by the same estimator on the same points. The Gaussian "
               "formula sees only linear dependence; kNN also sees nonlinear dependence. The minibatch estimators (MSS, MWS) "
               "that beta-TCVAE and RTC-VAE optimise are training signals, biased when the batch is far smaller than the "
               "dataset (MSS reads negative), so they are not shown; `docs/estimators.md` gives every estimator's bias at "
               "the sizes used.")
    if (note := tc_report.mixture_note(tc)) is not None:
        st.caption(note)
    if tc["dropped"]:
        st.warning(f"Mean latents {', '.join(f'z{j}' for j in tc['dropped'])} are exactly constant; "
                   "every TC is computed over the other latents.")

    st.subheader("Where the TC lives")
    activity = thresholds.activity(tc)
    shown = None  # the split at the cut picked below, read from the report's activity curve
    if activity is not None:
        options, default = activity["curve"]["thresholds"], activity["threshold"]
        threshold = st.select_slider(
            "Activity cut: a latent is active when Var(mu_j) > t", options=options,
            value=min(options, key=lambda t: abs(math.log(t / default))), key="mvs_threshold",
            format_func=lambda t: f"{t:.2g}" + (" (chosen from the data)" if math.isclose(t, default) else ""))
        shown = thresholds.split_at(tc, threshold)
        stable = activity.get("stable")
        st.caption(f"The cut {default:.3g} was chosen from the data: {activity['rule']}. "
                   + (f"Every cut from {stable[0]:.2g} to {stable[1]:.2g} gives the same active set. " if stable else "")
                   + "Where a latent counts as active is an analysis choice; the curve below shows the split over the "
                   "whole range (docs/design.md, \"Conclusions that survive the analysis choices\").")
    else:
        threshold = settings["active_threshold"]
        st.caption("This TC report has no activity curve (it was made before there was one; `python -m mtc_core evaluate` "
                   "makes a new report), so the split is shown at its one cut only.")
    active, passive = (shown["active"], shown["passive"]) if shown else (tc["active"], tc["passive"])
    st.markdown(
        f"Active latents (Var mu_j > {threshold:.3g}): "
        f"{', '.join(f'z{j}' for j in active) or 'none'}; passive: {', '.join(f'z{j}' for j in passive) or 'none'}. "
        "The Gaussian TC splits exactly into TC(active) + TC(passive) + I(active; passive), the last being "
        "1/2 (log det R_AA + log det R_PP - log det R)."
    )
    parts = {"all": "all latents", "active": "among active latents", "passive": "among passive latents",
             "between": "between active and passive, I(A; P)"}
    if shown is None or shown["at_default"]:  # the report's own split, each value with its interval
        cells = {part: {code: tc_report.describe(tc, code, "gaussian", part=part) for code in ("mean", "sampled")} for part in parts}
    else:  # another active set: the curve's point estimates
        cells = {part: {code: f"{shown[code][part]:.3f}" for code in ("mean", "sampled")} for part in parts}
        st.caption("At this cut the active set differs from the one at the cut chosen from the data: the values are the "
                   "curve's bias-corrected point estimates (intervals are computed at the chosen cut only).")
    split = pd.DataFrame([{"part": label, **{f"{code} codes": cells[part][code] for code in ("mean", "sampled")}}
                          for part, label in parts.items()])
    widgets.table(split, key="mvs_split", file_name="tc_split.csv")
    total = tc_report.value(tc, "mean", "gaussian")
    between = shown["mean"]["between"] if shown else tc_report.value(tc, "mean", "gaussian", part="between")
    if total and between is not None and total > 0.05:
        st.caption(f"{between / total:.0%} of this model's mean-code TC lies between active and passive latents: passive "
                   "latents whose tiny means copy active ones. Their samples are almost pure noise, which is why the "
                   "sampled codes' TC stays low.")

st.subheader("Active and passive latents")
act = widgets.needing_codes(path, lambda: cache.activity(path), key="mvs_act_wait")
if act is not None:
    widgets.plotly_chart(figures.activity_bars(act["var_mu"], act["mean_sigma2"], threshold=threshold), key="mvs_activity")
    st.caption(f"From {act['source']}.")
if activity is not None:
    st.markdown("**The split over the activity cut**")
    widgets.plotly_chart(figures.activity_curves(activity, chosen=threshold), key="mvs_curve")
    st.caption("Each point: the Gaussian TC split at that cut (bias-corrected point estimates). Hover for the number of "
               "active latents. A claim about \"the active latents\" means something only where the active set does not "
               "move: the shaded range.")

st.subheader("Correlation matrices")
codes = widgets.wait(cache.codes(path), key="mvs_codes_wait")
if codes is None:
    st.stop()
st.caption(f"On {len(codes['mean']):,} encoded points of the model's dataset (seed 0), one draw of the sampled codes.")
widgets.plotly_chart(figures.correlation_heatmaps(codes["mean"], codes["sampled"]), key="mvs_heatmaps")

st.subheader("Per-latent distributions")
act = act or cache.activity(path)  # the encoded points are there now
if act is not None:
    widgets.plotly_chart(figures.latent_histograms(codes["mean"], codes["logvar"], act["var_mu"], threshold), key="mvs_histograms")
    st.caption(f"One panel per latent: the histogram of its mean codes mu_j over the {len(codes['mean']):,} points (top) and of "
               f"its posterior variances sigma_j² (below). Active or passive by the cut above, Var(mu_j) > {threshold:.3g}, with "
               f"Var(mu_j) from {act['source']} (the activity bars' numbers); a passive latent's bars are pale. A passive "
               "latent's means barely move and its sigma_j² sits near the prior's 1.")

if model.config.latent_dim >= 2:
    st.subheader("A latent pair")
    st.caption("By default the pair whose mean codes are the most correlated.")
    i, j = widgets.latent_pair(model.config.latent_dim, widgets.most_correlated_pair(codes["mean"]), key="mvs_pair")
    widgets.plotly_chart(figures.latent_pair_scatter(codes["mean"], codes["sampled"], i, j), key="mvs_scatter")
