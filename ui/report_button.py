"""The Models page's "Download report (HTML)": the picked run's analysis as one self-contained file that opens offline,
the same file `mtc report RUN` writes (`mtc_core.evaluation.run_report`). It is built when the button is clicked (on
Streamlit's download thread, ~3 s with the traversal), not on every run of the page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mtc_core import runs
from mtc_core.evaluation import run_report
from mtc_core.visualize import report

LABEL = "Download report (HTML)"


def report_bytes(run_dir: str | Path) -> bytes:
    """The report's bytes; a run that cannot be reported gets a one-page report saying why (the download still works)."""
    try:
        return run_report.run_report_html(run_dir).encode("utf-8")
    except (ValueError, OSError) as error:
        name = Path(run_dir).name
        body = report.paragraph(f"No report of {name}: {runs.error_text(error)}", "note")
        return report.document(f"MTC Explorer report: {name}", [report.Section("Problem", body, "problem")]).encode("utf-8")


def file_name(run_dir: str | Path) -> str:
    return f"{Path(run_dir).name}.report.html"


def report_download_button(run_dir: str | Path) -> None:
    """The download button of `run_dir`'s report, and what it holds."""
    path = Path(run_dir)
    st.download_button(LABEL, data=lambda: report_bytes(path), file_name=file_name(path), mime="text/html",
                       key="models_report", icon=":material/description:", on_click="ignore",
                       help="One HTML file: the run's config, its TC report with 95% intervals, activity, metrics, training "
                            "curves and a traversal. It opens offline and loads nothing; `mtc report RUN` writes the same.")
