"""Theorem (docs/design.md, "The theorem"): equicorrelated means have unbounded TC, their samples stay below B(d, s)."""

import pandas as pd
import streamlit as st

from mtc_core import theory
from mtc_core.visualize import figures
from ui import cache, layout, widgets

layout.page("Theorem")

st.title("Mean TC unbounded, sampled TC bounded")
st.markdown(
    "Let the mean codes be equicorrelated in d dimensions, Cov(mu) = (1 - rho) I + rho 11ᵀ, and add posterior "
    "variance s to every dimension. Then Cov(z) = Cov(mu) + s I is equicorrelated with rho' = rho / (1 + s) < 1 / (1 + s), so\n\n"
    "$$\\mathrm{TC}(\\mu) = -\\tfrac12\\left[(d-1)\\log(1-\\rho) + \\log(1+(d-1)\\rho)\\right] \\to \\infty "
    "\\text{ as } \\rho \\to 1, \\qquad \\mathrm{TC}(z) < B(d, s) = \\mathrm{TC}\\big|_{\\rho' = 1/(1+s)}.$$"
)

left, middle, right = st.columns(3)
d = left.slider("d (latents)", 2, 20, 6, key="thm_d")
rho = middle.slider("rho (correlation of the means)", 0.0, 0.99, 0.9, 0.01, key="thm_rho")
s = right.slider("s (posterior variance)", 0.05, 3.0, 1.0, 0.05, key="thm_s")

a, b, c = st.columns(3)
a.metric("TC of the means", f"{theory.mean_tc(d, rho):.3f} nats")
b.metric("TC of the samples", f"{theory.sampled_tc(d, rho, s):.3f} nats", help=f"rho' = {rho / (1 + s):.3f}")
c.metric("Bound B(d, s)", f"{theory.sampled_tc_bound(d, s):.3f} nats")

curves = cache.theorem_curves(d, s)
widgets.plotly_chart(figures.theorem_curves(curves["rho"], curves["mean_tc"], curves["sampled_tc"], curves["bound"], rho),
                     key="thm_curves")

st.subheader("Monte-Carlo check")
n = st.select_slider("Samples", [2_000, 5_000, 20_000, 100_000], value=20_000, key="thm_n")
if st.button("Sample and compare", key="thm_check", icon=":material/casino:"):
    st.session_state["thm_checked"] = (d, rho, s, n)
if st.session_state.get("thm_checked") != (d, rho, s, n):
    st.caption("Draws mu ~ N(0, R_rho) and z = mu + sqrt(s) eps and estimates both TCs from the samples.")
    st.stop()
mc = cache.monte_carlo(d, rho, s, n)
check = pd.DataFrame({
    "": ["TC of the means", "TC of the samples"],
    "closed form": [mc["mean_tc"], mc["sampled_tc"]],
    "Gaussian TC of the sample covariance": [mc["mean_tc_gaussian"], mc["sampled_tc_gaussian"]],
    f"kNN on {mc['knn_points']} samples": [mc["mean_tc_knn"], mc["sampled_tc_knn"]],
})
widgets.table(check, key="thm_table", file_name="theorem_check.csv")
if min(mc["mean_tc_knn"], mc["sampled_tc_knn"]) < 0:
    st.caption("A kNN value below 0 is the estimator's noise around a TC near 0 (TC itself is never negative; "
               "`docs/estimators.md` gives its spread at these sizes).")
st.caption(f"{n} samples; the Gaussian estimate agrees with the closed form to "
           f"{max(abs(mc['mean_tc_gaussian'] - mc['mean_tc']), abs(mc['sampled_tc_gaussian'] - mc['sampled_tc'])):.3f} nats.")
