"""`mtc app`'s server: `streamlit run app.py` in this process, with the app's imports warmed while it starts.

Streamlit runs app.py in the server's process only when the first browser session connects, so that session used to
pay for importing torch, plotly, pandas and the app's modules (~1.4 s of a fresh server's first page on a 2-core
machine, bench/app_latency.py). Here a thread imports them while the server starts, and every page later finds them in
`sys.modules`. Nothing else changes: the arguments are streamlit's (`python -m ui.server run app.py --server.port
8502`), and a session that arrives before the warm-up ends waits on Python's import lock as it would have waited
for the imports anyway.
"""

from __future__ import annotations

import importlib
import sys
import threading

# what the first page's script run imports (app.py, the Overview, and what its modules import at top level)
WARM = ("torch", "numpy", "pandas", "plotly.graph_objects", "mtc_core.visualize.figures", "mtc_core.estimators", "ui.widgets",
        "ui.cache", "services.run_listing", "mtc_core.visualize.charts", "mtc_core.visualize.svg_charts", "ui.train_view", "ui.pages",
        "ui.layout")


def warm(modules: tuple[str, ...] = WARM) -> list[str]:
    """Import `modules`; returns those that failed (the page that needs one then shows the error itself)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up must never stop the server
            failed.append(name)
    return failed


def main(argv: list[str] | None = None) -> None:
    from streamlit.web import cli

    threading.Thread(target=warm, name="mtc-warm-imports", daemon=True).start()
    sys.argv = ["streamlit", *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
