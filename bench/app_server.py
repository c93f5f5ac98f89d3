"""Helpers for the app benchmarks: `streamlit run app.py` on a free loopback port, and Debian's Chromium through
playwright (never `playwright install`). Not a benchmark itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(zoo: Path, runs: Path, log: Path, **env_extra: str):
    """The app's URL while a fresh server process runs (own process group; killed on exit)."""
    port = free_port()
    env = {**os.environ, "MTC_ZOO_DIR": str(zoo), "MTC_RUNS_DIR": str(runs), **env_extra}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ui.server", "run", "app.py", "--server.port", str(port), "--server.address",
                                 "127.0.0.1", "--server.headless", "true"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"streamlit did not start; see {log}") from None
                    time.sleep(0.3)
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def settled(page, timeout_s: float = 300) -> None:
    """Until Streamlit's 'running' indicator has been gone for a moment."""
    for _ in range(2):
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_s * 1000)
        page.wait_for_timeout(300)


def open_train_form(browser, url: str, steps: int):
    """A new tab on the Train page, settled, with its steps field set to `steps` (the form's other defaults kept)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(600_000)
    page.goto(f"{url}/Train")
    page.get_by_role("heading", name="Train a model").wait_for()
    settled(page)
    page.get_by_label("steps", exact=True).fill(str(steps))
    return page
