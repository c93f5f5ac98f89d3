"""What `mtc_core.evaluate` costs for one 64x64 conv model with its default sizes (goal: < 60 s on 2 CPU cores).

Two models: the conv64 beta-TCVAE at initialisation, and the same after `--steps` training steps on Shapes2D.
Printed per stage, from evaluate's own progress messages.

    python bench/evaluate_cost.py --threads 2 --steps 300
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import mtc_core
from mtc_core.data import make_dataset
from mtc_core.models import build_model
from mtc_core.training.trainer import TrainConfig, train


def timed_evaluate(model, dataset) -> tuple[float, list[tuple[str, float]], dict]:
    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    result = mtc_core.evaluate(model, dataset, progress=lambda stage: marks.append((stage, time.perf_counter() - t0)))
    total = time.perf_counter() - t0
    stages = [(name, (marks[i + 1][1] if i + 1 < len(marks) else total) - start) for i, (name, start) in enumerate(marks)]
    return total, stages, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
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
