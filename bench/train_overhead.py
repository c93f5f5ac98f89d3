"""Per-step host overhead of the trainer (issue 23): `mtc_core.training.trainer.train` against a bare PyTorch loop
over pre-built tensors, on a network so small that its compute is a few hundred microseconds (the toy's MLP, hidden 16,
2 latents, batch 64), one torch thread. What the trainer spends per step beyond the model's own step (drawing and
rendering the batch, moving it, reading the logs, checking the loss, the callbacks) is what a GPU would wait for.

The bare loop is `model.loss` + backward + Adam + `auxiliary_step` over 50 batches rendered beforehand (the same
model, seed and batch size). Both are timed from the end of their first step to the end of their last (the trainer by
a callback: set-up, checkpoints and its one history record, at the last step, fall outside), on two clocks: wall
time, and the CPU time of the main thread, which is what a GPU would wait for (a render thread's time is not on it)
and which a loaded machine disturbs less. Each round runs every checkout in turn, each in a fresh process that times
the trainer and the bare loop alternately; the table gives medians and the spread (min to max) of the overhead.

    OMP_NUM_THREADS=1 python bench/train_overhead.py                                # this checkout
    OMP_NUM_THREADS=1 python bench/train_overhead.py --code /tmp/before . .@sync   # A/B: another copy of the code first,
                                                                                   # then this one, with its batches
                                                                                   # prefetched and drawn in the loop
A checkout given as PATH@MODE trains with `trainer.BATCH_MODE = MODE` (sync | thread; mtc_core.training.prefetch).
Two more tables: the host's reads of a tensor's value per step (each one a wait on a CUDA device), and with
--batch-costs the main thread's CPU time per batch rendered in the loop against prefetched by a thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"latent_dim": 2, "hidden": 16}


def _config(model: str, steps: int, batch: int, dataset: str):
    from mtc_core.training.trainer import TrainConfig

    return TrainConfig(model=model, model_params=dict(PARAMS), dataset={"name": dataset}, steps=steps, batch_size=batch,
                       lr=1e-3, eval_every=steps, eval_size=16, checkpoint_every=0, device="cpu", num_threads=1)


def trainer_us(config) -> tuple[float, float]:
    """(wall, main-thread CPU) microseconds per step of the trainer's loop, timed from the end of step 1 to the end of
    the last step by a callback (set-up, checkpoints and the final record excluded)."""
    from mtc_core.training.trainer import Callback, train

    stamps = {}

    class Stamps(Callback):
        def on_step(self, *, step, logs):
            if step in (1, config.steps):
                stamps[step] = (time.perf_counter(), time.thread_time())

    with tempfile.TemporaryDirectory() as tmp:
        assert train(config, tmp, callbacks=[Stamps()]).status == "complete"
    (w0, c0), (w1, c1) = stamps[1], stamps[config.steps]
    return 1e6 * (w1 - w0) / (config.steps - 1), 1e6 * (c1 - c0) / (config.steps - 1)


def bare_us(config) -> tuple[float, float]:
    """(wall, main-thread CPU) microseconds per step of the model's own step over pre-built tensors (no rendering, no
    trainer), timed over the same steps."""
    import numpy as np
    import torch

    from mtc_core.data import make_dataset
    from mtc_core.models import build_model
    from mtc_core.training.trainer import resolved_model_params

    dataset = make_dataset(config.dataset)
    rng = np.random.default_rng(config.seed)
    batches = [torch.from_numpy(dataset.render(dataset.sample_factors(config.batch_size, rng))) for _ in range(50)]
    torch.manual_seed(config.seed)
    model = build_model(config.model, resolved_model_params(config, dataset))
    model.noise = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.vae_parameters(), lr=config.lr)
    model.train()
    for step in range(config.steps):
        if step == 1:
            w0, c0 = time.perf_counter(), time.thread_time()
        loss, _, out = model.loss(batches[step % len(batches)], step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.auxiliary_step(out)
    return 1e6 * (time.perf_counter() - w0) / (config.steps - 1), 1e6 * (time.thread_time() - c0) / (config.steps - 1)


READS = ("item", "__bool__", "__float__", "__int__", "cpu", "tolist", "numpy")  # what makes the host wait for a CUDA device


def host_reads(config) -> float:
    """Reads of a tensor's value by the host (READS, Adam's CPU step counters aside) per step, counted over steps that
    neither record nor checkpoint: on a GPU each one waits for every queued kernel."""
    import torch

    from mtc_core.training.trainer import Callback, train

    counts, marks = [0], {}

    def counted(original):
        def read(self, *args, **kwargs):
            if "torch/optim" not in sys._getframe(1).f_code.co_filename:
                counts[0] += 1
            return original(self, *args, **kwargs)
        return read

    for name in READS:
        setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))

    class Mark(Callback):
        def on_step(self, *, step, logs):
            marks[step] = counts[0]

    with tempfile.TemporaryDirectory() as tmp:
        train(config, tmp, callbacks=[Mark()])
    return (marks[config.steps - 1] - marks[1]) / (config.steps - 2)


def batch_cost(dataset_name: str, mode: str, batches: int = 60, batch: int = 64, pause_s: float = 0.002) -> float:
    """Median main-thread CPU microseconds of one `Batches.next()` on the CPU, with `pause_s` between calls (a step the
    device computes; a sleep costs the main thread nothing) so that a render thread can stay ahead."""
    import numpy as np
    import torch

    from mtc_core.data import make_dataset
    from mtc_core.training.prefetch import Batches

    costs = []
    with Batches(make_dataset(dataset_name), batch, np.random.default_rng(0), torch.device("cpu"), mode) as source:
        for _ in range(batches):
            time.sleep(pause_s)
            start = time.thread_time()
            source.next()
            costs.append(time.thread_time() - start)
    return 1e6 * statistics.median(costs[5:])


def child(model: str, steps: int, batch: int, dataset: str, pairs: int, mode: str) -> None:
    """In a fresh process of one checkout: `pairs` trainer/bare pairs after a warm-up; one JSON line on stdout."""
    import torch

    from mtc_core.training import trainer

    torch.set_num_threads(1)
    if mode:
        trainer.BATCH_MODE = mode
    if pairs == 0:
        return print(json.dumps(host_reads(_config(model, 50, batch, dataset))))
    if pairs < 0:
        return print(json.dumps({m: batch_cost(dataset, m) for m in ("sync", "thread")}))
    config = _config(model, steps, batch, dataset)
    trainer_us(_config(model, 50, batch, dataset)), bare_us(_config(model, 50, batch, dataset))  # warm-up
    pairs_out = [(trainer_us(config), bare_us(config)) for _ in range(pairs)]
    print(json.dumps(pairs_out))


def in_child(code: str, model: str, steps: int, batch: int, dataset: str, pairs: int):
    """`child` run in a fresh process on checkout `code` (PATH or PATH@MODE); its JSON answer."""
    path, _, mode = code.partition("@")
    env = {**os.environ, "PYTHONPATH": str(Path(path).resolve()), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", model, str(steps), str(batch), dataset, str(pairs), mode],
                         env=env, cwd=Path(path).resolve(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(codes: list[str], model: str, steps: int, batch: int, dataset: str, rounds: int, pairs: int) -> dict[str, list]:
    """{checkout: [(trainer us, bare us), ...]} with the checkouts alternating round by round."""
    got: dict[str, list] = {code: [] for code in codes}
    for r in range(rounds):
        for code in codes if r % 2 == 0 else codes[::-1]:
            got[code] += in_child(code, model, steps, batch, dataset, pairs)
    return got


def table(got: dict[str, list]) -> str:
    """Per checkout: medians over rounds of the trainer's and the bare loop's wall and main-thread CPU microseconds per
    step, and of the overhead (trainer - bare, paired within a process) with its min-max over rounds."""
    lines = ["| code | clock | trainer us/step | bare loop us/step | overhead us/step (min to max) | ratio trainer / bare |",
             "|---|---|---|---|---|---|"]
    for code, pairs in got.items():
        for clock, i in (("wall", 0), ("main-thread CPU", 1)):
            trainer, bare = [t[i] for t, _ in pairs], [b[i] for _, b in pairs]
            over = [t - b for t, b in zip(trainer, bare, strict=True)]
            ratio = statistics.median(t / b for t, b in zip(trainer, bare, strict=True))
            lines.append(f"| {code} | {clock} | {statistics.median(trainer):.0f} | {statistics.median(bare):.0f} | "
                         f"{statistics.median(over):.0f} ({min(over):.0f} to {max(over):.0f}) | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        model, steps, batch, dataset, pairs, mode = sys.argv[2:8]
        return child(model, int(steps), int(batch), dataset, int(pairs), mode)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", nargs="+", default=[str(ROOT)], help="checkouts to compare (folders holding mtc_core)")
    parser.add_argument("--model", default="beta_tcvae")
    parser.add_argument("--dataset", default="toy")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2, help="trainer/bare pairs per process")
    parser.add_argument("--batch-costs", nargs="*", default=[], metavar="DATASET",
                        help="also time one batch in the loop and prefetched, on these datasets (this checkout)")
    args = parser.parse_args()
    load = os.getloadavg()
    got = measure(args.code, args.model, args.steps, args.batch, args.dataset, args.rounds, args.pairs)
    print(f"{args.model} on {args.dataset}, MLP {PARAMS}, batch {args.batch}, {args.steps} steps, one torch thread; "
          f"{args.rounds} rounds x {args.pairs} pairs; load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print(table(got))
    print("\n| code | host reads of a tensor per step (no record, no checkpoint) |\n|---|---|")
    for code in args.code:
        print(f"| {code} | {in_child(code, args.model, 0, args.batch, args.dataset, 0):.1f} |")
    if args.batch_costs:
        print("\n| dataset | main-thread CPU us per batch of 64, rendered in the loop | prefetched by a thread |\n|---|---|---|")
        for name in args.batch_costs:
            cost = in_child(str(ROOT), args.model, 0, 64, name, -1)
            print(f"| {name} | {cost['sync']:.0f} | {cost['thread']:.0f} |")


if __name__ == "__main__":
    main()
