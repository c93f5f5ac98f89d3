"""Factor disintegration (docs/design.md, "Factor disintegration"): one factor split over several independent latents, which TC cannot see."""

import pandas as pd
import streamlit as st

from mtc_core.evaluation import tc_report
from mtc_core.metrics import disintegration
from mtc_core.visualize import figures
from ui import cache, layout, widgets

layout.page("Factor disintegration")

st.title("Factor disintegration")
st.markdown(
    "A factorised aggregated posterior (TC near 0) is not a disentangled one: a factor can be **split** over several "
    "latents that are independent of each other. Measured from the normalised mutual information "
    "M[k, j] = I(z_j; v_k) / H(v_k). A latent **carries** factor k when M[k, j] ≥ max(tau, floor_k): tau is the level "
    "you set, floor_k the noise floor, twice the plug-in MI's upward bias at this number of points (measured as the mean "
    "M[k, j] over the latents against the factor's values permuted over the points). Per factor: the number of latents "
    "that carry it and the split ratio 1 - max_j M[k, j] / sum_j M[k, j] (0: one latent holds it all). A factor that no "
    "latent carries is **carried by no latent**: it has nothing to split, so it gets no split ratio and no best latent."
)

loaded = widgets.loaded_run()
if loaded is None:
    st.info(widgets.NO_MODEL)
    st.stop()
path, model, config = loaded
tau = st.slider("tau (a latent carries a factor when M ≥ max(tau, noise floor))", 0.02, 0.5, 0.1, 0.01, key="dis_tau")
reports = widgets.needing_codes(path, lambda: cache.disintegration_reports(path, tau=tau), key="dis_wait")
if reports is None:  # no stored evaluation: the MI matrices need the encoded points
    st.stop()
names = reports["mean"]["factor_names"]

st.subheader("Normalised mutual information, factors x latents")
mi = {f"{rep} codes": reports[rep]["mi_matrix"] for rep in ("mean", "sampled")}
widgets.plotly_chart(figures.mi_heatmaps(mi, names), key="dis_mi")
summary = {rep: disintegration.factor_summary(reports[rep]["mi_matrix"], tau, reports[rep].get("noise_floor"))
           for rep in ("mean", "sampled")}
NOBODY = "carried by no latent"
split = pd.DataFrame({
    "factor": names,
    **{f"latents ({rep})": summary[rep]["latents_per_factor"] for rep in ("mean", "sampled")},
    **{f"split ratio ({rep})": [NOBODY if r is None else f"{r:.3f}" for r in summary[rep]["split_ratio"]] for rep in ("mean", "sampled")},
    "best latent (mean)": [NOBODY if j is None else f"z{j}" for j in summary["mean"]["best_latent"]],
    "largest M (mean)": [round(v, 3) for v in summary["mean"]["best_m"]],
    "threshold max(tau, floor)": [round(v, 3) for v in summary["mean"]["threshold"]],
})
widgets.table(split, key="dis_table", file_name="disintegration.csv")
nobody = [name for name, c in zip(names, summary["mean"]["carried"], strict=True) if not c]
if nobody:
    st.markdown(f"**Carried by no latent** (mean codes): {', '.join(nobody)}. No latent's M reaches the factor's threshold, "
                "so the model does not encode it (at this tau); a split ratio or a best latent would describe noise.")
if "noise_floor" not in reports["mean"]:
    st.caption("This stored evaluation predates the noise floor: the threshold is tau alone. `python -m mtc_core evaluate` "
               "stores the floor with a new report.")
st.caption(f"From {reports['source']}.")

if model.config.latent_dim >= 2:
    st.subheader("Two latents coloured by a factor")
    st.caption("By default the two latents that carry most of the chosen factor: a split factor shows up as a grid.")
    factor = st.selectbox("Colour by", range(len(names)), format_func=names.__getitem__, key="dis_factor")
    top = widgets.top_latents(reports["mean"]["mi_matrix"][factor], 2)
    if not summary["mean"]["carried"][factor]:
        st.caption(f"No latent carries {names[factor]}: the two latents shown have the most M with it, below its threshold.")
    i, j = widgets.latent_pair(model.config.latent_dim, top, key=f"dis_pair_{names[factor]}")
    codes = widgets.wait(cache.codes(path), key="dis_codes_wait")
    if codes is not None:
        ds = cache.dataset(config["dataset"])
        widgets.plotly_chart(figures.latent_pair_scatter(codes["mean"], codes["sampled"], i, j, colour=codes["factors"][:, factor],
                                                         colour_name=names[factor], classes=widgets.factor_classes(ds, factor)),
                             key="dis_scatter")



def _largest(values: list) -> float | None:
    """The largest split ratio over the factors some latent carries (None when none is)."""
    return max((v for v in values if v is not None), default=None)


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
        "max split ratio (carried factors)": [_largest(synthetic["report"]["split_ratio"]), _largest(summary["mean"]["split_ratio"])],
    })
    widgets.table(compare, key="dis_compare", file_name="synthetic_vs_model.csv")
    st.caption(f"The synthetic codes: {cache.NUM_POINTS:,} points, one estimate each. The model's TCs: {source}, "
               "as on the Mean vs sampled page.")
synthetic_mi = {"synthetic codes (u // 8, u % 8, v1, v2)": synthetic["report"]["mi_matrix"]}
widgets.plotly_chart(figures.mi_heatmaps(synthetic_mi, synthetic["factor_names"]), key="dis_synthetic_mi")
