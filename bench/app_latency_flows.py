"""Issue 22's flows in Chromium, for bench/app_latency.py --flows (not a benchmark by itself).

Your codes: the codes file `evaluate` would write for a shipped Shapes2D model (its encodings of 10,000 + 5,000
points: mtc_core.evaluation.scoring.encoded_points, codes_file.codes_from_points), uploaded on the Your codes page;
from the upload (the file input's change event, timed in the page) to the file checked (the Keep expander shown), to
the first numbers (the TC table's first value) and to the whole page (no progress bar, nothing stale, the metrics
table with its FactorVAE score row, the page's four charts).

Train: a toy training of `steps` steps with the page's other defaults; from the click on Start training (timed in the
page) to its progress in the "Your trainings" panel, and to a step past 0 there; a reload while it runs, from the
reload's navigation start to the page showing the training as yours again (its progress, "started by you"); then from
the run's end (its config.json leaves status "running", polled every 20 ms by this process) to the panel's "Saved to"
line and to its final numbers (the TC metrics).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from mtc_core import runs

CODES_RUN = "shapes2d-beta_tcvae-seed0"
CODES_POINTS = {"num_train": 10_000, "num_test": 5_000, "seed": 0}

# A watcher in the page: the time (epoch ms) of the first `trigger` event (click, change), and of the first moment
# after it each named condition holds (checked on every DOM change); window.__t0, window.__marks[name].
WATCH = """([trigger, conditions]) => { window.__t0 = null; window.__marks = {}; if (window.__watch) window.__watch.disconnect();
  const now = () => performance.timeOrigin + performance.now();
  const checks = Object.fromEntries(Object.entries(conditions).map(([k, v]) => [k, new Function('return (' + v + ')();')]));
  const check = () => { if (window.__t0 === null && trigger) return;
    for (const [name, fn] of Object.entries(checks)) if (!(name in window.__marks) && fn()) window.__marks[name] = now(); };
  if (trigger) document.addEventListener(trigger, () => { window.__t0 = now(); check(); }, {capture: true, once: true});
  else window.__t0 = now();
  window.__watch = new MutationObserver(check);
  window.__watch.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true}); check(); }"""
MARKED = "(names) => window.__t0 !== null && names.every(n => n in window.__marks)"

FRESH = "!document.querySelector('[data-stale=\"true\"], [data-testid=\"stStatusWidget\"], [data-testid=\"stProgress\"]')"
# a table of the main area, drawn by the current run, whose header has `header` and whose text has `text`
TABLE = """[...document.querySelectorAll('[data-testid=stMain] [data-testid=stDataFrame]')].some(t => {
  const box = t.closest('[data-testid=stElementContainer]'); const text = t.textContent;
  return box && box.dataset.stale === 'false' && text.includes(%r) && %s; })"""
CODES = {
    "checked": "() => document.querySelector('[data-testid=stMain]').innerText.includes('Keep this code set')",
    # the TC table's first value: its first row's mean codes cell holds a number
    "first numbers": "() => " + TABLE % ("estimator", "/\\d/.test((t.querySelector('[data-testid=glide-cell-1-0]') || {}).textContent || '')"),
    "whole page": f"() => {FRESH} && " + TABLE % ("FactorVAE score", "true")
                  + " && document.querySelectorAll('.js-plotly-plot').length >= 4",
}


# the elements of the main area matching `selector` that belong to a training this session started: the nearest block
# around them naming who started a training says "started by you" (the panel of other sessions' trainings says another)
MINE = """((selector) => [...document.querySelectorAll('[data-testid=stMain] ' + selector)].filter(el => {
  for (let e = el; e; e = e.parentElement) if (e.innerText && e.innerText.includes('started by')) return e.innerText.includes('started by you');
  return false; }))"""


def train_marks(steps: int) -> dict[str, str]:
    progress = f"{MINE}('[data-testid=stProgress]').map(p => p.innerText).join('|')"
    return {"progress": f"() => new RegExp('step \\\\d+ / {steps}').test({progress})",
            "stepping": f"() => new RegExp('step [1-9]\\\\d* / {steps}').test({progress})"}


YOURS_AGAIN = f"() => {MINE}('[data-testid=stProgress]').length > 0"
FINISHED = {"saved": f"() => {MINE}('[data-testid=stAlert]').some(a => a.innerText.includes('Saved to'))",
            "numbers": "() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stMetric]')].some(m => "
                       "m.innerText.includes('TC mean codes') && /\\d/.test((m.querySelector('[data-testid=stMetricValue]') || {}).innerText || ''))"}


def write_codes_file(zoo: Path, path: Path) -> Path:
    """The codes file `evaluate` would write for the zoo's CODES_RUN (15,000 points), as a user of evaluate-codes has it."""
    from mtc_core.data import make_dataset
    from mtc_core.evaluation.codes_file import codes_from_points, save_codes
    from mtc_core.evaluation.scoring import encoded_points

    model, config = runs.load_run(zoo / CODES_RUN)
    dataset = make_dataset(config["dataset"])
    return save_codes(path, codes_from_points(*encoded_points(model, dataset, **CODES_POINTS), dataset.factor_names))


def watch(page, trigger: str | None, conditions: dict[str, str]) -> None:
    page.evaluate(WATCH, [trigger, conditions])


def marks(page, names: list[str]) -> dict[str, float]:
    """Seconds from the trigger to each named mark, once all are there."""
    page.wait_for_function(MARKED, arg=names)
    got = page.evaluate("() => [window.__t0, window.__marks]")
    return {name: (got[1][name] - got[0]) / 1000 for name in names}


def your_codes(browser, url: str, codes: Path) -> dict[str, float]:
    from bench.app_server import settled

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(600_000)
    page.goto(f"{url}/Your_codes")
    page.get_by_role("heading", name="Your codes").first.wait_for()
    settled(page)
    watch(page, "change", CODES)
    page.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(str(codes))
    got = marks(page, list(CODES))
    page.close()
    return got


def new_run(root: Path, before: set[Path]) -> Path | None:
    found = [p for p in root.iterdir() if p not in before and (p / runs.CONFIG).is_file()] if root.is_dir() else []
    return found[0] if found else None


def training(browser, url: str, runs_root: Path, steps: int) -> dict[str, float | str]:
    """Seconds: click to progress, to a step past 0; reload to the run shown as yours again; run's end to 'Saved to'
    and to its numbers. 'reload during' says whether the run was still running when the page showed it again."""
    from bench.app_server import open_train_form

    before = set(runs_root.iterdir()) if runs_root.is_dir() else set()
    page = open_train_form(browser, url, steps)
    page.get_by_label("steps", exact=True).press("Tab")
    watch(page, "click", train_marks(steps))
    page.get_by_role("button", name=re.compile("Start training")).click()
    out: dict[str, float | str] = marks(page, ["progress", "stepping"])
    page.reload()
    out["reload"] = page.wait_for_function(f"() => ({YOURS_AGAIN})() && performance.now()").json_value() / 1000
    shown = page.locator("[data-testid=stMain]").inner_text()
    out["reload during"] = "running" if "(started by you): running" in shown else "after the end"
    watch(page, None, FINISHED)
    while (run := new_run(runs_root, before)) is None:
        time.sleep(0.02)
    while (runs.read_json(run / runs.CONFIG) or {}).get("status") == "running":
        time.sleep(0.02)
    ended = time.time() * 1000
    page.wait_for_function(MARKED, arg=list(FINISHED))
    finished = page.evaluate("() => window.__marks")
    out.update({name: (finished[name] - ended) / 1000 for name in FINISHED})
    out["steps/s"] = ((runs.read_json(run / runs.METRICS) or {}).get("training") or {}).get("steps_per_s") or float("nan")
    page.close()
    return out


def flows(zoo: Path, rounds: int, steps: int) -> tuple[list[dict], list[dict]]:
    """([Your codes marks per round], [training marks per round]) on one fresh `mtc app` server."""
    import tempfile

    from bench.app_server import app_server, chromium

    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        codes = write_codes_file(zoo, Path(tmp) / f"{CODES_RUN}.npz")
        runs_root = Path(tmp) / "runs"
        with app_server(zoo, runs_root, Path(tmp) / "server.log") as url:
            uploads = [your_codes(browser, url, codes) for _ in range(rounds)]
            trainings = [training(browser, url, runs_root, steps) for _ in range(rounds)]
    return uploads, trainings


def report(zoo: Path, rounds: int, steps: int) -> None:
    """Prints the flows' tables (markdown), the load average before and after."""
    import os

    load = os.getloadavg()
    uploads, trainings = flows(zoo, rounds, steps)
    after = os.getloadavg()
    print(f"\nFlows in Chromium, one fresh `mtc app` server; load average (1, 5, 15 min) {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"before, {after[0]:.1f} {after[1]:.1f} {after[2]:.1f} after")
    print(f"\n| Your codes, upload of {CODES_RUN}'s codes (10,000 + 5,000 points) to | file checked (s) | first numbers: "
          "TC table (s) | whole page: metrics, charts, no progress (s) |\n|---|---|---|---|")
    for k, got in enumerate(uploads, start=1):
        print(f"| round {k} | {got['checked']:.2f} | {got['first numbers']:.2f} | {got['whole page']:.2f} |")
    print(f"\n| Train page, toy, {steps} steps | click to progress in Your trainings (s) | click to a step past 0 (s) | reload to "
          "the run shown as yours (s) | run's end to 'Saved to' (s) | run's end to its numbers (s) | steps/s |\n|---|---|---|---|---|---|---|")
    for k, got in enumerate(trainings, start=1):
        print(f"| round {k} | {got['progress']:.2f} | {got['stepping']:.2f} | {got['reload']:.2f} ({got['reload during']}) | "
              f"{got['saved']:.2f} | {got['numbers']:.2f} | {got['steps/s']:.1f} |")
