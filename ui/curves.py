"""A run's result and its curves, as the Train, Models and Training curves pages draw them: the headline numbers from
its TC report (the estimator and format of every page: `tc_report.describe`) and its stored evaluation's
reconstruction, its training curves with the report's final values marked, and a button that opens it on the Models
page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mtc_core import runs
from mtc_core.evaluation import stored, tc_report
from mtc_core.visualize import curves
from services import run_curves, run_tables
from ui import cache, guard, pages, widgets

NO_SAMPLED_NOTE = ("This history records no TC of the sampled codes by the estimator of the mean codes' curve: it predates "
                   "that record (its \"tc_sampled\" is the minibatch MSS, a training signal biased at the batch size and "
                   "negative in most records, which no page shows as a TC). The diamonds are the final TCs of both codes "
                   "from the run's TC report.")


def open_button(path: str | Path, key: str) -> None:
    """One click: the run picked in the sidebar and the Models page opened on it."""
    if st.button("Open in Models", key=key, icon=":material/open_in_new:", help="Pick this run and show it on the Models page"):
        st.session_state[widgets.PENDING_KEY] = str(Path(path).resolve())
        st.switch_page(pages.PAGE_FILES["Models"])


def headline(path: str | Path, key: str) -> dict | None:
    """The run's final TCs of the mean and the sampled codes (Gaussian, from its TC report: stored, else computed in
    the background, whose progress shows meanwhile) and its reconstruction (its stored evaluation's, the number every
    page shows; the last training record's apart, labelled). Returns the TC report once there, else None."""
    result = widgets.wait(cache.tc_report(str(path)), key=f"{key}_tc")
    if result is None:
        return None
    tc, source = result
    recon, last_recon = run_curves.recon(path)
    columns = st.columns(3)
    columns[0].metric("TC mean codes (Gaussian, nats)", tc_report.describe(tc, "mean", "gaussian"))
    columns[1].metric("TC sampled codes (Gaussian, nats)", tc_report.describe(tc, "sampled", "gaussian"))
    columns[2].metric("recon (nats per image)", f"{recon:.2f}" if recon is not None else "n/a",
                      help="The stored evaluation's reconstruction of held-out images from their mean codes, as every page "
                           "shows it; n/a until the run is evaluated (`python -m mtc_core evaluate RUN`).")
    if recon is None:
        _store_button(path, key)
    st.caption(f"TCs with 95% intervals; source: {source}. kNN: mean codes {tc_report.describe(tc, 'mean', 'knn')}, sampled codes "
               f"{tc_report.describe(tc, 'sampled', 'knn')}."
               + (f" recon (last training batch): {last_recon:.2f}, the training record's, not comparable with the above."
                  if last_recon is not None else ""))
    return tc


def _store_button(path: str | Path, key: str) -> None:
    """Evaluate the run as `python -m mtc_core evaluate RUN` does and store it in its metrics.json, in the background;
    its progress meanwhile. Then every page reads the stored numbers (the reconstruction above included)."""
    task = cache.store_evaluation(str(path))
    if task is None:
        if st.button("Evaluate and store", key=f"{key}_store", icon=":material/save:", disabled=guard.read_only(),
                     help=f"Runs the full evaluation ({stored.NUM_TRAIN:,} + {stored.NUM_TEST:,} points, seed {stored.SEED}, a "
                          "minute or more on a CPU) and writes "
                          "it to the run's metrics.json, as `python -m mtc_core evaluate RUN` does; then every page shows "
                          "the stored numbers."):
            task = cache.store_evaluation(str(path), start=True)
        else:
            return
    if widgets.wait(task, key=f"{key}_storing") is not None:
        if run_tables.read_evaluation(path) is None:
            st.error(f"The evaluation ran but {Path(path) / runs.METRICS} does not read back as one.")
        else:
            st.rerun()  # every number on the page from the stored evaluation now


def final_markers(tc: dict | None, n_points: int | None = None) -> dict[str, tuple[float, str]] | None:
    """code -> (value, label) of the report's Gaussian TCs, for `curves.run_figure`'s diamonds at the last step."""
    if tc is None:
        return None
    n = n_points or (tc.get("settings") or {}).get("n")
    label = f"TC report, Gaussian, {n:,} points" if isinstance(n, int) else "TC report, Gaussian"
    out = {code: (v, label) for code in ("mean", "sampled") if (v := tc_report.value(tc, code, "gaussian")) is not None}
    return out or None


def training_curves(path: str | Path, key: str, tc: dict | None = None, history: list[dict] | None = None) -> None:
    """The run's training curves (`curves.run_figure`), the report's final TCs marked; a note when the history holds
    no sampled-code TC."""
    if history is None:
        try:
            history = runs.read_history(path)
        except (ValueError, OSError) as error:
            st.warning(f"The training history cannot be read: {error}")
            return
    if not history:
        st.caption("No training records yet.")
        return
    widgets.plotly_chart(curves.run_figure(history, final_markers(tc)), key=key)
    if not curves.has_sampled_tc(history):
        st.caption(NO_SAMPLED_NOTE)
