"""What keeps the training loop from waiting on the device: logs left there, the loss check deferred, and the
speed options of a run (bf16 autocast, torch.compile, cuDNN autotuning).

Reading a number off a CUDA tensor (`.item()`, `float()`, `math.isfinite(loss.item())`) waits until the device has
finished every queued kernel, so a loop that reads its loss each step never runs ahead of the device. Here a step's
logs stay detached scalar tensors (`StepLogs` reads one only when a callback asks for it) and the losses wait in
`LossWatch` until the trainer looks at them all in one read: at every history record, checkpoint, cancel and the
end, and at least every WATCH_LIMIT steps. A run whose loss turned NaN or inf therefore stops at that look rather than
at the step itself, with the same message and status ("diverged", the last good checkpoint kept): nothing is
recorded or saved from the steps in between, which only cost their compute. On the CPU a read costs nothing and the
arithmetic is unchanged: the weights are the same bit for bit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from mtc_core.training.history import eval_record
from mtc_core.training.prefetch import Batches

WATCH_LIMIT = 200  # most steps whose losses wait unread


class StepLogs(Mapping):
    """One step's logs as the callbacks see them: name -> number, each read off the device only when asked for."""

    def __init__(self, logs: dict[str, Any]):
        self._logs = logs

    def __getitem__(self, key: str) -> float:
        value = self._logs[key]
        return value.item() if isinstance(value, torch.Tensor) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._logs)

    def __len__(self) -> int:
        return len(self._logs)

    def __repr__(self) -> str:
        return f"StepLogs({dict(self)!r})"


class LossWatch:
    """The losses of the steps since the last look, on the device; `first_non_finite()` reads them in one go."""

    def __init__(self, limit: int = WATCH_LIMIT):
        self.limit = limit
        self._losses: list[torch.Tensor] = []
        self._first = 0  # the step index of _losses[0]

    def add(self, step: int, loss: torch.Tensor) -> None:
        """The loss of step index `step` (0-based: the step that trains on the step-th batch)."""
        if not self._losses:
            self._first = step
        self._losses.append(loss.detach())

    @property
    def full(self) -> bool:
        return len(self._losses) >= self.limit

    def first_non_finite(self) -> tuple[int, float] | None:
        """(step index, loss) of the first non-finite loss since the last look, or None; forgets them either way."""
        if not self._losses:
            return None
        losses, self._losses = torch.stack(self._losses), []
        if bool(torch.isfinite(losses).all()):  # the one read of the device
            return None
        index = int((~torch.isfinite(losses)).nonzero()[0, 0])
        return self._first + index, losses[index].item()


COMPILE_ON_CPU = ("torch.compile does not speed up these networks on the CPU (bench/RESULTS.md, \"Per-step host overhead (issue "
                  "23)\": conv64 6.5 against 6.8 steps/s, the toy's MLP 110 against 117) and costs seconds to minutes of compiling "
                  "before the first step: leave it off on the CPU")
CUDNN_ON_CPU = "cudnn_benchmark tunes cuDNN's convolutions and needs a CUDA device; this run trains on the CPU: leave it off"


def check_options(*, bf16: bool = False, compile: bool = False, cudnn_benchmark: bool = False, device: torch.device) -> None:
    """ValueError for a speed option that cannot help on `device` (see TrainConfig)."""
    if cudnn_benchmark and device.type != "cuda":
        raise ValueError(CUDNN_ON_CPU)
    if compile and device.type != "cuda":
        raise ValueError(COMPILE_ON_CPU)
    if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"bf16 needs a GPU with bfloat16 arithmetic (Ampere or newer); {torch.cuda.get_device_name(device)} "
                         f"has none: leave it off")
    if bf16 and device.type == "cpu" and not _cpu_has_bf16():
        raise ValueError("bf16 on this CPU would be emulated (no AVX512-BF16 or AMX instructions) and slower than float32: "
                         "leave it off")


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def accelerated(model: torch.nn.Module, *, bf16: bool, compile: bool, cudnn_benchmark: bool, device: torch.device):
    """The run's speed options on `model`'s networks (its direct submodules) for the length of the block, then undone:
    bf16 autocast of each network's forward in training mode (its output cast back to float32, so every loss term and
    the held-out records, computed in eval mode, stay float32); torch.compile of each network's forward; cuDNN's
    autotuner. The state dict is untouched (the forwards are instance attributes, removed at the end)."""
    previous = torch.backends.cudnn.benchmark
    nets = list(model.children()) if bf16 or compile else []
    try:
        if cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        for net in nets:
            forward = _autocast(net, net.forward, device.type) if bf16 else net.forward
            net.forward = torch.compile(forward) if compile else forward
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
        for net in nets:
            if "forward" in vars(net):
                del net.forward


def _autocast(net: torch.nn.Module, forward, device_type: str):
    def autocast_forward(*args, **kwargs):
        if not net.training:
            return forward(*args, **kwargs)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return out.float()

    return autocast_forward


def _cancelled(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def train_steps(run: Any, batches: Batches, x_eval: torch.Tensor, start: int, callbacks: Sequence[Any],
                cancel: threading.Event | None) -> tuple[str, str, int, int]:
    """The trainer's steps from `start` to the end, a cancel or a non-finite loss: (status, message, step of the last
    good checkpoint, steps done). `run` is the trainer's run folder (config, model, optimizers, history, checkpoint());
    the losses are looked at (LossWatch) before anything is recorded or saved."""
    config, model, optimizer = run.config, run.model, run.optimizers[0]
    watch, last_good, step = LossWatch(), start, start

    def diverged() -> tuple[str, str, int, int] | None:
        bad = watch.first_non_finite()
        if bad is None:
            return None
        return "diverged", f"loss became {bad[1]} at step {bad[0]}; kept the checkpoint of step {last_good}", last_good, bad[0]

    try:
        while step < config.steps:
            x = batches.next()
            loss, logs, out = model.loss(x, step, lazy=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            logs.update(model.auxiliary_step(out, lazy=True))
            watch.add(step, logs["loss"])
            step += 1
            step_logs = StepLogs(logs)
            for cb in callbacks:
                cb.on_step(step=step, logs=step_logs)
            record = step % config.eval_every == 0 or step == config.steps
            save = bool(config.checkpoint_every) and step % config.checkpoint_every == 0 and step < config.steps
            if (record or save or watch.full or _cancelled(cancel)) and (bad := diverged()):
                return bad
            if record:
                run.history.append({"step": step, "train_loss": step_logs["loss"], **eval_record(model, x_eval)})
                for cb in callbacks:
                    cb.on_eval(step=step, record=run.history[-1])
            if _cancelled(cancel):
                return diverged() or ("cancelled", f"cancelled at step {step}", last_good, step)
            if save:
                batches.settle()
                run.checkpoint(step, "running")
                last_good = step
    except Exception:  # a non-finite loss not yet looked at explains an error after it (NaN weights in a solver)
        bad = None
        with contextlib.suppress(Exception):
            bad = diverged()
        if bad:
            return bad
        raise
    return "complete", "", last_good, step
