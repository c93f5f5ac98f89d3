"""The app's pages, in navigation order: one list that the sidebar's navigation, the tests and the latency bench read;
and the wait budget of one page run.

The app is a multipage app as Streamlit means a `pages/` folder: app.py is the entry page (the Overview, at /) and
every file in pages/ is a page of its own, at the URL its file name gives (/Traversals, /Mean_vs_sampled_TC). Streamlit
runs only the script of the page asked for, on every run, a deep link and a reload on a fresh server included; so each
page's first call is `layout.page(title)` (ui/layout.py), which draws what every page shares: the page config, the
sidebar, and this run's wait budget (`wait_left`). Streamlit's own page list would title the entry page "app", so
.streamlit/config.toml hides it (`client.showSidebarNavigation = false`) and the sidebar lists PAGES with st.page_link.
"""

from __future__ import annotations

import threading
import time

from streamlit.runtime.scriptrunner import get_script_run_ctx

PAGES = {  # title -> (script, icon); the scripts' paths are relative to app.py's folder
    "Overview": ("app.py", ":material/auto_stories:"),
    "Models": ("pages/1_Models.py", ":material/inventory_2:"),
    "Side by side": ("pages/2_Side_by_side.py", ":material/splitscreen_vertical_add:"),
    "Dataset": ("pages/3_Dataset.py", ":material/image:"),
    "Traversals": ("pages/4_Traversals.py", ":material/view_module:"),
    "Mean vs sampled TC": ("pages/5_Mean_vs_sampled_TC.py", ":material/compare:"),
    "Theorem": ("pages/6_Theorem.py", ":material/functions:"),
    "Factor disintegration": ("pages/7_Factor_disintegration.py", ":material/call_split:"),
    "Compare": ("pages/8_Compare.py", ":material/leaderboard:"),
    "Train": ("pages/9_Train.py", ":material/model_training:"),
    "Training curves": ("pages/11_Curves.py", ":material/show_chart:"),
    "Your codes": ("pages/10_Your_codes.py", ":material/upload_file:"),
}
PAGE_FILES = {title: script for title, (script, _) in PAGES.items()}

WAIT_BUDGET_S = 1.0  # how long one run of a page waits in all for background results before it draws their progress
_run = threading.local()  # the running page's context and deadline, in its session's script thread


def start_wait_budget() -> None:
    """A page run begins (`layout.page`): its waits for background results share WAIT_BUDGET_S from now on."""
    _run.ctx, _run.deadline = get_script_run_ctx(), time.monotonic() + WAIT_BUDGET_S


def wait_left(default: float) -> float:
    """Seconds this page run may still wait for background results: what is left of WAIT_BUDGET_S, so that a page that
    waits for several results shows the quick ones at once (one drawing, no progress bar) and, when they are slow, its
    progress after at most the budget; `default` outside a page run (a fragment's own rerun, a script that did not
    start with `layout.page`)."""
    ctx = get_script_run_ctx()
    if ctx is None or ctx is not getattr(_run, "ctx", None) or ctx.fragment_ids_this_run:
        return default
    return max(0.0, _run.deadline - time.monotonic())
