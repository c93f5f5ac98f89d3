"""MTC Explorer: does a low TC of the sampled codes mean a low TC of the mean codes? (`streamlit run app.py`)

The entry page, at /: the Overview, the claim from the shipped zoo's stored evaluations on one screen. The other pages
are the files in pages/ (Streamlit's multipage folder); each page, this one included, starts with `layout.page`, which
draws the sidebar they share (ui/pages.py explains).
"""

import streamlit as st

from mtc_core.visualize import charts, svg_charts
from services import run_listing, run_tables
from ui import layout, pages, widgets

layout.page("Overview")

st.title("A low TC of the sampled codes does not mean a low TC of the mean codes")
st.markdown(
    "TC penalties (beta-TCVAE, FactorVAE) act on the **sampled codes** z = mu(x) + sigma(x) eps; people use the **mean "
    "codes** mu(x). By the law of total covariance, Cov(z) = Cov(mu) + E[diag sigma²(x)]: posterior noise only adds to "
    "the diagonal, so the sampled codes' TC stays bounded while the mean codes' TC can grow without bound "
    "([the theorem](/Theorem)). In a trained model the gap sits in *passive* latents, whose tiny means copy active ones."
)

zoo = [e for e in run_listing.comparable_runs() if e.source == "zoo"]
rows, missing = run_tables.evaluation_rows(zoo)
datasets = list(dict.fromkeys(r["dataset"] for r in rows))
if not datasets:
    st.info("No shipped model has a stored evaluation yet: `python -m mtc_core evaluate pretrained/<model>` stores one. "
            + ("" if zoo else widgets.NO_MODEL))
    st.stop()

left, middle, right = st.columns([2, 2, 3], vertical_alignment="bottom")
dataset = left.segmented_control("Dataset", datasets, default="shapes2d" if "shapes2d" in datasets else datasets[0], key="ov_dataset")
dataset = dataset or datasets[0]
estimator = middle.segmented_control("TC estimator", ["gaussian", "knn"], default="gaussian", key="ov_estimator",
                                     format_func={"gaussian": "Gaussian", "knn": "kNN"}.get) or "gaussian"
interactive = right.toggle("Interactive chart (zoom, PNG)", key="ov_interactive",
                           help="The same figure drawn by plotly. Off, the chart is a static SVG: the first screen then "
                                "needs no chart library in the browser; hover a bar for its value.")
groups = run_tables.aggregate([r for r in rows if r["dataset"] == dataset])
if interactive:
    widgets.figure_format()
    widgets.plotly_chart(charts.tc_story(groups, estimator), key="ov_story")
else:
    story = svg_charts.tc_story_svg(groups, estimator)
    st.markdown(story, unsafe_allow_html=True)  # st.html's sanitiser keeps HTML only, no SVG
    st.download_button("Download SVG", story.encode(), file_name=f"tc_story_{dataset}_{estimator}.svg", mime="image/svg+xml",
                       key="ov_story_svg", icon=":material/download:")
st.caption("Bars: mean over the seeds in the zoo, whiskers: sd over seeds (one seed: the estimate's 95% interval), ticks: "
           "the seeds. Every value is the model's stored evaluation (`evaluate`: 10,000 points, the same numbers as "
           "RESULTS.md). Left and right panels share the rows; the right panel's parts add up to the mean codes' Gaussian "
           "TC exactly: TC(all) = TC(active) + TC(passive) + I(active; passive).")

shown = [g for g in groups if g["model"] in ("beta_tcvae", "factor_vae", "rtc_vae") and g["mean"]["mean"] and g["sampled"]["mean"] is not None]
lines = []  # one per configuration of the TC-penalised families and of the remedy
for g in shown:
    share = g["mean_between"]["mean"] / g["mean"]["mean"] if g["mean_between"]["mean"] is not None else None
    seeds = f"{len(g['seeds'])} seed{'s' if len(g['seeds']) > 1 else ''}"
    role = "the remedy, " if g["model"] == "rtc_vae" else ""
    lines.append(f"- **{charts.short_name(g['label'], dataset)}** ({role}{seeds}): mean codes {g['mean']['mean']:.2f} nats, sampled "
                 f"codes {g['sampled']['mean']:.2f} nats" + (f"; {share:.0%} of the mean codes' TC lies between active and "
                                                              "passive latents" if share is not None else "") + ".")
if lines:
    st.markdown("**What the zoo shows** (Gaussian TC, mean over seeds):\n" + "\n".join(lines))

st.markdown("**Look closer**")
links = [("Theorem", "The theorem, interactive"), ("Side by side", "Two models side by side"),
         ("Mean vs sampled TC", "One model's codes, every estimator"), ("Factor disintegration", "Factors split over latents"),
         ("Compare", "Every model, for a paper"), ("Train", "Train your own")]
columns = st.columns(3)
for i, (title, label) in enumerate(links):
    columns[i % 3].page_link(pages.PAGE_FILES[title], label=label, icon=pages.PAGES[title][1])

if missing:
    st.caption(f"Not in the chart yet, no stored evaluation: {', '.join(e.label for e in missing)} "
               "(`python -m mtc_core evaluate <run>` stores one).")
