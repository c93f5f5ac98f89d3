"""MTC Explorer: does a low TC of the sampled codes mean a low TC of the mean codes? (`streamlit run app.py`)

The entry point: page navigation and the sidebar shared by every page (model picker, device badge).
"""

import streamlit as st

from ui import train_view, widgets

st.set_page_config(page_title="MTC Explorer", page_icon=":material/scatter_plot:", layout="wide")

PAGES = [
    st.Page("app_pages/1_Models.py", title="Models", icon=":material/inventory_2:", default=True),
    st.Page("app_pages/2_Dataset.py", title="Dataset", icon=":material/image:"),
    st.Page("app_pages/3_Traversals.py", title="Traversals", icon=":material/view_module:"),
    st.Page("app_pages/4_Mean_vs_sampled_TC.py", title="Mean vs sampled TC", icon=":material/compare:"),
    st.Page("app_pages/5_Theorem.py", title="Theorem", icon=":material/functions:"),
    st.Page("app_pages/6_Factor_disintegration.py", title="Factor disintegration", icon=":material/call_split:"),
    st.Page("app_pages/7_Compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page("app_pages/8_Train.py", title="Train", icon=":material/model_training:"),
]

page = st.navigation(PAGES)
widgets.model_picker()
widgets.device_badge()
train_view.sidebar_status()
page.run()
