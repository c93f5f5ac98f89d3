"""The trainer shared by the CLI, the app and the sweeps.

It knows nothing about a model beyond the base VAE's hooks, and nothing about
who watches: a tqdm bar and a Streamlit progress bar are both `Callback`s.
Each run lives in a run directory (mtc_core.runs); a checkpoint is one atomic file
(mtc_core.runs.checkpoint), a NaN or inf loss stops the run and keeps the last good
checkpoint, a cancel stops it and keeps the current weights, and `resume=True`
continues an interrupted run exactly where its last checkpoint left it, or
refuses. A folder holding a run is never overwritten without `overwrite=True`.

The loop never waits on the host where it can help it: the next batches are prepared while a step computes
(mtc_core.training.prefetch), and the step's logs and loss stay on the device until a history record, checkpoint,
cancel or the end reads them (mtc_core.training.device_loop). On the CPU every weight is the same bit for bit as with
the plain loop (tests/test_prefetch.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtc_core import runs
from mtc_core.data import GroundTruthDataset, make_dataset
from mtc_core.models import VAE, build_model, model_class
from mtc_core.models.base import dataclass_from_dict
from mtc_core.runs import checkpoint as ckpt
from mtc_core.training.device_loop import accelerated, check_options, train_steps
from mtc_core.training.history import history_tc
from mtc_core.training.prefetch import Batches

_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class TrainConfig:
    model: str = "beta_tcvae"  # registry key in mtc_core.models.MODELS
    model_params: dict = field(default_factory=dict)  # fields of the model's config; the rest default
    dataset: dict = field(default_factory=lambda: {"name": "toy"})  # spec for mtc_core.data.make_dataset
    steps: int = 2000  # optimiser steps
    batch_size: int = 64  # images per step
    lr: float = 1e-4  # Adam learning rate (disentanglement_lib: 1e-4)
    seed: int = 0  # seeds data sampling, initialisation and noise
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    eval_every: int = 100  # steps between history records
    eval_size: int = 512  # held-out images for each history record
    checkpoint_every: int = 1000  # steps between checkpoints (0: only at the end)
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    # Speed options, off by default and written into config.json only when on (SPEED_OPTIONS); bench/RESULTS.md,
    # "Per-step host overhead (issue 23)", says what each gives.
    bf16: bool = False  # bfloat16 autocast of the networks in training steps; the loss terms and held-out records stay float32
    compile: bool = False  # torch.compile the networks (CUDA only: no gain on the CPU; seconds to minutes of compiling first)
    cudnn_benchmark: bool = False  # let cuDNN time its convolution algorithms for the run's shapes (CUDA only)

    def __post_init__(self):
        model_class(self.model)  # unknown key -> ValueError naming the known ones
        limits = {"steps": (1, 10_000_000), "batch_size": (3, 65_536), "eval_every": (1, 10_000_000),
                  "eval_size": (3, 100_000), "checkpoint_every": (0, 10_000_000), "num_threads": (0, 1024), "seed": (0, 2**32 - 1)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if not isinstance(self.lr, int | float) or not math.isfinite(self.lr) or not 0 < self.lr <= 1:
            raise ValueError(f"lr must be a number in (0, 1], got {self.lr!r}")
        for name in SPEED_OPTIONS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {runs.short_repr(getattr(self, name))}")
        if self.device == "cpu":
            check_options(compile=self.compile, cudnn_benchmark=self.cudnn_benchmark, device=torch.device("cpu"))
        resolve_device(self.device)
        if not isinstance(self.model_params, dict):
            raise ValueError(f"model_params must be a dict of the model's config fields, got {runs.short_repr(self.model_params)}")
        try:  # unknown fields and sizes over models.base.SIZE_LIMITS, before any work
            model_config = model_class(self.model).Config.from_dict(dict(self.model_params))
        except TypeError as e:
            raise ValueError(f"model_params: {e}") from None
        check_eval_size(self.eval_size, model_config.latent_dim)
        runs.check_dataset_spec(self.dataset)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, params)

    def to_dict(self) -> dict[str, Any]:
        """The config as config.json's "train" records it: every field, the speed options only when on (so the config
        of a run without them reads as before they existed, and its checkpoints resume)."""
        return without_defaults(dataclasses.asdict(self))


SPEED_OPTIONS = {"bf16": False, "compile": False, "cudnn_benchmark": False}  # field -> its default, omitted when at it


def without_defaults(train: dict[str, Any]) -> dict[str, Any]:
    """A "train" mapping without the speed options at their defaults: the form config.json and checkpoints hold, in
    which a run's settings compare equal whether or not they name the options."""
    return {k: v for k, v in train.items() if not (k in SPEED_OPTIONS and v is SPEED_OPTIONS[k])}


def check_eval_size(eval_size: int, latent_dim: int) -> None:
    """The held-out batch of each history record must hold more points than there are latents: the covariance of
    fewer is singular, and its Gaussian TC infinite."""
    if eval_size <= latent_dim:
        raise ValueError(f"eval_size {eval_size} must exceed latent_dim {latent_dim} (the Gaussian TC of a batch no larger than "
                         f"the latent size is infinite): raise eval_size above {latent_dim} or lower latent_dim")


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU. An unavailable CUDA request is a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return dev


def resolved_model_params(config: TrainConfig, dataset: GroundTruthDataset) -> dict[str, Any]:
    """The model's config fields, completed from the dataset (image shape, size, architecture)."""
    fields = {f.name for f in dataclasses.fields(model_class(config.model).Config)}
    params = dict(config.model_params)
    params.setdefault("image_shape", list(dataset.image_shape))
    params.setdefault("architecture", "conv64" if tuple(dataset.image_shape[1:]) == (64, 64) else "mlp")
    if "dataset_size" in fields:
        params.setdefault("dataset_size", len(dataset))
    shape = params["image_shape"]
    if not isinstance(shape, list | tuple) or list(shape) != list(dataset.image_shape):
        raise ValueError(f"image_shape {runs.short_repr(shape)} does not match the dataset's images {list(dataset.image_shape)}; "
                         f"leave it out to take the dataset's")
    return params


def check_out_folder(out: str | Path, *, resume: bool, overwrite: bool) -> None:
    """The command line's rule for an output folder (stricter than `train`'s): without resume it must be new or
    empty unless overwrite is given; with resume it must hold a run. ValueError naming the flag to use."""
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite replaces it: choose one")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if resume:
        if not out.is_dir():
            raise ValueError(f"--resume: {out} does not exist, so there is nothing to resume (leave out --resume to start a run)")
        if not (ckpt.has_checkpoint(out) or (out / runs.CONFIG).is_file()):
            raise ValueError(f"--resume: {out} holds no run to resume")
    elif not overwrite and out.is_dir() and any(p.name != runs.LOCK for p in out.iterdir()):
        raise ValueError(f"--out {out} is not empty: pass --resume to continue the run in it, --overwrite to replace it, "
                         f"or choose another folder")


class Callback:
    """Hooks the trainer calls; override what you need. Return values are ignored."""

    def on_start(self, *, run_dir: Path, config: TrainConfig, start_step: int) -> None: ...

    def on_step(self, *, step: int, logs: Mapping[str, float]) -> None:
        """After each step; `logs` reads each value off the device when asked for one (on a GPU a read waits for the
        step to finish: read them at an eval step, from `on_eval`'s record, where the trainer reads anyway)."""

    def on_eval(self, *, step: int, record: dict[str, Any]) -> None: ...

    def on_end(self, *, status: str, message: str, step: int, run_dir: Path) -> None: ...

    def on_failure(self, *, error: Exception) -> None:
        """The training stopped on an error, which `train` raises next (config.json then says "failed")."""


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # complete | cancelled | diverged
    message: str
    step: int  # steps completed
    history: list[dict]
    model: VAE


def _optimizers(model: VAE, main: torch.optim.Optimizer) -> list[torch.optim.Optimizer]:
    return [main, *([model.disc_optimizer] if hasattr(model, "disc_optimizer") else [])]


def _folder_policy(run_dir: Path, *, resume: bool, overwrite: bool) -> tuple[list[str], bool]:
    """(the run files already in run_dir, whether to resume from its checkpoint); refuses what `train` must not do."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a folder")
    existing = ckpt.run_files(run_dir) if run_dir.is_dir() else []
    if existing and not (resume or overwrite):
        raise ValueError(f"{run_dir} already holds a run ({', '.join(existing)}): resume it, overwrite it explicitly, "
                         f"or train into another folder")
    resuming = resume and ckpt.has_checkpoint(run_dir)
    if resume and not resuming and {runs.CONFIG, runs.WEIGHTS} & set(existing):
        raise runs.CheckpointError(f"{run_dir} holds a run without a checkpoint to resume from (a zoo copy keeps no optimiser "
                                   f"state); train into another folder, or overwrite it")
    return existing, resuming


@dataclass
class _RunFolder:
    """Everything a checkpoint holds, and how it is written into the run folder."""

    run_dir: Path
    config: TrainConfig
    model: VAE
    optimizers: list[torch.optim.Optimizer]
    rng: np.random.Generator
    run_config: dict  # config.json without what changes as the run goes (params, status, step, versions)
    identity: dict  # what a checkpoint must match to be resumed (mtc_core.runs.checkpoint.check_same_run)
    history: list[dict] = field(default_factory=list)

    def checkpoint(self, step: int, status: str, message: str = "", weights: bool = True) -> None:
        # Order matters for a kill at any point: history first (it then holds every record up to the checkpoint's
        # step), the checkpoint as one atomic file, then the files readers load.
        runs.write_history(self.run_dir, self.history)
        if weights:
            ckpt.save(self.run_dir, step=step, model=self.model, optimizers=self.optimizers, rng=self.rng,
                      noise=self.model.noise, run=self.identity, history_records=len(self.history))
            runs.save_weights(self.model, self.run_dir / runs.WEIGHTS)
        cfg = {**self.run_config, "model": {"name": self.config.model, "params": runs.model_params(self.model)}, "status": status,
               "message": message, "step": step, "format_version": runs.FORMAT_VERSION, "versions": runs.package_versions()}
        runs.write_json(self.run_dir / runs.CONFIG, cfg)

    def record_speed(self, steps: int, elapsed: float, device: torch.device) -> None:
        """metrics.json's "training": steps per second of this session (a resumed run that trained nothing keeps its own)."""
        if steps <= 0:
            return
        path = self.run_dir / runs.METRICS
        metrics = runs.read_json(path) if path.is_file() else {}
        metrics["training"] = {"steps_per_s": steps / elapsed if elapsed > 0 else None, "device": str(device)}
        runs.write_json(path, runs.json_safe(metrics))


def _build(config: TrainConfig, run_dir: Path, device: torch.device, dataset: GroundTruthDataset, command: str) -> _RunFolder:
    """The seeded model, its optimisers and noise, and the run's config and identity."""
    params = resolved_model_params(config, dataset)
    with _INIT_LOCK:  # initialisation draws from torch's global RNG: seed and build without another thread between
        torch.manual_seed(config.seed)
        model = build_model(config.model, params).to(device)
    model.noise = torch.Generator(device).manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.vae_parameters(), lr=config.lr)
    run_config = {"model": {"name": config.model}, "train": config.to_dict(), "dataset": dataset.spec(),
                  "command": command, "device": str(device)}
    identity = {"model": {"name": config.model, "params": runs.model_params(model)}, "train": run_config["train"],
                "dataset": run_config["dataset"], "device": device.type, "command": command}
    return _RunFolder(run_dir, config, model, _optimizers(model, optimizer), np.random.default_rng(config.seed), run_config, identity)


def _images(dataset: GroundTruthDataset, n: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(dataset.render(dataset.sample_factors(n, rng))).to(device)


BATCH_MODE: str | None = None  # prefetch.Batches' mode for every run (None: its choice for the device); tests and benches set it


@runs.holding_run_lock  # held from the first check to the last write; another process's train/delete/zoo-add is refused
def train(config: TrainConfig, run_dir: str | Path, *, callbacks: tuple[Callback, ...] | list[Callback] = (),
          cancel: threading.Event | None = None, command: str = "", resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train `config` into `run_dir`.

    A folder that already holds a run (a file of checkpoint.RUN_FILES) is never overwritten silently: resume=True
    continues it from its last checkpoint, exactly, or raises CheckpointError when the checkpoint is damaged or
    belongs to another run (model, dataset, train settings); overwrite=True replaces it; otherwise ValueError.
    resume=True on a folder without a run starts one (a sweep passes it for every run). Everything is validated
    before the folder is touched."""
    run_dir = Path(run_dir)
    existing, resuming = _folder_policy(run_dir, resume=resume, overwrite=overwrite)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    check_options(bf16=config.bf16, compile=config.compile, cudnn_benchmark=config.cudnn_benchmark, device=device)
    dataset = make_dataset(config.dataset)
    x_eval = _images(dataset, config.eval_size, np.random.default_rng([config.seed, 1]), device)  # held out: its own stream
    run = _build(config, run_dir, device, dataset, command)
    start = 0
    if resuming:
        start, run.history = ckpt.restore(run_dir, model=run.model, optimizers=run.optimizers, rng=run.rng, noise=run.model.noise,
                                          run=run.identity, steps=config.steps)
        if run.identity.get("resume_notes"):  # resumed on another device type (mtc_core.runs.checkpoint): config.json says so
            run.run_config["resume_notes"] = run.identity["resume_notes"]
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.clean_orphans(run_dir)  # this trainer owns the folder now: a temporary file in it is from a writer that died
    if existing and not resuming:  # the run being replaced (overwrite), or what a first checkpoint left before a kill
        ckpt.remove_run_files(run_dir)
    try:
        return _run(run, dataset, x_eval, device, start, callbacks, cancel)
    except Exception as error:  # not a kill (BaseException): that leaves the run "running", to resume
        told = _failed(run_dir, error)
        for cb in callbacks:
            with contextlib.suppress(Exception):
                cb.on_failure(error=told)
        if told is error:
            raise
        raise told from error


def _failed(run_dir: Path, error: Exception) -> Exception:
    """Leave nothing that claims to run: a run whose config.json says "running" is marked "failed" with the error (it
    resumes from its last checkpoint); a first checkpoint that never finished is removed (the lock then removes a
    folder it made, and nothing else lists an empty one). Returns the error to raise: a full disk's says what was kept."""
    reason = (runs.error_text(error) if isinstance(error, OSError) else " ".join(f"{type(error).__name__}: {error}".split()))[:500]
    kept = ""
    try:
        if (run_dir / runs.CONFIG).is_file():
            config = runs.read_json(run_dir / runs.CONFIG)
            if isinstance(config, dict) and config.get("status") in ("running", "failed"):
                kept = f"the run stays at its last checkpoint (step {config.get('step')}): resume it once there is space"
                runs.write_json(run_dir / runs.CONFIG, {**config, "status": "failed", "message": reason})
        else:
            ckpt.remove_run_files(run_dir)
            kept = "nothing of the run was kept: start it again once there is space"
    except (OSError, ValueError):  # the disk is still full: the run stays "running" (listed as interrupted), to resume
        pass
    if runs.is_disk_full(error) and kept:
        return OSError(error.errno, f"{error.strerror or 'No space left on device'}; {kept}", error.filename)
    return error


def _run(run: _RunFolder, dataset: GroundTruthDataset, x_eval: torch.Tensor, device: torch.device, start: int,
         callbacks: tuple[Callback, ...] | list[Callback], cancel: threading.Event | None) -> TrainResult:
    """The training of `train`, from its first checkpoint to its last."""
    config, run_dir, model = run.config, run.run_dir, run.model
    for cb in callbacks:
        cb.on_start(run_dir=run_dir, config=config, start_step=start)
    if start == 0:
        run.checkpoint(0, "running")

    t0 = time.perf_counter()
    model.train()
    with Batches(dataset, config.batch_size, run.rng, device, BATCH_MODE) as batches, \
            accelerated(model, bf16=config.bf16, compile=config.compile, cudnn_benchmark=config.cudnn_benchmark, device=device):
        status, message, last_good, step = train_steps(run, batches, x_eval, start, callbacks, cancel)
        batches.settle()  # the run's generator as the batches consumed left it: what the last checkpoint holds
    elapsed = time.perf_counter() - t0
    final_step = last_good if status == "diverged" else step
    run.checkpoint(final_step, status, message, weights=status != "diverged")  # a diverged run keeps its last good weights
    run.record_speed(step - start, elapsed, device)
    for cb in callbacks:
        cb.on_end(status=status, message=message, step=final_step, run_dir=run_dir)
    if status == "diverged":
        model, _ = runs.load_run(run_dir, device)
    return TrainResult(run_dir=run_dir, status=status, message=message, step=final_step, history=run.history, model=model)


class TqdmCallback(Callback):
    """A terminal progress bar for the CLI."""

    def __init__(self, total: int):
        self.total = total

    def on_start(self, *, run_dir, config, start_step):
        from tqdm import tqdm

        # Drawn only once training starts, so that a refusal before it (a run that cannot be resumed) prints one line.
        self.bar = tqdm(total=self.total, initial=start_step, unit="step")

    def on_step(self, *, step, logs):
        self.bar.update(1)

    def on_eval(self, *, step, record):
        self.bar.set_postfix(loss=f"{record['train_loss']:.1f}")  # read at the eval step: no wait on the device between
        tc = {code: history_tc(record, code) for code in ("mean", "sampled")}
        self.bar.write(f"step {step}: recon {record['recon']:.2f} kl {record['kl']:.2f} Gaussian TC (n {record['tc_n']}) "
                       f"mean {tc['mean'] or 0:.3f} sampled {tc['sampled'] or 0:.3f} active {record['active_dims']}")

    def on_end(self, *, status, message, step, run_dir):
        self.bar.close()

    def on_failure(self, *, error):
        if hasattr(self, "bar"):
            self.bar.close()  # so that the error line starts a line of its own
