"""Your codes: the mean and sampled codes of any VAE (a .npz), explored like a trained model; import a zipped run."""

import streamlit as st

from services import run_listing
from ui import codes, guard, layout

layout.page("Your codes")

st.title("Your codes")
st.markdown(
    "Bring the encodings of your own VAE (disentanglement_lib, disent, disentangling-vae, plain PyTorch: the README "
    "has a few lines for each). A `.npz` with **mean** [N, D] and **logvar** (or **var**, **std**) [N, D]; optional "
    "**sampled** [N, D] as your model drew them, ground-truth **factors** [N, K] (classes or values on a grid), "
    "**factor_names** [K] and **num_train**. Everything that needs no encoder is computed, as "
    "`mtc evaluate-codes FILE` does. Nothing in the file is executed: arrays are read without pickle."
)
codes.message()

kept = codes.kept_sets()
source = st.radio("Codes", ["Upload a file", "A kept code set"] if kept else ["Upload a file"], horizontal=True, key="codes_source")
data, key, upload = None, None, None
if source == "Upload a file":
    upload = st.file_uploader(f".npz codes file (at most {codes.upload_limit_mb()} MB)", type=["npz"], key=codes.UPLOAD,
                              max_upload_size=codes.upload_limit_mb(), on_change=codes.suggest_name,
                              args=(codes.UPLOAD, codes.KEEP_NAME, ".npz"))
    if upload is not None:
        data, key = upload.getvalue(), f"upload:{upload.file_id}"
else:
    path = st.selectbox("Kept code set", kept, format_func=lambda p: p.stem, key="codes_kept")
    data, key = codes.read_kept(path), f"kept:{path}:{path.stat().st_mtime_ns}"

loaded = None
if data is not None:
    try:
        loaded = codes.load(key, data)
    except ValueError as error:
        st.error(f"Not read: {error}")
if loaded is not None:
    if upload is not None:
        with st.expander("Keep this code set under your runs folder", icon=":material/save:"):
            guard.note("Keeping")
            st.text_input("Name", key=codes.KEEP_NAME)
            st.button("Keep", key="codes_keep", on_click=codes.keep_upload, disabled=guard.read_only())
    result = codes.analysed_codes(key, loaded)  # None while it runs: its finished stages are drawn as they come
    if result is not None:
        codes.show(result, codes.training_points(key, loaded), loaded.factor_names, key="codes")
elif data is None:
    st.info("Upload a codes file to explore it.")

st.divider()
st.subheader("Import a run folder")
st.caption(f"A .zip of a run directory of this project (model.safetensors + config.json, optionally metrics.json and "
           f"history.jsonl) joins your runs in `{run_listing.runs_dir()}` and the model picker. It is checked exactly as a run "
           "is loaded; weights are safetensors only, and an existing run is never replaced.")
guard.note("Importing")
archive = st.file_uploader(f"Run archive (.zip, at most {codes.upload_limit_mb()} MB)", type=["zip"], key=codes.ARCHIVE,
                           max_upload_size=codes.upload_limit_mb(), on_change=codes.suggest_name,
                           args=(codes.ARCHIVE, codes.RUN_NAME, ".zip"), disabled=guard.read_only())
st.text_input("Run name", key=codes.RUN_NAME)
st.button("Import run", key="codes_import", disabled=archive is None or guard.read_only(), on_click=codes.import_upload)
