"""Wall time of a small sweep through Ray against the same runs back to back in one process.

Eight short trainings (toy, MLP, beta-TCVAE beta 1/4/6/8 x seeds 0/1) run four ways:
sequentially here with 1 torch thread, sequentially with 2 threads, on a pool of 2 plain processes (the
ceiling for any parallel runner on this machine), and through `mtc_core.training.sweep.run_sweep` on a local Ray
instance with 2 CPUs, one CPU (= one torch thread) per run. The sweep's time counts
everything a user waits for: ray.init (starting the local instance), the worker processes importing torch,
the runs, and ray.shutdown. The script also prints how far the sweep's weights are from the sequential ones.
Goal: sweep wall time <= 0.6x the 1-thread sequential time.

    python bench/sweep_overhead.py --steps 300
    python bench/sweep_overhead.py --steps 1000 --skip-two-threads     # longer runs amortise Ray's start-up
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from mtc_core import runs
from mtc_core.training import sweep
from mtc_core.training.trainer import train


def spec(steps: int) -> dict:
    return {"dataset": {"name": "toy"}, "train": {"steps": steps, "batch_size": 64, "lr": 0.001, "device": "cpu"},
            "seeds": [0, 1], "models": [{"name": "beta_tcvae", "grid": {"beta": [1, 4, 6, 8]}}]}


def sequential(runs: list[sweep.SweepRun], out: Path, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for run in runs:
        assert train(run.config, out / run.name).status == "complete"
    return time.perf_counter() - start


def _train_one_thread(config, run_dir: str) -> str:
    torch.set_num_threads(1)
    return train(config, run_dir).status


def process_pool(runs: list[sweep.SweepRun], out: Path) -> float:
    """The same runs on 2 plain worker processes (spawned, so they import torch as Ray's workers do): what any
    parallel runner could get from this machine, against which Ray's own cost shows."""
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        statuses = list(pool.map(_train_one_thread, [r.config for r in runs], [str(out / r.name) for r in runs]))
    assert statuses == ["complete"] * len(runs), statuses
    return time.perf_counter() - start


def through_ray(the_spec: dict, out: Path) -> tuple[float, float, float]:
    """(total, ray.init, ray.shutdown) seconds."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False)
    started = time.perf_counter()
    outcomes = sweep.run_sweep(the_spec, out, cpus_per_run=1, log=lambda line: None)
    ran = time.perf_counter()
    ray.shutdown()
    end = time.perf_counter()
    assert all(o.status == "complete" for o in outcomes), outcomes
    return end - start, started - start, end - ran


def weight_difference(a: Path, b: Path) -> float:
    wa, wb = runs.load_run(a)[0].state_dict(), runs.load_run(b)[0].state_dict()
    return max((t - wb[k]).abs().max().item() for k, t in wa.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip-two-threads", action="store_true", help="skip the 2-thread sequential leg (slow on a busy machine)")
    args = parser.parse_args()
    the_spec = spec(args.steps)
    runs = sweep.expand(the_spec)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seq1 = sequential(runs, tmp / "seq1", threads=1)
        seq2 = None if args.skip_two_threads else sequential(runs, tmp / "seq2", threads=2)
        pool = process_pool(runs, tmp / "pool")
        total, init, shutdown = through_ray(the_spec, tmp / "sweep")
        difference = max(weight_difference(tmp / "seq1" / r.name, tmp / "sweep" / r.name) for r in runs)
    load_after = os.getloadavg()
    print(f"{len(runs)} runs: toy, MLP (latent 10, hidden 256), beta_tcvae, {args.steps} steps, batch 64; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print("\n| how | wall s | / sequential 1 thread |\n|---|---|---|")
    print(f"| sequential, 1 torch thread | {seq1:.1f} | 1.00x |")
    if seq2 is not None:
        print(f"| sequential, 2 torch threads | {seq2:.1f} | {seq2 / seq1:.2f}x |")
    print(f"| 2 plain processes x 1 thread (ProcessPoolExecutor, spawn) | {pool:.1f} | {pool / seq1:.2f}x |")
    print(f"| Ray sweep, 2 CPUs x 1 thread (ray.init {init:.1f} s + runs + shutdown {shutdown:.1f} s) | {total:.1f} | {total / seq1:.2f}x |")
    print(f"| Ray sweep without ray.init / shutdown | {total - init - shutdown:.1f} | {(total - init - shutdown) / seq1:.2f}x |")
    print(f"\nlargest |weight difference| between the sweep's runs and the 1-thread sequential ones: {difference:.3g}")
    print(f"goal (sweep <= 0.60x sequential 1 thread): {'met' if total / seq1 <= 0.6 else 'NOT met'} ({total / seq1:.2f}x)")


if __name__ == "__main__":
    main()
