"""App latency with the shipped zoo: the first page, switching models, every page's warm rerun, the traversal grid.

Usage: python bench/app_latency.py [--zoo pretrained] [--switches 6] [--repeats 5] [--browser [--servers 3]]
       [--flows | --flows-only] [--flow-rounds 1] [--train-steps 1000]

Server side (streamlit.testing's AppTest, the script runs a server does; not the browser's drawing):
- first page: app.py's first run (the Overview) in a fresh Python process that has streamlit loaded (as a server
  has), its imports (torch, pandas, plotly, mtc_core) timed apart, as a fresh server's first visitor gets it; then a
  second session in the same process (cold session, warm process);
- model switch: the Mean vs sampled TC page, the sidebar picker set to `--switches` Shapes2D models not seen before:
  the script run after the pick (the model's stored numbers, read from metrics.json; its heatmaps' points come from a
  background task, which the run waits for up to 1 s in all, ui.pages.WAIT_BUDGET_S), and whatever time those points
  still took after it (`codes ready after`: 0 when the run drew the heatmaps);
- Side by side: first render, and switching model B;
- every page's warm rerun (median of `--repeats`).
Goals: first page < 3 s, model switch < 2 s, warm reruns < 1.5 s.

--browser: the same numbers as a user sees them, in Chromium against the server `mtc app` starts (streamlit run
app.py, the app's imports warmed in a thread as it starts: ui/server.py). For each of `--servers` fresh servers: from
the request to the story chart drawn (the request is sent as soon as the server answers its health check, as the
browser `mtc app` opens would be), the same counted from the server's start command, and then in a new tab. On the
last server, for `--switches` Shapes2D models, from the click on the model in the sidebar (the click event, timed in
the page): to its TC table (the stored numbers) drawn, and to its whole Mean vs sampled TC page drawn with nothing
stale and no progress bar left, its heatmaps included (their points are encoded in the background).

--flows (issue 22; --flows-only: these alone), in Chromium against one fresh `mtc app` server
(bench/app_latency_flows.py): Your codes, a 15,000-point codes file of pretrained/shapes2d-beta_tcvae-seed0 (as
`evaluate` draws them) uploaded, from the upload to the file checked, to the first numbers (the TC table, streamed while
the analysis runs) and to the whole page; the Train page, a toy training of `--train-steps` steps: from the click on
Start to its progress in Your trainings, a reload while it runs to the run shown as yours again, and from the run's end
to its finished panel and numbers. `--flow-rounds` of each.

Traversal grid: mtc_core.visualize.traversal.traverse of 10 latents x 10 steps + mtc_core.visualize.figures.image_grid for a toy MLP and an
untrained conv64 model (the zoo's architecture). Goal: < 150 ms. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_latency_flows import report as flows_report  # noqa: E402

FIRST_GOAL_S, SWITCH_GOAL_S, PAGE_GOAL_S, GRID_GOAL_MS = 3.0, 2.0, 1.5, 150
# the Mean vs sampled TC page drawn whole: no script run, no element left from a previous run (stale), no progress bar
# (a background result pending), its three charts there
PAGE_DRAWN = ("() => !document.querySelector('[data-stale=\"true\"], [data-testid=\"stStatusWidget\"], [data-testid=\"stProgress\"]') "
              "&& document.querySelectorAll('.js-plotly-plot').length >= 3")
# from the click on a model in the sidebar to its TC table (stored numbers) drawn: the sidebar names the model, and the
# page's first table belongs to this run (not stale); window.__clicked, window.__table
WATCH_SWITCH = """(label) => { window.__clicked = null; window.__table = null; if (window.__watch) window.__watch.disconnect();
  document.addEventListener('click', () => { window.__clicked = performance.now(); }, {capture: true, once: true});
  window.__watch = new MutationObserver(() => {
    if (window.__table || !window.__clicked) return;
    const named = [...document.querySelectorAll('[data-testid=stSidebar] [data-testid=stCaptionContainer]')].some(e => e.innerText.includes(label));
    const table = document.querySelector('[data-testid=stMain] [data-testid=stDataFrame]');
    const box = table && table.closest('[data-testid=stElementContainer]');
    if (named && box && box.dataset.stale === 'false') window.__table = performance.now(); });
  window.__watch.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true}); }"""
STORY_CHART = "svg.mtc-story rect.bar"  # the Overview's story chart, drawn (a static SVG: no plotly.js on the first screen)

FIRST_PAGE = f"""
import time, sys
sys.path.insert(0, {str(ROOT)!r})
from streamlit.testing.v1 import AppTest  # the server has streamlit loaded before any session
start = time.perf_counter()
import ui.pages, ui.layout, services.run_listing, ui.widgets, ui.train_view, ui.cache, mtc_core.visualize.charts  # what app.py's first run imports
imports = time.perf_counter() - start
start = time.perf_counter()
at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=600)
at.run()
assert not at.exception, [e.value for e in at.exception]
first = time.perf_counter() - start
start = time.perf_counter()
AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=600).run()
print(imports, first, time.perf_counter() - start)
"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_background(timeout: float = 600) -> float:
    from services import background

    start = time.perf_counter()
    while background.pending() and time.perf_counter() - start < timeout:
        time.sleep(0.05)
    return time.perf_counter() - start


def first_page() -> tuple[float, float, float]:
    """(the app's imports in a fresh process, its first run after them, a second session's first run)."""
    out = subprocess.run([sys.executable, "-c", FIRST_PAGE], capture_output=True, text=True, check=True, cwd=ROOT)
    imports, first, second = (float(v) for v in out.stdout.split()[-3:])
    return imports, first, second


def model_switches(count: int) -> list[tuple[str, float, float]]:
    """(model, seconds of the script run after the pick (the stored numbers, and the heatmaps when the model's points
    encode within the run's 1 s wait for background results, ui.pages.WAIT_BUDGET_S), seconds more until its encoded
    points are ready when they did not)."""
    from streamlit.testing.v1 import AppTest

    from services import run_listing, run_tables
    from ui.pages import PAGE_FILES

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.switch_page(PAGE_FILES["Mean vs sampled TC"]).run()
    wait_background()
    current = at.sidebar.selectbox(key="run_path").value
    others = [e for e in run_listing.available_runs() if e.dataset == "shapes2d" and e.path != current and run_tables.read_evaluation(e.path)]
    rows = []
    for entry in others[:count]:
        at.sidebar.selectbox(key="run_path").set_value(entry.path)
        page = timed(at.run)
        assert not at.exception, [e.value for e in at.exception]
        rows.append((entry.label, page, wait_background()))
    return rows


def side_by_side() -> tuple[float, float, float]:
    """(first render, until both models' points are encoded, switching B to a model seen before)."""
    from streamlit.testing.v1 import AppTest

    from ui.pages import PAGE_FILES

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.switch_page(PAGE_FILES["Side by side"])
    first = timed(at.run)
    encoded = wait_background()
    at.run()
    from services import run_listing

    a, b = at.selectbox(key="sbs_a").value, at.selectbox(key="sbs_b").value
    other = next(e.path for e in run_listing.available_runs() if e.path not in (a, b) and e.dataset == "shapes2d")
    at.selectbox(key="sbs_b").set_value(other)
    switch = timed(at.run)
    return first, encoded, switch


def page_latency(repeats: int) -> list[tuple[str, float, float]]:
    from streamlit.testing.v1 import AppTest

    from ui.pages import PAGE_FILES

    rows = []
    for title, page in PAGE_FILES.items():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
        at.switch_page(page)  # the Overview is app.py itself
        cold = timed(at.run)
        wait_background()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        warm = statistics.median(timed(at.run) for _ in range(repeats))
        rows.append((title, cold, warm))
    return rows


def grid_latency(model, repeats: int) -> float:
    import numpy as np

    from mtc_core.visualize import figures, traversal

    latents = np.arange(10)
    values = np.tile(np.linspace(-2, 2, 10), (10, 1))
    base = np.zeros(10)

    def grid():
        figures.image_grid(traversal.traverse(model, base, latents, values), scale=2)

    grid()
    return statistics.median(timed(grid) for _ in range(repeats)) * 1000


def browser_numbers(zoo: Path, servers: int, count: int) -> tuple[list[tuple[float, float, float]], list[tuple[str, float, float]]]:
    """([(fresh server: request to the story chart drawn, from the server's start command to it, the same in a new tab)
    per fresh server], [(model, click on it in the sidebar to its TC table drawn, to its whole Mean vs sampled TC page
    drawn, heatmaps included)])."""
    import re

    from bench.app_server import app_server, chromium, settled
    from services import run_listing, run_tables

    entries = [e for e in run_listing.available_runs() if e.dataset == "shapes2d" and run_tables.read_evaluation(e.path)]
    firsts, switches = [], []
    with chromium() as browser:
        for k in range(servers):
            with tempfile.TemporaryDirectory() as tmp:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})  # the browser is open before `mtc app` starts
                page.set_default_timeout(600_000)
                launched = time.perf_counter()
                with app_server(zoo, Path(tmp) / "runs", Path(tmp) / "server.log") as url:
                    start = time.perf_counter()
                    page.goto(url)
                    page.locator(STORY_CHART).first.wait_for()
                    first, from_launch = time.perf_counter() - start, time.perf_counter() - launched
                    again = browser.new_page(viewport={"width": 1400, "height": 1000})
                    start = time.perf_counter()
                    again.goto(url)
                    again.locator(STORY_CHART).first.wait_for()
                    firsts.append((first, from_launch, time.perf_counter() - start))
                    again.close()
                    if k < servers - 1:
                        page.close()
                        continue
                    page.goto(f"{url}/Mean_vs_sampled_TC")
                    page.wait_for_function(PAGE_DRAWN)  # the first model's page whole (settled alone can see a page waiting)
                    settled(page)
                    for entry in entries[1:1 + count]:
                        combo = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")
                        combo.click()
                        # timed in the page from the click event (playwright's checks before it clicks are not the app's)
                        page.evaluate(WATCH_SWITCH, f"{entry.label} · ")
                        page.get_by_role("option", name=entry.label, exact=True).click()
                        # the sidebar names the new model; then every run has ended with no element left from the previous
                        # one (stale) and no progress bar: the heatmaps of the new model's encoded points are drawn
                        page.get_by_text(re.compile(re.escape(f"{entry.label} · {entry.model}"))).wait_for()
                        # (window.__table is part of the condition: a watcher that never saw the table times out, no number)
                        done = page.wait_for_function(
                            f"() => ({PAGE_DRAWN})() && window.__table && performance.now() - window.__clicked").json_value()
                        table = page.evaluate("() => window.__table - window.__clicked")
                        switches.append((entry.label, table / 1000, done / 1000))
                        settled(page)
    return firsts, switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(ROOT / "pretrained"), help="the model zoo to read (default: the shipped one)")
    parser.add_argument("--switches", type=int, default=6, help="models to switch to on the Mean vs sampled TC page")
    parser.add_argument("--repeats", type=int, default=5, help="warm reruns per page / grids, median reported")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of this process")
    parser.add_argument("--browser", action="store_true", help="also time the first page and model switches in Chromium")
    parser.add_argument("--servers", type=int, default=3, help="fresh servers whose first page Chromium times (--browser)")
    parser.add_argument("--flows", action="store_true", help="also time Your codes (a 15,000-point file) and the Train page in Chromium")
    parser.add_argument("--flows-only", action="store_true", help="only the --flows numbers")
    parser.add_argument("--flow-rounds", type=int, default=1, help="uploads and trainings timed (--flows)")
    parser.add_argument("--train-steps", type=int, default=1000, help="steps of the toy training the Train flow starts (--flows)")
    args = parser.parse_args()
    if args.flows_only:
        return flows_report(Path(args.zoo), args.flow_rounds, args.train_steps)

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MTC_ZOO_DIR"], os.environ["MTC_RUNS_DIR"] = args.zoo, str(Path(tmp) / "runs")
        imports, first, second = first_page()
        switches = model_switches(args.switches)
        sbs = side_by_side()
        pages = page_latency(args.repeats)

    from mtc_core.models import build_model

    toy = build_model("beta_tcvae", {"latent_dim": 10, "hidden": 256, "architecture": "mlp", "image_shape": [1, 32, 32]}).eval()
    conv = build_model("beta_tcvae", {"latent_dim": 10, "architecture": "conv64", "image_shape": [1, 64, 64]}).eval()
    grids = [("toy MLP (32x32, hidden 256)", grid_latency(toy, args.repeats * 4)), ("conv64 (64x64)", grid_latency(conv, args.repeats * 4))]

    def verdict(value: float, goal: float) -> str:
        return "met" if value < goal else "MISSED"

    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.processor() or platform.machine()}, zoo {args.zoo}\n")
    print(f"| first page (Overview) | s | goal < {FIRST_GOAL_S} s |\n|---|---|---|")
    print(f"| fresh process: the app's imports (torch, pandas, plotly, mtc_core) | {imports:.2f} | |")
    print(f"| fresh process: then the first run | {first:.2f} | |")
    print(f"| fresh process, imports included | {imports + first:.2f} | {verdict(imports + first, FIRST_GOAL_S)} |")
    print(f"| second session, same process | {second:.2f} | {verdict(second, FIRST_GOAL_S)} |")
    print(f"\n| model switch on Mean vs sampled TC | page run (s) | codes ready after it (s) | goal < {SWITCH_GOAL_S} s |")
    print("|---|---|---|---|")
    for label, page, codes in switches:
        print(f"| {label} | {page:.2f} | {codes:.2f} | {verdict(page, SWITCH_GOAL_S)} |")
    print(f"\nSide by side: first render {sbs[0]:.2f} s (stored numbers, and what of the two models' encoded points came "
          f"within the run's 1 s wait), the rest of the points {sbs[1]:.2f} s later, switching B {sbs[2]:.2f} s")
    print(f"\n| page | first render, cold session (s) | rerun, warm (s) | goal < {PAGE_GOAL_S} s |\n|---|---|---|---|")
    for title, cold, warm in pages:
        print(f"| {title} | {cold:.2f} | {warm:.3f} | {verdict(warm, PAGE_GOAL_S)} |")
    print(f"\n| traversal grid, 10 latents x 10 steps | ms | goal < {GRID_GOAL_MS} ms |\n|---|---|---|")
    for name, ms in grids:
        print(f"| {name} | {ms:.1f} | {verdict(ms, GRID_GOAL_MS)} |")
    if args.browser:
        sys.stdout.flush()
        firsts, switches = browser_numbers(Path(args.zoo), args.servers, args.switches)
        print("\n| in Chromium, `mtc app`'s server (python -m ui.server run app.py) | s | goal |\n|---|---|---|")
        for k, (first, from_launch, second) in enumerate(firsts, start=1):
            print(f"| fresh server {k}: request to the story chart drawn | {first:.2f} | < {FIRST_GOAL_S} s: {verdict(first, FIRST_GOAL_S)} |")
            print(f"| fresh server {k}: from its start command to the story chart drawn (server start included) | {from_launch:.2f} | |")
            print(f"| fresh server {k}, then a new tab: request to the story chart drawn | {second:.2f} | "
                  f"< {FIRST_GOAL_S} s: {verdict(second, FIRST_GOAL_S)} |")
        print("\n| Mean vs sampled TC in Chromium: click on a model in the sidebar to | its TC table drawn (s) | the whole page, "
              f"heatmaps included (s) | goal < {SWITCH_GOAL_S} s (table) |\n|---|---|---|---|")
        for label, table, page in switches:
            print(f"| {label} | {table:.2f} | {page:.2f} | {verdict(table, SWITCH_GOAL_S)} |")
    if args.flows:
        sys.stdout.flush()
        flows_report(Path(args.zoo), args.flow_rounds, args.train_steps)

if __name__ == "__main__":
    main()
