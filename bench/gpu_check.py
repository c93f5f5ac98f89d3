"""The GPU check of the training pipeline (issue 23): one prepared script for when a GPU is lent. `--device cpu` runs
the same code on the CPU as a smoke check (tests/test_prefetch.py runs it with a few steps).

1. Steady state: steps/s of `train` with the warm-up excluded (the device is synchronised at the end of the warm-up
   and at the last step, and only the steps between are timed), for each variant: float32, bf16 autocast,
   torch.compile, both, cuDNN autotuning (CUDA only), and batches rendered in the loop ("sync", the old way);
   and the seconds to the end of the first step (torch.compile compiles there; the slowest of the rounds, as later
   rounds in one process reuse the compiled code).
2. Host share: the same steps in a bare loop over batches already on the device, with the same model and variant;
   1 - bare time / trainer time is the share of a step the device spends waiting for the host (about 0 when the
   loop keeps it fed; negative values are noise).
3. Losses: every model trains `--steps` steps on the device and on the CPU from the same seed, with the same noise
   (eps and FactorVAE's permutations drawn on the host for both, so only the arithmetic differs); the table gives
   the largest relative difference of the per-step losses, and where it is reached.

    python bench/gpu_check.py                                                        # with CUDA: a few minutes
    python bench/gpu_check.py --device cpu --steps 4 --speed-steps 4 --warmup 2 --models vae   # smoke check
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import numpy as np
import torch

from mtc_core.data import make_dataset
from mtc_core.estimators.sampling import sampled_codes
from mtc_core.models import MODELS, VAE, build_model, factor_vae
from mtc_core.training import trainer
from mtc_core.training.device_loop import accelerated, check_options
from mtc_core.training.trainer import Callback, TrainConfig, resolved_model_params, train

VARIANTS = {"float32": {}, "bf16": {"bf16": True}, "compile": {"compile": True}, "bf16 + compile": {"bf16": True, "compile": True},
            "cudnn_benchmark": {"cudnn_benchmark": True}, "sync batches": {}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def thread_clock(device: torch.device) -> bool:
    """Whether the speed rows time the main thread's CPU time (on the CPU with one torch thread: the step's compute and
    the loop's host work, which other processes on a shared machine disturb far less) rather than wall time."""
    return device.type == "cpu" and torch.get_num_threads() == 1


def clock(device: torch.device) -> float:
    return time.thread_time() if thread_clock(device) else time.perf_counter()


def config_for(model: str, dataset: str, device: str, steps: int, **options) -> TrainConfig:
    return TrainConfig(model=model, dataset={"name": dataset}, steps=steps, device=device, eval_every=steps, eval_size=64,
                       checkpoint_every=0, **options)


def trainer_rate(config: TrainConfig, warmup: int, batch_mode: str | None = None) -> tuple[float, float]:
    """(steps/s of `train` over the steps after the warm-up, seconds from the start of the training to the end of its
    first step: torch.compile's compiling shows there)."""
    device, stamps = trainer.resolve_device(config.device), {}

    class Stamps(Callback):
        def on_start(self, *, run_dir, config, start_step):
            stamps["start"] = time.perf_counter()

        def on_step(self, *, step, logs):
            if step in (1, warmup, config.steps):
                sync(device)
                stamps[step], stamps[f"wall {step}"] = clock(device), time.perf_counter()

    previous, trainer.BATCH_MODE = trainer.BATCH_MODE, batch_mode
    try:
        with tempfile.TemporaryDirectory() as tmp:
            assert train(config, tmp, callbacks=[Stamps()]).status == "complete"
    finally:
        trainer.BATCH_MODE = previous
    return (config.steps - warmup) / (stamps[config.steps] - stamps[warmup]), stamps["wall 1"] - stamps["start"]


def bare_rate(config: TrainConfig, warmup: int) -> float:
    """Steps/s of the model's own steps over 16 batches already on the device (no rendering, no trainer)."""
    device, dataset = trainer.resolve_device(config.device), make_dataset(config.dataset)
    rng = np.random.default_rng(config.seed)
    batches = [torch.from_numpy(dataset.render(dataset.sample_factors(config.batch_size, rng))).to(device) for _ in range(16)]
    torch.manual_seed(config.seed)
    model = build_model(config.model, resolved_model_params(config, dataset)).to(device)
    model.noise = torch.Generator(device).manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.vae_parameters(), lr=config.lr)
    model.train()
    with accelerated(model, bf16=config.bf16, compile=config.compile, cudnn_benchmark=config.cudnn_benchmark, device=device):
        for step in range(config.steps):
            if step == warmup:
                sync(device)
                start = clock(device)
            loss, _, out = model.loss(batches[step % len(batches)], step, lazy=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.auxiliary_step(out, lazy=True)
        sync(device)
    return (config.steps - warmup) / (clock(device) - start)


@contextlib.contextmanager
def host_noise(seed: int):
    """Draw the models' noise on the host from a CPU generator seeded like the run's, then move it to the device: a run
    on any device sees the noise a CPU run draws (on the CPU this changes nothing)."""
    hosts: dict[int, torch.Generator] = {}

    def host(generator) -> torch.Generator:
        return hosts.setdefault(id(generator), torch.Generator().manual_seed(seed))

    def reparameterise(self, mu, logvar):
        return sampled_codes(mu, logvar, torch.randn(mu.shape, generator=host(self.noise), dtype=mu.dtype).to(mu.device))

    def permute_dims(z, generator=None):
        return torch.stack([z[torch.randperm(z.shape[0], generator=host(generator)).to(z.device), j] for j in range(z.shape[1])], 1)

    saved = VAE.reparameterise, factor_vae.permute_dims
    VAE.reparameterise, factor_vae.permute_dims = reparameterise, permute_dims
    try:
        yield
    finally:
        VAE.reparameterise, factor_vae.permute_dims = saved


def losses(model: str, dataset: str, device: str, steps: int) -> np.ndarray:
    """The per-step training losses of `model` on `device` (read once at the end: the loop does not wait for them)."""
    kept = []

    class Keep(Callback):
        def on_step(self, *, step, logs):
            kept.append(logs)

    config = config_for(model, dataset, device, steps)
    with tempfile.TemporaryDirectory() as tmp, host_noise(config.seed):
        assert train(config, tmp, callbacks=[Keep()]).status == "complete", model
    return np.array([logs["loss"] for logs in kept])


def refusal(options: dict, device: torch.device) -> str | None:
    """Why the trainer refuses these speed options on `device` (device_loop.check_options), or None."""
    try:
        check_options(**options, device=device)
    except ValueError as e:
        return str(e)
    return None


def speed_table(args, device: torch.device) -> list[str]:
    """The speed rows, each measured `--rounds` times (the rows alternate in order round by round); medians."""
    rows = [(d, "float32") for d in args.datasets] + [(args.datasets[0], v) for v in args.variants if v != "float32"]
    rows = [(d, v) for d, v in rows if refusal(VARIANTS[v], device) is None]
    for v in dict.fromkeys(v for v in args.variants if refusal(VARIANTS[v], device)):
        print(f"{v}: skipped, refused on {device.type}: {refusal(VARIANTS[v], device)}", flush=True)
    got: dict[tuple[str, str], list[tuple[float, float, float]]] = {row: [] for row in rows}
    for r in range(args.rounds):
        for dataset, variant in rows if r % 2 == 0 else rows[::-1]:
            config = config_for(args.speed_model, dataset, str(device), args.warmup + args.speed_steps, **VARIANTS[variant])
            rate, first = trainer_rate(config, args.warmup, "sync" if variant == "sync batches" else None)
            got[(dataset, variant)].append((rate, bare_rate(config, args.warmup), first))
    lines = ["| dataset | variant | trainer steps/s | bare loop steps/s | host share | first step s |", "|---|---|---|---|---|---|"]
    for (dataset, variant), values in got.items():
        rate, bare = (float(np.median([v[i] for v in values])) for i in range(2))
        first = max(v[2] for v in values)  # the first round compiles; later ones reuse the process's compiled code
        share = float(np.median([1 - t / b for t, b, _ in values]))  # of a step's time, the part the bare loop does not spend
        lines.append(f"| {dataset} | {variant} | {rate:.1f} | {bare:.1f} | {share:+.0%} | {first:.1f} |")
    print("\n".join(lines), flush=True)
    return lines


def loss_table(args, device: torch.device) -> list[str]:
    lines = [f"| model | {device.type} final loss | cpu final loss | max relative difference (step) |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for model in args.models:
        here, cpu = losses(model, args.datasets[0], str(device), args.steps), losses(model, args.datasets[0], "cpu", args.steps)
        rel = np.abs(here - cpu) / np.abs(cpu)
        lines.append(f"| {model} | {here[-1]:.4f} | {cpu[-1]:.4f} | {rel.max():.1e} ({int(rel.argmax()) + 1}) |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--steps", type=int, default=200, help="steps of the loss comparison")
    parser.add_argument("--speed-steps", type=int, default=300, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first (at least 1)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each speed row (medians)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--speed-model", default="beta_tcvae")
    parser.add_argument("--datasets", nargs="+", default=["shapes2d", "shapes3d", "noisy_dsprites"])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)
    if min(args.warmup, args.speed_steps, args.steps, args.rounds) < 1:
        parser.error("--warmup, --speed-steps, --steps and --rounds must be at least 1")
    device = trainer.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    timed = "main-thread CPU time" if thread_clock(device) else "wall time"
    print(f"{name}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}; speed rows in {timed}\n", flush=True)
    lines = speed_table(args, device)
    print(flush=True)
    lines += [""] + loss_table(args, device)
    return lines


if __name__ == "__main__":
    main()
