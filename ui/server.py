"""`mtc app`'s server: `streamlit run app.py` in this process, with the app's imports warmed while it starts.

Streamlit runs app.py in the server's process only when the first browser session connects, so that session used to
pay for importing torch, plotly, pandas and the app's modules (~1.4 s of a fresh server's first page on a 2-core
machine, bench/app_latency.py). Here a thread imports them while the server starts, and every page later finds them in
`sys.modules`. Nothing else changes: the arguments are streamlit's (`python -m ui.server run app.py --server.port
8502`), and a session that arrives before the warm-up ends waits on Python's import lock as it would have waited
for the imports anyway.

Served on the network (services/access.py), it prints, below Streamlit's own addresses, the one to open: with the
token (http://HOST:PORT/?token=..., the port the server got), or why the app is read-only.
"""

from __future__ import annotations

import importlib
import socket
import sys
import threading

from services import access

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


def announcement(address: str | None, port: int) -> list[str]:
    """What the server prints once it listens: nothing on the loopback; on a network, the address with the token (the
    changing actions need it), or why the app is read-only."""
    if not access.exposed(address):
        return []
    token = access.server_token()
    if token is None:
        return [f"  MTC Explorer: {access.NO_SERVER_TOKEN}"]
    url = access.token_url(address or "", port, socket.gethostname(), token)
    return ["  MTC Explorer is served on the network. Deleting runs, training, keeping codes and importing runs need",
            "  this address (its token); without it the app is read-only:", f"    {url}", ""]


def _announce_after_streamlits_urls() -> None:
    """Print `announcement` right after Streamlit prints its addresses (when the port is known), or now when this
    Streamlit has no such step."""
    from streamlit import config
    from streamlit.web import bootstrap

    def lines() -> None:
        for line in announcement(config.get_option("server.address"), config.get_option("server.port")):
            print(line, flush=True)

    print_url = getattr(bootstrap, "_print_url", None)
    if print_url is None:
        lines()
        return

    def print_url_then_token(*args, **kwargs):
        print_url(*args, **kwargs)
        lines()

    bootstrap._print_url = print_url_then_token


def main(argv: list[str] | None = None) -> None:
    from streamlit.web import cli

    _announce_after_streamlits_urls()
    threading.Thread(target=warm, name="mtc-warm-imports", daemon=True).start()
    sys.argv = ["streamlit", *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
