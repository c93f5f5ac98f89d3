"""The training batches of a run, prepared while the device computes, in exactly the order the synchronous loop drew them.

Every batch is `dataset.render(dataset.sample_factors(batch_size, rng))` with the run's numpy generator, as the
trainer always drew them; what changes is where and when:

- "sync": in the loop, on the host (the loop waits for each render);
- "thread": a background thread draws and renders the next batches (AHEAD of them) while the loop trains; on CUDA
  each lands in pinned memory and is copied with `non_blocking=True`, so the copy overlaps the compute too;
- "device": the factors are drawn on the host (a few microseconds) and the images drawn by torch on the device
  (`render_torch`: Shapes2D's sprite table and Shapes3D's tables live there), queued behind the running step like
  any other kernel; no image crosses the bus.

"sync" and "thread" give the same float32 arrays bit for bit (the same numpy code on the same factors). "device"
gives the same factors; Shapes2D's pixels are identical (0 or 1), Shapes3D's agree to float rounding (a float32
matrix product on another backend, about 1e-7).

The run's generator is checkpointed with the run, so it must say how far the loop has consumed, not how far the
thread has drawn: the thread draws from its own copy and hands each batch out with the generator state after it;
`settle()` puts that state into the run's generator before a checkpoint is written.
"""

from __future__ import annotations

import copy
import queue
import threading

import numpy as np
import torch

from mtc_core.data import GroundTruthDataset

MODES = ("sync", "thread", "device")
AHEAD = 2  # batches the thread keeps ready


def choose_mode(dataset: GroundTruthDataset, device: torch.device) -> str:
    """On CUDA: "device" where the dataset has a torch renderer, else "thread". On the CPU: "sync": the host is the
    device, so a render thread only overlaps a step where a core stands idle, and competes with torch's threads (and a
    sweep's other runs) where none does (bench/RESULTS.md, "Per-step host overhead (issue 23)")."""
    if device.type == "cuda":
        return "device" if hasattr(dataset, "render_torch") else "thread"
    return "sync"


class Batches:
    """`next()` -> the next training batch `[B, C, H, W]` float32 on `device`; `settle()` before a checkpoint; `close()`
    at the end (stops the thread)."""

    def __init__(self, dataset: GroundTruthDataset, batch_size: int, rng: np.random.Generator, device: torch.device,
                 mode: str | None = None):
        self.dataset, self.batch_size, self.rng, self.device = dataset, batch_size, rng, device
        self.mode = mode or choose_mode(dataset, device)
        if self.mode not in MODES:
            raise ValueError(f"batch mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "device" and not hasattr(dataset, "render_torch"):
            raise ValueError(f"dataset {dataset.name!r} has no torch renderer: use 'thread' or 'sync'")
        self._state = None  # the generator state after the last batch handed out (thread mode)
        self._thread: threading.Thread | None = None
        if self.mode == "thread":
            self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._produce, args=(copy.deepcopy(rng),), daemon=True, name="mtc-batches")
            self._thread.start()

    def next(self) -> torch.Tensor:
        if self.mode == "sync":
            return torch.from_numpy(self.dataset.render(self.dataset.sample_factors(self.batch_size, self.rng))).to(self.device)
        if self.mode == "device":
            factors = torch.from_numpy(self.dataset.sample_factors(self.batch_size, self.rng))
            if self.device.type == "cuda":
                factors = factors.pin_memory()
            return self.dataset.render_torch(factors.to(self.device, non_blocking=True))
        images, self._state = self._queue.get()
        if isinstance(images, BaseException):
            raise images
        return images.to(self.device, non_blocking=True) if self.device.type == "cuda" else images

    def _produce(self, rng: np.random.Generator) -> None:
        """The thread: draw, render (and pin) batches until stopped; an error is handed to `next()` to raise."""
        pin = self.device.type == "cuda"
        try:
            while not self._stop.is_set():
                factors = self.dataset.sample_factors(self.batch_size, rng)
                images = torch.from_numpy(self.dataset.render(factors))
                self._put((images.pin_memory() if pin else images, rng.bit_generator.state))
        except BaseException as error:  # noqa: BLE001 - handed to the loop, which raises it
            self._put((error, None))

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def settle(self) -> None:
        """Put into the run's generator the state after the batches handed out so far (what a checkpoint must hold)."""
        if self._state is not None:
            self.rng.bit_generator.state = self._state

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
