"""Dataset: the ground-truth factors. Sliders render one image; a random sample; the factor grid."""

import pandas as pd
import streamlit as st

from ui import cache, layout, widgets

layout.page("Dataset")

st.title("Dataset")

choices = widgets.dataset_choices()
label = st.selectbox("Dataset", list(choices), key="dataset_name")
spec = choices[label]
try:
    ds = cache.dataset(spec)
except ValueError as error:
    st.error(str(error))
    st.stop()
st.write(ds.describe())

left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader("One image")
    factors = widgets.factor_sliders(ds, "dataset_factor")
    caption = ", ".join(f"{name}={value}" for name, value in zip(ds.factor_names, factors, strict=True))
    st.image(cache.render_one(spec, factors), caption=caption, output_format="PNG")
with right:
    st.subheader("Random sample")
    seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="dataset_seed")
    st.image(cache.sample_grid(spec, rows=4, cols=8, seed=int(seed)),
             caption="32 images drawn uniformly from the factor grid", output_format="PNG")

st.subheader("Factor grid")
st.caption(f"Every combination of factor classes is exactly one image: {len(ds):,} images in all.")
grid = pd.DataFrame({"factor": ds.factor_names, "classes": ds.factor_sizes})
widgets.table(grid, key="dataset_factors", file_name=f"{ds.name}_factors.csv")
