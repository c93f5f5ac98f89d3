"""What `mtc_core.evaluate` costs for one 64x64 conv model with its default sizes (goal: < 60 s on 2 CPU cores).

Two models: the conv64 beta-TCVAE at initialisation, and the same after `--steps` training steps on Shapes2D.
Printed per stage, from evaluate's own progress messages.

    python bench/evaluate_cost.py --threads 2 --steps 300

`--analyse`: `evaluate()` without the encoder, i.e. `mtc_core.analyse_codes` on synthetic VAE-like codes with 4 factors
(the classes of Shapes2D's shape, scale, orientation and posX), at every (N, D) of `--sizes`, one thread, each case in a
fresh subprocess: CPU seconds, wall seconds and peak resident memory (ru_maxrss, the whole process). `--before DIR`
also runs a copy of the package made from git HEAD, e.g. `git archive HEAD mtc_core | tar -x -C /tmp/before`.

    python bench/evaluate_cost.py --analyse --sizes 1000x10,1000x64,10000x10,10000x64,100000x10,100000x64 --before /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import mtc_core
from mtc_core.data import make_dataset
from mtc_core.models import build_model
from mtc_core.training.trainer import TrainConfig, train


def timed_evaluate(model, dataset) -> tuple[float, list[tuple[str, float]], dict]:
    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    result = mtc_core.evaluate(model, dataset, progress=lambda stage, partial: marks.append((stage, time.perf_counter() - t0)))
    total = time.perf_counter() - t0
    # progress comes after each stage: a stage's time is from the previous mark to its own
    stages = [(name, end - (marks[i - 1][1] if i else 0.0)) for i, (name, end) in enumerate(marks)]
    return total, stages, result


CASE = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import torch
torch.set_num_threads(1)
import mtc_core
assert mtc_core.__file__.startswith(sys.argv[1]), mtc_core.__file__
n, d = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
sizes = [3, 6, 40, 32]  # Shapes2D's shape, scale, orientation, posX
factors = np.column_stack([rng.integers(0, s, n) for s in sizes])
mean = 0.05 * rng.standard_normal((n, d))  # passive latents: mean near 0, posterior near the prior
logvar = -0.05 + 0.02 * rng.standard_normal((n, d))
for j in range(min(4, d)):  # active latents: a factor, a little noise, a nonlinear trace of the previous latent
    mean[:, j] = 3.0 * factors[:, j] / (sizes[j] - 1) - 1.5 + 0.1 * rng.standard_normal(n) + (0.3 * np.sin(3 * mean[:, j - 1]) if j else 0)
    logvar[:, j] = -4 + 0.1 * rng.standard_normal(n)
mean[:, 4] = 0.02 * mean[:, 0] + 0.002 * rng.standard_normal(n)  # a passive copy of an active latent
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu, wall = time.process_time(), time.perf_counter()
result = mtc_core.analyse_codes(mean, logvar, factors)
print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "inputs_mb": before / 1024,
                  "dci": result["mean"]["dci"]["disentanglement"], "gaussian_tc": result["tc"]["mean"]["gaussian"]["value"],
                  "mixture": result["tc"]["mixture"]["dataset_mc"]["value"]}))
"""


def analyse_case(root: str, n: int, d: int) -> dict:
    """One `analyse_codes` call in a fresh one-thread process on package `root`: its cost and peak memory."""
    env = {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", CASE, root, str(n), str(d)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def analyse_table(sizes: list[tuple[int, int]], before: str | None) -> None:
    """Markdown rows: per (N, D), before (if given) and after: CPU s, wall s, peak MB."""
    here = str(Path(__file__).resolve().parent.parent)
    roots = ([("before", before)] if before else []) + [("after", here)]
    print(f"analyse_codes, synthetic codes with 4 factors, one thread; load {os.getloadavg()[0]:.1f} at the start\n")
    print("| N | D | version | CPU s | wall s | peak RSS MB (inputs alone) | DCI disentanglement | Gaussian TC | mixture TC |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for n, d in sizes:
        for label, root in roots:
            r = analyse_case(root, n, d)
            print(f"| {n:,} | {d} | {label} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {r['peak_mb']:.0f} ({r['inputs_mb']:.0f}) | "
                  f"{r['dci']:.4f} | {r['gaussian_tc']:.4f} | {r['mixture']:.4f} |", flush=True)
    print(f"\nload {os.getloadavg()[0]:.1f} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--analyse", action="store_true", help="analyse_codes' cost and memory instead (module docstring)")
    parser.add_argument("--sizes", default="1000x10,1000x64,10000x10,10000x64,100000x10,100000x64", help="NxD,...")
    parser.add_argument("--before", default=None, help="a copy of the package before the change, to run beside it")
    args = parser.parse_args()
    if args.analyse:
        analyse_table([tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")], args.before)
        return
    torch.set_num_threads(args.threads)
    dataset = make_dataset("shapes2d")
    torch.manual_seed(0)
    models = {"initialisation": build_model("beta_tcvae", {"dataset_size": len(dataset)})}
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(model="beta_tcvae", dataset={"name": "shapes2d"}, steps=args.steps, lr=1e-3, device="cpu")
        models[f"after {args.steps} steps"] = train(config, tmp).model
    print(f"torch {torch.__version__}, {args.threads} threads, CPU; conv64 beta-TCVAE, 10 latents, Shapes2D, evaluate() defaults\n")
    for label, model in models.items():
        total, stages, result = timed_evaluate(model, dataset)
        active = result["activity"]["active_latents"]
        print(f"| {label} ({active} active latents) | seconds |\n|---|---|")
        for name, seconds in stages:
            print(f"| {name} | {seconds:.1f} |")
        print(f"| **total** | **{total:.1f}** |\n")


if __name__ == "__main__":
    main()
