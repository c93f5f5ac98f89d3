"""Theorem (docs/design.md, "The theorem"): equicorrelated means have unbounded TC, their samples stay below B(d, s)."""

import pandas as pd
import streamlit as st

from mtc_core import theory
from mtc_core.evaluation import tc_report
from mtc_core.visualize import figures
from ui import cache, layout, widgets

layout.page("Theorem")


def theory_words(tc: dict, bound: float) -> str:
    """Where the model's mean and sampled Gaussian TCs sit against the bound, in words."""
    sampled, mean = tc_report.describe(tc, "sampled", "gaussian"), tc_report.describe(tc, "mean", "gaussian")
    s_value, m_value = tc_report.value(tc, "sampled", "gaussian"), tc_report.value(tc, "mean", "gaussian")
    s_ci = tc_report.interval(tc, "sampled", "gaussian")
    if s_value <= bound:
        first = f"Its sampled codes' TC, {sampled} nats, lies below the bound {bound:.3f} nats, as it must."
    elif s_ci is not None and s_ci[0] <= bound:
        first = (f"Its sampled codes' TC estimate, {sampled} nats, is above the bound {bound:.3f} nats but its interval "
                 "reaches below it: estimation noise (the bound holds for the TC itself).")
    else:
        first = (f"Its sampled codes' TC, {sampled} nats, is above the bound {bound:.3f} nats by more than its interval: "
                 "the codes are not Gaussian enough for the Gaussian TC of their estimate to respect it.")
    if m_value > bound:
        second = (f"Its mean codes' TC, {mean} nats, is {m_value / bound:.1f}x the bound" if bound > 0 else
                  f"Its mean codes' TC, {mean} nats, is above the bound") + (
            ": the means hold more dependence than any sampled codes with these variances could show.")
    else:
        second = (f"Its mean codes' TC, {mean} nats, is below the bound as well: these variances would let sampled codes be "
                  "as dependent as the means, so the bound alone does not force this model's gap between the two TCs.")
    return f"{first} {second}"


def picked_model() -> None:
    """The sidebar's model: its d, its measured E[sigma_j^2] and Var(mu_j), the bound they put on its sampled codes'
    Gaussian TC (`theory.measured_sampled_tc_bound`) and where its mean and sampled TCs (its TC report) sit against it."""
    loaded = widgets.loaded_run()
    if loaded is None:
        st.info("Pick a model in the sidebar to see where its TCs sit against the bound its variances allow.")
        return
    path = loaded[0]
    result = widgets.wait(cache.tc_report(path), key="thm_tc_wait")
    act = widgets.needing_codes(path, lambda: cache.activity(path), key="thm_act_wait") if result else None
    if result is None or act is None:
        return
    tc, source = result
    var_mu, sigma2 = act["var_mu"], act["mean_sigma2"]
    kept = [j for j in range(len(var_mu)) if j not in tc.get("dropped", []) and var_mu[j] > 0 and sigma2[j] > 0]
    if len(kept) < 2:
        st.info("Fewer than two of this model's mean latents vary: total correlation, and its bound, are not defined.")
        return
    bound = theory.measured_sampled_tc_bound(var_mu[kept], sigma2[kept])
    noise = sigma2[kept] / var_mu[kept]
    dims = len(var_mu)
    st.markdown(
        "For any VAE the sampled codes have Cov(z) = Cov(mu) + diag E[sigma_j²]; rescaled by 1 / sd(mu_j) this is "
        "R + diag(s_j), s_j = E[sigma_j²] / Var(mu_j). Whatever the correlations R of the means, the sampled codes' "
        "Gaussian TC stays below a bound fixed by the s_j alone (docs/design.md, \"The theorem\"): the smaller of "
        "B(d, min_j s_j) and the chain-rule bound ½ (Σ_j log(1 + 1/s_j) − max_j log(1 + 1/s_j)). The means' TC has no such bound.")
    first, second, third = st.columns(3)
    first.metric("d of this model", f"{dims}", help=f"{len(kept)} latents vary and enter the TCs and the bound"
                 + (f"; {', '.join(f'z{j}' for j in tc['dropped'])} constant" if tc.get("dropped") else ""))
    second.metric("Active latents", f"{len(tc.get('active', []))} of {dims}",
                  help="Var(mu_j) above the cut chosen from the data (the TC report's)")
    third.metric("Bound on its sampled TC", f"{bound:.3f} nats",
                 help=f"measured_sampled_tc_bound over the {len(kept)} varying latents; min_j s_j = {noise.min():.3g}, "
                      f"B(d, min_j s_j) = {theory.sampled_tc_bound(len(kept), float(noise.min())):.3f} nats")
    st.table(pd.DataFrame({"latent": [f"z{j}" for j in kept], "Var(mu_j)": var_mu[kept], "E[sigma_j^2]": sigma2[kept],
                           "s_j = E[sigma_j^2] / Var(mu_j)": noise,
                           "activity": ["active" if j in tc.get("active", []) else "passive" for j in kept]}).set_index("latent"))
    values = {code: tc_report.value(tc, code, "gaussian") for code in ("mean", "sampled")}
    if None not in values.values():
        widgets.plotly_chart(figures.tc_against_bound(
            {"mean codes mu(x)": {"value": values["mean"], "ci": tc_report.interval(tc, "mean", "gaussian")},
             "sampled codes z": {"value": values["sampled"], "ci": tc_report.interval(tc, "sampled", "gaussian")}}, bound),
            key="thm_model")
        st.markdown(theory_words(tc, bound))
    st.caption(f"TCs from {source} (Gaussian, bias-corrected, 95% intervals); variances from {act['source']}.")


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

st.subheader("The picked model against its bound")
picked_model()

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
    f"kNN on {mc['knn_points']} samples": [f"{v:.3f}" if v >= 0 else f"0.000 (raised to 0 from {v:.3f})"
                                            for v in (mc["mean_tc_knn"], mc["sampled_tc_knn"])],
})
widgets.table(check, key="thm_table", file_name="theorem_check.csv")
if min(mc["mean_tc_knn"], mc["sampled_tc_knn"]) < 0:
    st.caption("TC is never negative: a kNN estimate below 0 is the estimator's noise around a TC near 0, shown "
               "raised to 0 with its raw value, as everywhere in the app. Here kNN is one `tc_knn` on the first "
               f"{mc['knn_points']:,} samples; `docs/estimators.md` measures its spread in the report's batched form.")
st.caption(f"{n} samples; the Gaussian estimate agrees with the closed form to "
           f"{max(abs(mc['mean_tc_gaussian'] - mc['mean_tc']), abs(mc['sampled_tc_gaussian'] - mc['sampled_tc'])):.3f} nats.")
