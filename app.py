"""MTC Explorer: does a low TC of the sampled codes mean a low TC of the mean codes? (`streamlit run app.py`)

The entry point: page navigation and the sidebar shared by every page (model picker, device badge, trainings).
"""

import streamlit as st

from ui import pages, train_view, widgets

# a drawn icon: a :material/...: one makes the browser fetch the favicon from fonts.gstatic.com (the app works offline)
st.set_page_config(page_title="MTC Explorer", page_icon=widgets.app_icon(), layout="wide")

page = pages.navigation()
widgets.model_picker()
widgets.device_badge()
train_view.sidebar_status(live=page.title != "Train")
with pages.frame():
    page.run()
