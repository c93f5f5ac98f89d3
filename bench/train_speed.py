"""Training steps/s of each variant through mtc_core.training.trainer, against a bare PyTorch loop
of the same conv64 network with the plain VAE loss, in the same process.

Both sides draw their batches the same way (Shapes2D sample_factors + render), so
the ratio measures what the trainer adds: the regulariser, logging, the periodic
held-out evaluation (every 100 steps) and the checkpoints. The trainer's rate is its
loop (metrics.json `steps_per_s`: evaluations and checkpoints included, one-off set-up
excluded). Bare and trainer runs alternate, `--rounds` times, and the medians are
compared, so a load that drifts during the run hits both sides alike.
Goal: `vae` through the trainer >= 0.9x the bare loop.

    python bench/train_speed.py --steps 200 --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtc_core import runs
from mtc_core.data import make_dataset
from mtc_core.models import MODELS
from mtc_core.models.architectures import ConvDecoder, ConvEncoder
from mtc_core.training.trainer import TrainConfig, train


def bare_loop(steps: int, batch_size: int, seed: int = 0) -> float:
    """Steps/s of the plainest VAE loop on the same network and data."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dataset = make_dataset("shapes2d")
    enc, dec = ConvEncoder(channels=1, latent_dim=10), ConvDecoder(channels=1, latent_dim=10)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = torch.from_numpy(dataset.render(dataset.sample_factors(batch_size, rng)))
        mu, logvar = enc(x).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(dec(z), x, reduction="sum") / batch_size
        kl = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(1).mean()
        loss = recon + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def trainer_speed(model: str, steps: int, batch_size: int) -> float:
    config = TrainConfig(model=model, dataset={"name": "shapes2d"}, steps=steps, batch_size=batch_size, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, tmp)
        assert result.status == "complete", result.message
        return runs.read_json(Path(tmp) / runs.METRICS)["training"]["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bare_loop(10, args.batch_size)  # warm-up: allocator, kernels
    bare: list[float] = []
    speeds: dict[str, list[float]] = {m: [] for m in args.models}
    for _ in range(args.rounds):
        for model in args.models:
            bare.append(bare_loop(args.steps, args.batch_size))
            speeds[model].append(trainer_speed(model, args.steps, args.batch_size))
    base = statistics.median(bare)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          "conv64 on Shapes2D, CPU; medians\n")
    print("| loop | steps/s | ratio to bare loop |")
    print("|---|---|---|")
    print(f"| bare PyTorch loop (VAE loss) | {base:.2f} | 1.00 |")
    for model, values in speeds.items():
        speed = statistics.median(values)
        print(f"| mtc_core.training.trainer `{model}` | {speed:.2f} | {speed / base:.2f} |")


if __name__ == "__main__":
    main()
