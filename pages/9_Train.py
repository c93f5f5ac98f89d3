"""Train: a form for any variant, live progress in a background worker; the run joins the model picker when done."""

import streamlit as st

from mtc_core.models import MODELS
from mtc_core.training import defaults
from services import core_share, run_listing, training_queue
from ui import layout, train_view

layout.page("Train")

st.title("Train a model")
st.caption(f"Runs are saved under `{run_listing.runs_dir()}`. Training runs in the background: switch pages freely, "
           "come back here to watch it; any tab or session sees it and can cancel it. The toy dataset shows disentangled "
           "traversals after about a minute on a CPU. "
           + (f"Each training uses {core_share.TRAIN_THREADS} CPU thread(s) (MTC_TRAIN_THREADS)." if core_share.TRAIN_THREADS else
              f"A training uses the CPU cores nothing else needs: all {core_share.CORES} alone, half each with a second, "
              "fewer while a page computes or other programs keep cores busy. Trainings run at a lower priority than the "
              "pages, so the pages stay responsive."))

names = list(MODELS)
model_name = st.selectbox("Model", names, index=names.index(defaults.default("model")), key="train_model")  # the CLI's default
if model_name == "rtc_vae":
    st.caption("RTC-VAE here is our reconstruction of Cheng et al.'s remedy (their exact loss is not available): "
               "beta-TCVAE plus lambda_t times a TC penalty on the batch of mean codes.")

running, queued = training_queue.server_load()
if running >= training_queue.MAX_CONCURRENT:
    st.warning(f"Busy: {running} training(s) running on this server and {queued} queued; a new one waits its turn.")

config = train_view.config_form(model_name)
if config is not None and train_view.start(config) is not None:
    st.rerun()  # draw the fresh form (a second click on the used one starts nothing) and the new job's progress
train_view.interrupted_panel()
train_view.progress_panel()
