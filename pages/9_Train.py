"""Train: your trainings at the top (live progress, Cancel, then the finished run's numbers, curves and Open), the form
for any variant below; the run joins the model picker when done."""

import streamlit as st

from mtc_core.models import MODELS
from mtc_core.training import defaults
from services import core_share, run_listing, training_queue
from ui import layout, train_view

layout.page("Train")

st.title("Train a model")
st.caption(f"Runs are saved under `{run_listing.runs_dir()}`, named by model, regularisation strength, dataset and seed. "
           "Training runs in the background: switch pages or reload freely, your trainings stay yours here; any session "
           "sees every training of this server. The toy dataset shows disentangled traversals after about a minute on a CPU. "
           + (f"Each training uses {core_share.TRAIN_THREADS} CPU thread(s) (MTC_TRAIN_THREADS)." if core_share.TRAIN_THREADS else
              f"A training uses the CPU cores nothing else needs: all {core_share.CORES} alone, half each with a second, "
              "fewer while a page computes or other programs keep cores busy. Trainings run at a lower priority than the "
              "pages, so the pages stay responsive."))

running_mine = train_view.your_panel()  # where the eye is after Start: progress and Cancel first, the form below

# collapsed while one of yours runs, so that its progress stays in view; another label is another expander, which
# Streamlit draws in its new initial state
with st.expander("New training" if not running_mine else "New training (yours is running above; open to start another)",
                 expanded=not running_mine, icon=":material/add:"):
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
    st.rerun()  # draw the fresh form (a second click on the used one starts nothing) and the new job's progress at the top
train_view.interrupted_panel()
train_view.others_panel()
