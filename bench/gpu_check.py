"""The GPU check of the pipeline: each variant trains `--steps` steps on cuda and on cpu with the same seed; compares
the first losses and prints steps/s on both devices as a markdown table for bench/RESULTS.md. The first step sees
the same initial weights (initialised on the CPU, then moved) and the same batch (numpy), but its reparameterisation
noise comes from each device's own generator, so the losses agree up to the effect of one draw of eps
(not to float rounding); two runs on the same device agree exactly.

    python bench/gpu_check.py --steps 300            # on a machine with CUDA
    python bench/gpu_check.py --steps 20 --devices cpu   # the same code path on CPU only
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from mtc_core import runs
from mtc_core.models import MODELS
from mtc_core.training.trainer import Callback, TrainConfig, train


def run(model: str, device: str, steps: int) -> tuple[float, float]:
    """(loss of the first step, training steps/s) for one variant on one device."""
    first: list[float] = []

    class FirstLoss(Callback):
        def on_step(self, *, step, logs):
            if step == 1:
                first.append(logs["loss"])

    config = TrainConfig(model=model, dataset={"name": "shapes2d"}, steps=steps, device=device, eval_every=max(steps // 3, 1))
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, tmp, callbacks=[FirstLoss()])
        assert result.status == "complete", f"{model} on {device}: {result.message}"
        return first[0], runs.read_json(f"{tmp}/{runs.METRICS}")["training"]["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    args = parser.parse_args()
    if "cuda" in args.devices:
        assert torch.cuda.is_available(), "no CUDA device: run with --devices cpu"
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}\n")
    print(f"| model | {' | '.join(f'first loss {d}' for d in args.devices)} | "
          f"{' | '.join(f'steps/s {d}' for d in args.devices)} | max relative loss difference |")
    print("|---|" + "---|" * (2 * len(args.devices) + 1))
    for model in MODELS:
        results = [run(model, device, args.steps) for device in args.devices]
        losses, speeds = [r[0] for r in results], [r[1] for r in results]
        spread = (max(losses) - min(losses)) / abs(losses[0])
        print(f"| {model} | {' | '.join(f'{x:.4f}' for x in losses)} | {' | '.join(f'{s:.1f}' for s in speeds)} | {spread:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
