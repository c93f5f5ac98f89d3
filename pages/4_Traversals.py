"""Traversals: decode a base code with one latent swept at a time, latents ordered by activity (KL)."""

import streamlit as st

from ui import cache, layout, widgets

layout.page("Traversals")

st.title("Latent traversals")
st.caption("Each row sweeps one latent of the base image's mean code while the others stay fixed; "
           "rows are ordered by the latent's mean KL to the prior (most active first).")

loaded = widgets.loaded_run()
if loaded is None:
    st.info(widgets.NO_MODEL)
    st.stop()
path, model, config = loaded
ds = cache.dataset(config["dataset"])
latent_dim = model.config.latent_dim

base_col, range_col, size_col = st.columns(3, gap="large")
with base_col:
    base_mode = st.radio("Base image", ["factor sliders", "random"], horizontal=True, key="trav_base")
    if base_mode == "random":
        seed = st.number_input("Random seed", min_value=0, max_value=2**31 - 1, value=0, key="trav_seed")
        base = widgets.random_factors(ds, int(seed))
    else:
        base = widgets.factor_sliders(ds, "trav_factor")
with range_col:
    mode = st.radio("Range", ["prior", "quantile"], horizontal=True, key="trav_range",
                    format_func={"prior": "prior sd", "quantile": "data quantiles"}.get)
    extent, quantile = 2.0, 0.05
    if mode == "prior":
        extent = st.slider("Extent (prior standard deviations)", 0.5, 4.0, 2.0, 0.25, key="trav_extent")
    else:
        quantile = st.slider("From quantile q to 1 - q of the mean codes", 0.0, 0.25, 0.05, 0.01, key="trav_quantile")
with size_col:
    steps = st.slider("Steps", 3, 15, 10, key="trav_steps")
    shown = st.slider("Latents shown", 1, latent_dim, min(latent_dim, 10), key="trav_latents") if latent_dim > 1 else 1

# the activity order (without a stored evaluation) and the quantiles need the encoded points
result = widgets.needing_codes(path, lambda: cache.traversal_grid(path, base, mode, steps, extent, quantile, shown), key="trav_wait")
if result is not None:
    pair_col, grid_col = st.columns([1, 4], gap="large")
    pair_col.image(result["pair_png"], caption="input | reconstruction", output_format="PNG")
    rows = ", ".join(f"z{j} (KL {kl:.2f})" for j, kl in zip(result["latents"], result["kl"], strict=True))
    grid_col.image(result["grid_png"], caption=f"rows, top to bottom: {rows}", output_format="PNG")
    png_col, gif_col, _ = grid_col.columns([1, 1, 3])
    png_col.download_button("Grid as PNG", result["grid_png"], "traversal.png", "image/png", key="trav_png",
                            icon=":material/download:")
    gif_col.download_button("Animated GIF", result["gif"], "traversal.gif", "image/gif", key="trav_gif",
                            icon=":material/download:")

st.subheader("Reconstructions")
recon_seed = st.number_input("Sample seed", min_value=0, max_value=2**31 - 1, value=0, key="trav_recon_seed")
st.image(cache.reconstructions(path, count=10, seed=int(recon_seed)),
         caption="inputs (top) and their reconstructions from the mean codes (bottom)", output_format="PNG")
