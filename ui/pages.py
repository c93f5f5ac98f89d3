"""The app's pages, in navigation order: one list that app.py, the tests and the latency bench read.

Every page runs inside app.py (its sidebar, its model picker). Streamlit has one trap here: until the first
`st.navigation` call in a server process, a `pages/` folder next to app.py switches on the legacy multipage mode,
which runs a requested page's file *alone*. That is the first request a fresh server gets (a deep link such as
/Traversals, or a reload after a restart), and every run under streamlit.testing's AppTest, which starts each run
afresh. So app.py runs each page inside `frame()`, and each page starts with `through_app()`: run alone, it runs
app.py in its place (whose `st.navigation` call ends the legacy mode for the whole server and runs this page inside
the app), then stops. Both happen in the same script run, so a button click the run carries is not lost. The URLs stay
the legacy ones (from the file names), so app.py's navigation finds the page that was asked for.
"""

from __future__ import annotations

import runpy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

PAGES = {  # title -> (script, icon)
    "Overview": ("pages/0_Overview.py", ":material/auto_stories:"),
    "Models": ("pages/1_Models.py", ":material/inventory_2:"),
    "Side by side": ("pages/2_Side_by_side.py", ":material/splitscreen_vertical_add:"),
    "Dataset": ("pages/3_Dataset.py", ":material/image:"),
    "Traversals": ("pages/4_Traversals.py", ":material/view_module:"),
    "Mean vs sampled TC": ("pages/5_Mean_vs_sampled_TC.py", ":material/compare:"),
    "Theorem": ("pages/6_Theorem.py", ":material/functions:"),
    "Factor disintegration": ("pages/7_Factor_disintegration.py", ":material/call_split:"),
    "Compare": ("pages/8_Compare.py", ":material/leaderboard:"),
    "Train": ("pages/9_Train.py", ":material/model_training:"),
    "Your codes": ("pages/10_Your_codes.py", ":material/upload_file:"),
}
PAGE_FILES = {title: script for title, (script, _) in PAGES.items()}

APP = Path(__file__).resolve().parent.parent / "app.py"
_inside = threading.local()  # set while app.py runs a page, in that session's script thread


def navigation(position: str = "sidebar") -> st.Page:
    """st.navigation over PAGES (the first is the default page); returns the page to run."""
    return st.navigation([st.Page(script, title=title, icon=icon, default=i == 0)
                          for i, (title, (script, icon)) in enumerate(PAGES.items())], position=position)


WAIT_BUDGET_S = 1.0  # how long one run of a page waits in all for background results before it draws their progress


@contextmanager
def frame() -> Iterator[None]:
    """app.py runs the page inside this: the page's `through_app()` then knows it has the app's sidebar, and the page's
    waits for background results share one budget (`wait_left`)."""
    _inside.active, _inside.deadline = True, time.monotonic() + WAIT_BUDGET_S
    try:
        yield
    finally:
        _inside.active = False


def wait_left(default: float) -> float:
    """Seconds this page run may still wait for background results: what is left of WAIT_BUDGET_S, so that a page that
    waits for several results shows the quick ones at once (one drawing, no progress bar) and, when they are slow, its
    progress after at most the budget; `default` outside app.py's frame."""
    if not getattr(_inside, "active", False):
        return default
    return max(0.0, _inside.deadline - time.monotonic())


def through_app() -> None:
    """First call of every page: run alone (legacy pages/ mode, see the module docstring), run app.py instead, which
    draws the sidebar and runs this page inside `frame()`, then stop."""
    if not getattr(_inside, "active", False):
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()
