"""Helpers the app and browser tests share (a plain module: the test files import it, pytest collects nothing here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def sync_playwright_or_skip():
    """playwright's sync API, or skip (fail under CI=true) when it or Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = "playwright is not installed" if sync_playwright is None else None
    if missing is None and not CHROMIUM.is_file():
        missing = f"Chromium is not at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests need a browser under CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


def settle(at, timeout: float):
    """Rerun an AppTest until no background computation is pending: what the pages' progress fragments do in a
    browser. A run that started with every result there and asked for no more is the settled one (a computation it
    started and that ended before the run did was not drawn: the run showed its progress)."""
    from services import background

    deadline = time.monotonic() + timeout
    while True:
        busy, started = bool(background.pending()), background.submitted()
        at.run()
        if not busy and background.submitted() == started and not background.pending():
            break
        assert time.monotonic() < deadline, f"background computations still pending: {[t.label for t in background.pending()]}"
        time.sleep(0.2)
    assert not at.exception, [e.value for e in at.exception]
    return at


def end_trainings(timeout: float) -> None:
    """Cancel the server's trainings and wait for them to end (a daemon thread still training when Python exits
    aborts it): each app test's trainings end with it."""
    from services import training_queue

    for job in training_queue.jobs():
        job.cancel.set()
    deadline = time.monotonic() + timeout
    while any(not job.done for job in training_queue.jobs()) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_until_serving(url: str, proc, seconds: float) -> bool:
    """Poll the Streamlit server at `url` until its health endpoint answers 200 (True), or until its process `proc`
    has exited or `seconds` have passed (False)."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.3)


def run_dirs(tmp_path: Path, monkeypatch, run: Path) -> dict[str, Path]:
    """MTC_RUNS_DIR holding a copy of `run` (as "tiny"), MTC_ZOO_DIR an empty folder: the app's folders for a test."""
    import shutil

    dirs = {"runs": tmp_path / "runs", "zoo": tmp_path / "zoo"}
    shutil.copytree(run, dirs["runs"] / "tiny")
    dirs["zoo"].mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(dirs["runs"]))
    monkeypatch.setenv("MTC_ZOO_DIR", str(dirs["zoo"]))
    return dirs
