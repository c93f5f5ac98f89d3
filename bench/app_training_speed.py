"""In-app training speed against the CLI, side by side in one run, on the same model and machine.

The app side is what a user does: `streamlit run app.py`, the Train page open in Chromium (its progress panel redrawn
every second), the form's defaults for the toy beta-TCVAE with `--steps` steps, Start. The CLI side runs the exact
command the app stored in the run's config.json (`python -m mtc_core train ...`, same model, data, batch, evaluation
and checkpoint settings, `--num-threads 0`: torch's default threads, what a user typing the command gets) into
another folder, and once more with one thread, for reference. The app gives a training that runs alone every core
(ui/training.py: the trainings running at once share the cores, at a lower priority than the pages). Both rates are the trainer's loop (metrics.json
`training.steps_per_s`: evaluations and checkpoints included, set-up excluded). The three alternate for `--rounds`
rounds and the medians are compared, so a load that drifts hits all alike.

Responsiveness (after the speed rounds, in three more trainings): while the app trains, a second tab opens the Theorem
page; its time to a finished script run is compared with the same page on the idle server (issue 12: 8 s instead of
0.6 s with two trainings, before trainings had their own process). Both include the browser loading the page.

    python bench/app_training_speed.py --steps 600 --rounds 3
Goal: in-app >= 0.8x the CLI's steps/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.app_server import ROOT, app_server, chromium, open_train_form, settled  # noqa: E402
from mtc_core import runs  # noqa: E402

GOAL = 0.8


def app_run(browser, url: str, runs_root: Path, steps: int, probe: bool) -> tuple[Path, float | None]:
    """Train from the Train page; returns (run dir, seconds to render the Theorem page in a second tab meanwhile)."""
    before = set(runs_root.iterdir()) if runs_root.is_dir() else set()
    page = open_train_form(browser, url, steps)
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_role("button", name=re.compile("Cancel")).wait_for()
    busy = None
    if probe:
        page.wait_for_timeout(3000)  # training under way
        busy = page_time(browser, f"{url}/Theorem")
    (run,) = set(runs_root.iterdir()) - before
    while not (run / runs.METRICS).is_file() or runs.read_json(run / runs.CONFIG).get("status") == "running":
        page.wait_for_timeout(500)  # the page stays open, redrawing its progress, as a user watching would have it
    page.close()
    return run, busy


def page_time(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name="Mean TC unbounded, sampled TC bounded").wait_for(timeout=300_000)
    settled(page)
    elapsed = time.perf_counter() - start - 0.6  # settled() waits 2 x 0.3 s of quiet
    page.close()
    return elapsed


def cli_run(command: str, out: Path, threads: int) -> float:
    args = shlex.split(command)[3:]  # after "python -m mtc_core"
    args[args.index("--out") + 1] = str(out)
    args[args.index("--num-threads") + 1] = str(threads)
    subprocess.run([sys.executable, "-m", "mtc_core", *args], cwd=ROOT, check=True, capture_output=True)
    return speed(out)


def app_threads(command: str) -> int:
    """The torch threads the app's stored command names (0: torch's default, the cores shared by the trainings)."""
    args = shlex.split(command)
    return int(args[args.index("--num-threads") + 1])


def speed(run: Path) -> float:
    return runs.read_json(run / runs.METRICS)["training"]["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"app": [], "cli0": [], "cli1": []}
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        tmp = Path(tmp)
        (tmp / "zoo").mkdir()
        with app_server(tmp / "zoo", tmp / "runs", tmp / "server.log") as url:
            page_time(browser, f"{url}/Theorem")  # first run of the server process: imports
            idle = statistics.median(page_time(browser, f"{url}/Theorem") for _ in range(3))
            for r in range(args.rounds):
                run, _ = app_run(browser, url, tmp / "runs", args.steps, probe=False)
                results["app"].append(speed(run))
                command = runs.read_json(run / runs.CONFIG)["command"]
                results["cli0"].append(cli_run(command, tmp / f"cli0-{r}", app_threads(command)))
                results["cli1"].append(cli_run(command, tmp / f"cli1-{r}", 1))
                print(f"round {r + 1}: app {results['app'][-1]:.1f}, CLI the same command {results['cli0'][-1]:.1f}, "
                      f"CLI 1 thread {results['cli1'][-1]:.1f} steps/s", file=sys.stderr)
            # responsiveness apart from the speed rounds: the probe's page load takes CPU from the training it watches
            busy = [app_run(browser, url, tmp / "runs", args.steps, probe=True)[1] for _ in range(3)]
    medians = {k: statistics.median(v) for k, v in results.items()}
    print(f"{platform.processor() or platform.machine()}, {args.steps} steps of the Train page's toy beta-TCVAE defaults, "
          f"{args.rounds} rounds, medians; command: {command.split(' --out')[0]} ...\n")
    print("| loop | steps/s | in-app / this |")
    print("|---|---|---|")
    threads = app_threads(command)
    print(f"| in-app (Train page open in Chromium; {threads or 'the cores shared:'} "
          f"{'torch thread(s)' if threads else f'all {os.cpu_count()} when alone'}) | {medians['app']:.1f} | 1.00 |")
    ratio = medians["app"] / medians["cli0"]
    print(f"| CLI, the same command (torch's default threads) | {medians['cli0']:.1f} | {ratio:.2f} "
          f"({'met' if ratio >= GOAL else 'MISSED'} >= {GOAL}) |")
    print(f"| CLI, the same command on 1 thread (reference) | {medians['cli1']:.1f} | {medians['app'] / medians['cli1']:.2f} |")
    print(f"\nTheorem page in a second tab (request to finished script run): idle server {idle:.2f} s, "
          f"during a training {statistics.median(busy):.2f} s (median of {len(busy)})")


if __name__ == "__main__":
    main()
