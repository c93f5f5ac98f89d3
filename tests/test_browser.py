"""The app in a real browser: `streamlit run app.py` on a free loopback port with the shipped zoo (pretrained/), driven
by Debian's Chromium through playwright. Opens the story screen, puts two models side by side, visits every page,
reloads during a training and cancels it from the new session, and restarts the server under a killed training to
find it interrupted, with Resume.

Screenshots go to a temporary folder; with MTC_REFRESH_SCREENSHOTS=1 they replace the README's, in docs/screenshots/.
Skipped when Chromium or playwright is missing, except under CI=true, where that is a failure."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import support
import torch

from mtc_core import runs
from mtc_core.training.trainer import TrainConfig, train

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "pretrained"
CHROMIUM = support.CHROMIUM
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_S, PAGE_S, TRAIN_S = 90, 180, 180  # upper bounds on every wait

# url path, title, screenshot name, what must render. Each is a deep link, a new session's first request: the page
# must come with the sidebar every page shares (layout.page), model picker included.
PAGES = [
    ("Traversals", "Latent traversals", "traversals", {"image"}),
    ("Models", "Models", "models", {"chart"}),
    ("Dataset", "Dataset", "dataset", {"image"}),
    ("Mean_vs_sampled_TC", "Mean vs sampled total correlation", "mean_vs_sampled", {"chart"}),
    ("Theorem", "Mean TC unbounded, sampled TC bounded", "theorem", {"chart"}),
    ("Factor_disintegration", "Factor disintegration", "disintegration", {"chart"}),
    ("Compare", "Compare models", "compare", {"chart"}),
    ("Curves", "Training curves", "curves", {"chart"}),
]
STORY = "A low TC of the sampled codes does not mean a low TC of the mean codes"


_playwright = support.sync_playwright_or_skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mtc app`'s server (python -m ui.server run app.py: streamlit run with warmed imports) in its own process group
    (so that a kill takes its training processes with it)."""

    def __init__(self, zoo: Path, runs: Path, log: Path):
        self.port, self.log_path = _free_port(), log
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MTC_ZOO_DIR": str(zoo), "MTC_RUNS_DIR": str(runs)}
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "ui.server", "run", "app.py", "--server.port", str(self.port),
                   "--server.address", "127.0.0.1", "--server.headless", "true"]  # the rest from .streamlit/config.toml
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        if not support.wait_until_serving(self.url, self.proc, SERVER_START_S):
            self.stop()
            raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def kill(self) -> None:
        """What a crash or `kill -9` does: no chance to write anything."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture(scope="module")
def sync_playwright():
    return _playwright()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("MTC_REFRESH_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server(sync_playwright, tmp_path_factory):
    """The app on a free port over the shipped zoo, with one tiny run of the user's."""
    root = tmp_path_factory.mktemp("browser")
    runs = root / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(model="beta_tcvae", model_params={"latent_dim": 4, "hidden": 32}, dataset={"name": "toy"}, steps=30,
                          batch_size=16, eval_every=10, eval_size=32, checkpoint_every=0, device="cpu"), runs / "tiny",
              command="pytest test_browser fixture")
    finally:
        torch.set_num_threads(threads)
    app = Server(ZOO, runs, root / "server.log")
    yield {"url": app.url, "runs": runs, "root": root}
    app.stop()


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
    tab.requests = []
    tab.on("request", lambda request: tab.requests.append(request.url))
    yield tab
    context.close()


def settle(page, title: str) -> None:
    """Wait until the page shows its title and Streamlit has finished running the script."""
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=PAGE_S * 1000)
    for _ in range(2):  # a second quiet spell: a rerun may start right after the first one ends
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=PAGE_S * 1000)
        page.wait_for_timeout(1000)


def screenshot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stMainBlockContainer]')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(min(max(height + 40, VIEWPORT["height"]), 8000))})
    page.wait_for_timeout(1500)  # plotly redraws at the new size
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return path


def picked(page) -> str:
    """The sidebar model picker's shown value."""
    return page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model").input_value()


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def assert_offline(page, url: str) -> None:
    """Every request the page made went to the app itself (no usage statistics, no CDN)."""
    outside = [r for r in page.requests if not r.startswith((url, "data:", "blob:", "about:"))]
    assert not outside, outside[:5]


def test_the_story_screen_tells_the_claim(server, page, screenshots):
    page.goto(server["url"])
    settle(page, STORY)
    assert_no_exception(page)
    # the story chart is a static SVG (the first screen loads no plotly.js): a bar per code and family, hover text per bar
    page.locator("svg.mtc-story rect.bar").first.wait_for(state="visible")
    assert page.locator("svg.mtc-story rect.bar[data-series=mean]").count() >= 4
    assert "mean codes mu(x)" in page.locator("svg.mtc-story rect.bar[data-series=mean] title").first.text_content()
    assert page.get_by_role("button", name="Download SVG").count() == 1
    assert page.locator(".js-plotly-plot").count() == 0
    assert page.get_by_text("What the zoo shows").count() == 1
    assert page.get_by_role("link", name="The theorem, interactive").count() == 1
    wide = page.evaluate("() => [...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
                         ".some(e => e.scrollWidth > e.clientWidth + 1)")
    assert not wide, "the story screen scrolls sideways"
    assert_offline(page, server["url"])
    screenshot(page, screenshots, "overview")
    # the same figure in plotly on request, its toolbar saving SVG
    page.get_by_text("Interactive chart (zoom, PNG)").click()
    page.locator(".js-plotly-plot .barlayer .point").first.wait_for(state="visible")
    assert page.locator(".js-plotly-plot .barlayer .point").count() >= 4
    assert page.locator(".modebar-btn[data-title='Download plot' i], .modebar-btn[data-title='Download plot as a SVG' i]").count() >= 1
    assert_offline(page, server["url"])
    page.get_by_role("link", name="Two models side by side").click()
    settle(page, "Two models side by side")


def test_two_models_side_by_side(server, page, screenshots):
    page.goto(f"{server['url']}/Side_by_side")
    settle(page, "Two models side by side")
    assert "beta-TCVAE" in page.get_by_label("Model A").input_value()
    assert "RTC-VAE" in page.get_by_label("Model B").input_value()
    # both models' mean and sampled correlation heatmaps (4 panels), drawn once their points are encoded
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm image').length >= 4",
                           timeout=PAGE_S * 1000)
    settle(page, "Two models side by side")
    assert_no_exception(page)
    assert page.locator("[data-testid='stImage'] img").count() >= 2  # both traversals
    screenshot(page, screenshots, "side_by_side")


@pytest.mark.parametrize(("path", "title", "name", "renders"), PAGES, ids=[p[2] for p in PAGES])
def test_page_renders_in_chromium(server, page, screenshots, path, title, name, renders):
    page.goto(f"{server['url']}/{path}")
    settle(page, title)
    assert_no_exception(page)
    assert picked(page).startswith("beta-TCVAE")  # the default model, in the sidebar every page shares
    if "chart" in renders:
        page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible")
        assert page.locator(".modebar-btn[data-title^='Download plot' i]").count() >= 1
    if "image" in renders:
        image = page.locator("[data-testid='stImage'] img").first
        image.wait_for(state="visible")
        assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", image.element_handle())
    assert screenshot(page, screenshots, name).stat().st_size > 10_000


def start_training(page, steps: int) -> None:
    page.get_by_label("steps", exact=True).fill(str(steps))
    page.get_by_label("latent_dim", exact=True).fill("6")
    page.get_by_label("hidden", exact=True).fill("128")
    page.get_by_label("steps", exact=True).press("Enter")  # Enter in a field does not start a run
    page.wait_for_timeout(1500)
    assert page.get_by_role("button", name=re.compile("Cancel")).count() == 0
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_role("button", name=re.compile("Cancel")).wait_for(timeout=PAGE_S * 1000)


def test_a_reload_keeps_control_of_a_training(server, page, screenshots):
    before = {p.name for p in server["runs"].iterdir()}
    page.goto(f"{server['url']}/Train")
    settle(page, "Train a model")
    start_training(page, 1_000_000)
    page.get_by_text(re.compile(r"step [1-9]\d* / 1000000")).first.wait_for(timeout=TRAIN_S * 1000)
    new = sorted({p.name for p in server["runs"].iterdir()} - before)
    assert len(new) == 1, new  # one submit, one run

    page.reload()  # a new session with the same address (?owner=...): the training is still this tab's
    settle(page, "Train a model")
    page.get_by_text("started by you").wait_for(timeout=PAGE_S * 1000)
    screenshot(page, screenshots, "train")
    assert page.get_by_test_id("stSidebar").get_by_text(re.compile(r"Training beta_tcvae on toy: step")).count() == 1
    page.get_by_role("button", name=re.compile("Cancel")).click()
    page.get_by_text(re.compile(r"Saved to .*\(cancelled")).wait_for(timeout=TRAIN_S * 1000)
    assert runs.read_json(server["runs"] / new[0] / runs.CONFIG)["status"] == "cancelled"
    assert_no_exception(page)


def test_a_short_training_stays_yours_ends_and_opens(server, page, screenshots):
    """Start a short toy training, reload: it is still yours (Cancel at the top of the page); when it ends the picker
    moves to it, its numbers show, and one click opens it on the Models page."""
    before = {p.name for p in server["runs"].iterdir()}
    page.goto(f"{server['url']}/Train")
    settle(page, "Train a model")
    page.get_by_label("steps", exact=True).fill("1500")
    page.get_by_label("latent_dim", exact=True).fill("4")
    page.get_by_label("hidden", exact=True).fill("32")
    page.get_by_role("button", name=re.compile("Start training")).click()
    cancel = page.get_by_role("button", name=re.compile("Cancel"))
    cancel.wait_for(timeout=PAGE_S * 1000)
    assert cancel.is_visible() and cancel.bounding_box()["y"] < VIEWPORT["height"]  # in view after Start, not below the form
    assert "owner=" in page.url
    (name,) = sorted({p.name for p in server["runs"].iterdir()} - before)
    assert re.fullmatch(r"beta_tcvae-beta=6-toy-seed=0-\d{6}", name), name

    page.reload()
    settle(page, "Train a model")
    page.get_by_text("started by you").first.wait_for(timeout=PAGE_S * 1000)
    cancel = page.get_by_role("button", name=re.compile("Cancel"))
    assert cancel.is_visible() and cancel.is_enabled()  # yours to cancel, at the top of the page
    page.get_by_text(re.compile(r"Saved to .*\(complete")).wait_for(timeout=TRAIN_S * 1000)
    page.get_by_text("TC sampled codes (Gaussian, nats)").wait_for(timeout=PAGE_S * 1000)  # its TC report, computed here
    assert name in picked(page)  # the picker moved to it
    assert_no_exception(page)
    page.get_by_role("button", name=re.compile("Open in Models")).click()
    settle(page, "Models")
    page.get_by_role("heading", name=f"Picked: {name}").wait_for()
    assert name in picked(page)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible")
    assert_no_exception(page)


def test_a_killed_server_leaves_an_interrupted_run_to_resume(sync_playwright, browser, tmp_path):
    runs_root = tmp_path / "runs"
    first = Server(ZOO, runs_root, tmp_path / "first.log")
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_S * 1000)
    page = context.new_page()
    try:
        page.goto(f"{first.url}/Train")
        settle(page, "Train a model")
        start_training(page, 1_000_000)
        page.get_by_text(re.compile(r"step [1-9]\d* / 1000000")).first.wait_for(timeout=TRAIN_S * 1000)
    finally:
        first.kill()
    (run,) = list(runs_root.iterdir())
    assert runs.read_json(run / runs.CONFIG)["status"] == "running"

    second = Server(ZOO, runs_root, tmp_path / "second.log")
    try:
        page.goto(f"{second.url}/Train")
        settle(page, "Train a model")
        page.get_by_role("heading", name="Interrupted").wait_for()
        page.get_by_text(re.compile(re.escape(run.name) + r".*interrupted")).first.wait_for()
        page.get_by_role("button", name=re.compile("Resume")).click()
        page.get_by_text(re.compile(r"beta_tcvae on toy \(resumed\)")).first.wait_for()
        page.get_by_role("button", name=re.compile("Cancel")).click()
        page.get_by_text(re.compile(r"Saved to .*\(cancelled")).wait_for(timeout=TRAIN_S * 1000)
        assert runs.read_json(run / runs.CONFIG)["status"] == "cancelled"
        assert json.loads((run / runs.CONFIG).read_text())["step"] > 0
    finally:
        context.close()
        second.stop()
