"""Mean vs sampled TC: the same model's mean codes and sampled codes, side by side."""

import pandas as pd
import streamlit as st

from mtc_core import figures
from ui import cache, widgets

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
codes = cache.codes(path)

st.subheader("Correlation matrices")
widgets.plotly_chart(figures.correlation_heatmaps(codes["mean"], codes["sampled"]), key="mvs_heatmaps")

st.subheader("Total correlation (nats)")
tc = cache.tc_table(path)
table = pd.DataFrame(tc["rows"], columns=["estimator", "mean codes", "sampled codes"])
widgets.table(table, key="mvs_tc", file_name="tc_estimates.csv",
              column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("mean codes", "sampled codes")})
st.caption(f"{tc['n']} encoded images. Empty cells: the minibatch and dataset estimators need a posterior q(z|x), "
           "which the mean codes (a point per image) do not have. The Gaussian formula sees only linear dependence; "
           "kNN also sees nonlinear dependence.")
if tc["dropped"]:
    st.warning(f"Mean latents {', '.join(f'z{j}' for j in tc['dropped'])} are exactly constant; "
               "the Gaussian TC of the means is computed over the other latents.")

st.subheader("Active and passive latents")
act = cache.activity(path)
widgets.plotly_chart(figures.activity_bars(act["var_mu"], act["mean_sigma2"]), key="mvs_activity")

if model.config.latent_dim >= 2:
    st.subheader("A latent pair")
    st.caption("By default the pair whose mean codes are the most correlated.")
    i, j = widgets.latent_pair(model.config.latent_dim, widgets.most_correlated_pair(codes["mean"]), key="mvs_pair")
    widgets.plotly_chart(figures.latent_pair_scatter(codes["mean"], codes["sampled"], i, j), key="mvs_scatter")
