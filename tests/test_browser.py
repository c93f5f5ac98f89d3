"""The app in a real browser: `streamlit run app.py` on a free loopback port, driven by Debian's Chromium
through playwright. Visits every page, checks that charts and images really render, trains a model from
the Train page to completion, and saves full-page screenshots into docs/screenshots/.

Skipped when Chromium or playwright is missing, except under CI=true, where that is a failure."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from mtc_core.train import TrainConfig, train

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_S, PAGE_S, TRAIN_S = 90, 120, 180  # upper bounds on every wait

# url path, title, screenshot name, what must render. The fresh server's first request is a deep link
# (/Traversals): it must run through app.py, sidebar model picker included.
PAGES = [
    ("Traversals", "Latent traversals", "traversals", {"image"}),
    ("", "Models", "models", {"chart"}),
    ("Dataset", "Dataset", "dataset", {"image"}),
    ("Mean_vs_sampled_TC", "Mean vs sampled total correlation", "mean_vs_sampled", {"chart"}),
    ("Theorem", "Mean TC unbounded, sampled TC bounded", "theorem", {"chart"}),
    ("Factor_disintegration", "Factor disintegration", "disintegration", {"chart"}),
    ("Compare", "Compare models", "compare", {"chart"}),
]


def _playwright():
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_run(path: Path, **overrides) -> None:
    params = {"model": "beta_tcvae", "model_params": {"latent_dim": 6, "hidden": 128}, "dataset": {"name": "toy"}, "steps": 2000,
              "batch_size": 64, "lr": 2e-3, "eval_every": 50, "eval_size": 256, "checkpoint_every": 0, "device": "cpu"}
    train(TrainConfig(**{**params, **overrides}), path, command="pytest test_browser fixture")


@pytest.fixture(scope="module")
def sync_playwright():
    return _playwright()


@pytest.fixture(scope="module")
def server(sync_playwright, tmp_path_factory):
    """The app on a free port: a zoo with one toy beta-TCVAE (the screenshots' model) and a tiny run of the user's."""
    root = tmp_path_factory.mktemp("browser")
    zoo, runs = root / "zoo", root / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_run(zoo / "beta_tcvae_toy")
        _train_run(runs / "tiny", model_params={"latent_dim": 4, "hidden": 32}, steps=30, batch_size=16, eval_every=10, eval_size=32)
    finally:
        torch.set_num_threads(threads)
    (zoo / "index.json").write_text(json.dumps({"format_version": 1, "runs": [{"path": "beta_tcvae_toy", "label": "beta-TCVAE, toy, 6 latents"}]}))

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MTC_ZOO_DIR": str(zoo), "MTC_RUNS_DIR": str(runs)}
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed in the finaliser
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
               "--server.runOnSave", "false"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "runs": runs, "zoo": zoo}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser(sync_playwright):
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_S * 1000)
    tab = context.new_page()
    yield tab
    context.close()


def settle(page, title: str) -> None:
    """Wait until the page shows its title and Streamlit has finished running the script."""
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=PAGE_S * 1000)
    for _ in range(2):  # a second quiet spell: a rerun may start right after the first one ends
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=PAGE_S * 1000)
        page.wait_for_timeout(1000)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stMainBlockContainer]')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(min(max(height + 40, VIEWPORT["height"]), 8000))})
    page.wait_for_timeout(1500)  # plotly redraws at the new size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return path


def picked(page) -> str:
    """The sidebar model picker's shown value."""
    return page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model").input_value()


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


@pytest.mark.parametrize(("path", "title", "name", "renders"), PAGES, ids=[p[2] for p in PAGES])
def test_page_renders_in_chromium(server, page, path, title, name, renders):
    page.goto(f"{server['url']}/{path}")
    settle(page, title)
    assert_no_exception(page)
    assert picked(page) == "zoo · beta-TCVAE, toy, 6 latents"
    if "chart" in renders:
        charts = page.locator(".js-plotly-plot .main-svg")
        charts.first.wait_for(state="visible")
        assert page.locator(".modebar-btn[data-title='Download plot as a PNG' i]").count() >= 1
    if "image" in renders:
        image = page.locator("[data-testid='stImage'] img").first
        image.wait_for(state="visible")
        assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", image.element_handle())
    assert screenshot(page, name).stat().st_size > 10_000


def test_training_runs_to_completion_from_the_train_page(server, page):
    before = {p.name for p in server["runs"].iterdir()}
    page.goto(f"{server['url']}/Train")
    settle(page, "Train a model")
    page.get_by_label("steps", exact=True).fill("300")
    page.get_by_label("latent_dim", exact=True).fill("6")
    page.get_by_label("hidden", exact=True).fill("128")
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_role("button", name=re.compile("Cancel")).wait_for(timeout=PAGE_S * 1000)
    page.get_by_text(re.compile(r"Saved to")).wait_for(timeout=TRAIN_S * 1000)
    settle(page, "Train a model")
    assert_no_exception(page)
    new = sorted({p.name for p in server["runs"].iterdir()} - before)
    assert len(new) == 1 and new[0].endswith("beta_tcvae-toy")
    assert picked(page) == f"run · {new[0]}"  # picked at once
    assert page.locator(".js-plotly-plot").count() >= 1  # its loss and TC curves
    screenshot(page, "train")
    page.get_by_role("link", name="Traversals").click()
    settle(page, "Latent traversals")
    assert_no_exception(page)
    page.locator("[data-testid='stImage'] img").first.wait_for(state="visible")
