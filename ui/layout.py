"""What every page shares, drawn by the one call each page starts with, `page(title)`: the page config, the sidebar
(the pages of ui.pages.PAGES, the model picker, the device badge, the server's trainings), the session's token on a
server served on the network (ui.guard) and the run's wait budget.
Streamlit runs a page's script alone (ui.pages explains), so nothing else draws them."""

from __future__ import annotations

import streamlit as st

from ui import guard, pages, train_view, widgets


def page(title: str) -> None:
    """First call of every page (app.py is the Overview): `title` is the page's entry in ui.pages.PAGES."""
    if title not in pages.PAGES:
        raise ValueError(f"{title!r} is not a page of ui.pages.PAGES")
    # a drawn icon: a :material/...: one makes the browser fetch the favicon from fonts.gstatic.com (the app works offline)
    st.set_page_config(page_title="MTC Explorer", page_icon=widgets.app_icon(), layout="wide")
    guard.remember_token()
    navigation()
    widgets.model_picker()
    widgets.device_badge()
    guard.sidebar_badge()
    train_view.sidebar_status(live=title != "Train")
    pages.start_wait_budget()


def navigation() -> None:
    """The sidebar's list of pages, in PAGES' order with their titles and icons (the current one highlighted);
    Streamlit's own list is hidden (.streamlit/config.toml)."""
    with st.sidebar:
        for title, (script, icon) in pages.PAGES.items():
            st.page_link(script, label=title, icon=icon)
        st.divider()
