"""Mean vs sampled TC: the same model's mean codes and sampled codes, side by side."""

import pandas as pd
import streamlit as st

from mtc_core.evaluation import tc_report
from mtc_core.visualize import figures
from ui import cache, layout, widgets

layout.page("Mean vs sampled TC")

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
    mc = tc["sampled"].get("dataset_mc", {})
    widgets.table(widgets.tc_estimates(tc), key="mvs_tc", file_name="tc_estimates.csv")
    st.caption(f"From {source}. Mean and sampled codes are scored by the same estimator on the same points. The Gaussian "
               "formula sees only linear dependence; kNN also sees nonlinear dependence. The minibatch estimators (MSS, MWS) "
               "that beta-TCVAE and RTC-VAE optimise are training signals, biased when the batch is far smaller than the "
               "dataset (MSS reads negative), so they are not shown; `docs/estimators.md` gives every estimator's bias at "
               "the sizes used.")
    st.caption("The dataset Monte-Carlo estimate is the TC of the mixture of the N posteriors, which reads above the "
               "TC of q(z) at finite N: +0.34 nats at N = 2,000 and +0.12 at N = 10,000 on independent codes with "
               "posterior variance 0.5 (`docs/estimators.md`), more where posteriors are narrow.")
    if mc and mc.get("converged") is False:
        st.caption(f"The dataset Monte-Carlo estimate still changes with N (on half the points: {mc['half_n']:.3f}): "
                   "where posteriors are narrow next to the spacing of the points, the N-point mixture is spikier than "
                   "q(z), so this value lies above the TC of q(z). Read it as an upper estimate.")
    if tc["dropped"]:
        st.warning(f"Mean latents {', '.join(f'z{j}' for j in tc['dropped'])} are exactly constant; "
                   "every TC is computed over the other latents.")

    st.subheader("Where the TC lives")
    st.markdown(
        f"Active latents (Var mu_j > {settings['active_threshold']}): "
        f"{', '.join(f'z{j}' for j in tc['active']) or 'none'}; passive: {', '.join(f'z{j}' for j in tc['passive']) or 'none'}. "
        "The Gaussian TC splits exactly into TC(active) + TC(passive) + I(active; passive), the last being "
        "1/2 (log det R_AA + log det R_PP - log det R)."
    )
    parts = {"all": "all latents", "active": "among active latents", "passive": "among passive latents",
             "between": "between active and passive, I(A; P)"}
    split = pd.DataFrame([{"part": label, **{f"{code} codes": tc_report.describe(tc, code, "gaussian", part=part) for code in ("mean", "sampled")}}
                          for part, label in parts.items()])
    widgets.table(split, key="mvs_split", file_name="tc_split.csv")
    total, between = tc_report.value(tc, "mean", "gaussian"), tc_report.value(tc, "mean", "gaussian", part="between")
    if total and between is not None and total > 0.05:
        st.caption(f"{between / total:.0%} of this model's mean-code TC lies between active and passive latents: passive "
                   "latents whose tiny means copy active ones. Their samples are almost pure noise, which is why the "
                   "sampled codes' TC stays low.")

st.subheader("Active and passive latents")
act = widgets.needing_codes(path, lambda: cache.activity(path), key="mvs_act_wait")
if act is not None:
    widgets.plotly_chart(figures.activity_bars(act["var_mu"], act["mean_sigma2"]), key="mvs_activity")
    st.caption(f"From {act['source']}.")

st.subheader("Correlation matrices")
codes = widgets.wait(cache.codes(path), key="mvs_codes_wait")
if codes is None:
    st.stop()
st.caption(f"On {len(codes['mean']):,} encoded points of the model's dataset (seed 0), one draw of the sampled codes.")
widgets.plotly_chart(figures.correlation_heatmaps(codes["mean"], codes["sampled"]), key="mvs_heatmaps")

if model.config.latent_dim >= 2:
    st.subheader("A latent pair")
    st.caption("By default the pair whose mean codes are the most correlated.")
    i, j = widgets.latent_pair(model.config.latent_dim, widgets.most_correlated_pair(codes["mean"]), key="mvs_pair")
    widgets.plotly_chart(figures.latent_pair_scatter(codes["mean"], codes["sampled"], i, j), key="mvs_scatter")
