"""App latency: time to render each page with a warm cache, and the traversal grid.

Usage: python bench/app_latency.py [--repeats 5] [--threads 1]

Pages: each page is opened in a Streamlit AppTest session (app.py, its sidebar and the page), run
once to fill the caches (the cold time, which includes encoding, estimators and, on Compare,
mtc_core.evaluate), then rerun `--repeats` times; the warm time is the median rerun, what a user
waits for after any widget change once a model's numbers are cached. Goal: < 1.5 s per page.
The model is a toy MLP beta-TCVAE (10 latents, hidden 256) trained for 300 steps in a temporary
MTC_RUNS_DIR; the zoo is empty.

Traversal grid: mtc_core.traversal.traverse of 10 latents x 10 steps + mtc_core.figures.image_grid,
for that toy model and for an untrained conv64 model on 64x64 images (the zoo's architecture).
Goal: < 150 ms. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ui.pages import PAGE_FILES as PAGES  # noqa: E402  (after the sys.path line above)

PAGE_GOAL_S, GRID_GOAL_MS = 1.5, 150


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def page_latency(repeats: int) -> list[tuple[str, float, float]]:
    from streamlit.testing.v1 import AppTest

    AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()  # imports, model load: once per process
    rows = []
    for title, page in PAGES.items():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        if title != "Models":
            at.run()
            at.switch_page(page)
        cold = timed(at.run)
        assert not at.exception, [e.value for e in at.exception]
        warm = statistics.median(timed(at.run) for _ in range(repeats))
        rows.append((title, cold, warm))
    return rows


def grid_latency(model, repeats: int) -> float:
    import numpy as np

    from mtc_core import figures, traversal

    latents = np.arange(10)
    values = np.tile(np.linspace(-2, 2, 10), (10, 1))
    base = np.zeros(10)

    def grid():
        figures.image_grid(traversal.traverse(model, base, latents, values), scale=2)

    grid()
    return statistics.median(timed(grid) for _ in range(repeats)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm reruns per page / grids, median reported")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the app's server runs with what it has)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mtc_core.models import build_model
    from mtc_core.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        runs, zoo = Path(tmp) / "runs", Path(tmp) / "zoo"
        zoo.mkdir()
        config = TrainConfig(model="beta_tcvae", model_params={"latent_dim": 10, "hidden": 256}, dataset={"name": "toy"},
                             steps=300, batch_size=64, lr=2e-3, eval_every=50, eval_size=256, checkpoint_every=0, device="cpu")
        toy_model = train(config, runs / "toy_beta_tcvae", command="bench/app_latency.py").model.eval()
        os.environ["MTC_RUNS_DIR"], os.environ["MTC_ZOO_DIR"] = str(runs), str(zoo)
        pages = page_latency(args.repeats)
    conv_model = build_model("beta_tcvae", {"latent_dim": 10, "architecture": "conv64", "image_shape": [1, 64, 64]}).eval()
    grids = [("toy MLP (32x32, hidden 256)", grid_latency(toy_model, args.repeats * 4)),
             ("conv64 (64x64, Locatello et al.)", grid_latency(conv_model, args.repeats * 4))]

    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.processor() or platform.machine()}, "
          f"median of {args.repeats} warm reruns\n")
    print(f"| page | first render, cold cache (s) | rerun, warm cache (s) | goal < {PAGE_GOAL_S} s |")
    print("|---|---|---|---|")
    for title, cold, warm in pages:
        print(f"| {title} | {cold:.2f} | {warm:.3f} | {'met' if warm < PAGE_GOAL_S else 'MISSED'} |")
    print(f"\n| traversal grid, 10 latents x 10 steps (traverse + image_grid) | ms | goal < {GRID_GOAL_MS} ms |")
    print("|---|---|---|")
    for name, ms in grids:
        print(f"| {name} | {ms:.1f} | {'met' if ms < GRID_GOAL_MS else 'MISSED'} |")


if __name__ == "__main__":
    main()
