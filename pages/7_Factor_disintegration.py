"""Factor disintegration (docs/design.md, "Factor disintegration"): one factor split over several independent latents, which TC cannot see."""

import pandas as pd
import streamlit as st

from mtc_core.evaluation import tc_report
from mtc_core.visualize import figures
from ui import cache, layout, widgets

layout.page("Factor disintegration")

st.title("Factor disintegration")
st.markdown(
    "A factorised aggregated posterior (TC near 0) is not a disentangled one: a factor can be **split** over several "
    "latents that are independent of each other. Measured from the normalised mutual information "
    "M[k, j] = I(z_j; v_k) / H(v_k): per factor, the number of latents with M ≥ tau and the split ratio "
    "1 - max_j M[k, j] / sum_j M[k, j] (0: one latent holds it all)."
)

loaded = widgets.loaded_run()
if loaded is None:
    st.info(widgets.NO_MODEL)
    st.stop()
path, model, config = loaded
tau = st.slider("tau (a latent carries a factor when M ≥ tau)", 0.02, 0.5, 0.1, 0.01, key="dis_tau")
reports = widgets.needing_codes(path, lambda: cache.disintegration_reports(path, tau=tau), key="dis_wait")
if reports is None:  # no stored evaluation: the MI matrices need the encoded points
    st.stop()
names = reports["mean"]["factor_names"]

st.subheader("Normalised mutual information, factors x latents")
mi = {f"{rep} codes": reports[rep]["mi_matrix"] for rep in ("mean", "sampled")}
widgets.plotly_chart(figures.mi_heatmaps(mi, names), key="dis_mi")
split = pd.DataFrame({
    "factor": names,
    **{f"latents ({rep})": reports[rep]["latents_per_factor"] for rep in ("mean", "sampled")},
    **{f"split ratio ({rep})": reports[rep]["split_ratio"] for rep in ("mean", "sampled")},
    "best latent (mean)": [f"z{j}" for j in reports["mean"]["best_latent"]],
})
widgets.table(split, key="dis_table", file_name="disintegration.csv")
st.caption(f"From {reports['source']}.")

if model.config.latent_dim >= 2:
    st.subheader("Two latents coloured by a factor")
    st.caption("By default the two latents that carry most of the chosen factor: a split factor shows up as a grid.")
    factor = st.selectbox("Colour by", range(len(names)), format_func=names.__getitem__, key="dis_factor")
    top = widgets.top_latents(reports["mean"]["mi_matrix"][factor], 2)
    i, j = widgets.latent_pair(model.config.latent_dim, top, key=f"dis_pair_{names[factor]}")
    codes = widgets.wait(cache.codes(path), key="dis_codes_wait")
    if codes is not None:
        ds = cache.dataset(config["dataset"])
        widgets.plotly_chart(figures.latent_pair_scatter(codes["mean"], codes["sampled"], i, j, colour=codes["factors"][:, factor],
                                                         colour_name=names[factor], classes=widgets.factor_classes(ds, factor)),
                             key="dis_scatter")

st.subheader("A synthetic split beside this model")
st.markdown("Position u uniform in 0..31 coded as (u // 8, u % 8), plus two factors coded directly: the codes are "
            "independent (TC about 0) yet u is spread over two latents, and MIG drops.")
synthetic = cache.synthetic_split(tau=tau)
result = widgets.wait(cache.tc_report(path), key="dis_tc_wait")
if result is not None:
    tc, source = result
    compare = pd.DataFrame({
        "": ["synthetic split", f"this model ({config['model']['name']}, mean codes)"],
        "Gaussian TC [95% CI]": [f"{synthetic['gaussian_tc']:.3f}", tc_report.describe(tc, "mean", "gaussian")],
        "kNN TC [95% CI]": [f"{synthetic['knn_tc']:.3f}", tc_report.describe(tc, "mean", "knn")],
        "MIG": [synthetic["mig"], cache.mig(path)],
        "max latents per factor": [max(synthetic["report"]["latents_per_factor"]), max(reports["mean"]["latents_per_factor"])],
        "max split ratio": [max(synthetic["report"]["split_ratio"]), max(reports["mean"]["split_ratio"])],
    })
    widgets.table(compare, key="dis_compare", file_name="synthetic_vs_model.csv")
    st.caption(f"The synthetic codes: {cache.NUM_POINTS:,} points, one estimate each. The model's TCs: {source}, "
               "as on the Mean vs sampled page.")
synthetic_mi = {"synthetic codes (u // 8, u % 8, v1, v2)": synthetic["report"]["mi_matrix"]}
widgets.plotly_chart(figures.mi_heatmaps(synthetic_mi, synthetic["factor_names"]), key="dis_synthetic_mi")
