"""The trainer shared by the CLI, the app and the sweeps.

It knows nothing about a model beyond the base VAE's hooks, and nothing about
who watches: a tqdm bar and a Streamlit progress bar are both `Callback`s.
Each run lives in a run directory (mtc_core.io); a checkpoint is one atomic file
(mtc_core.checkpoint), a NaN or inf loss stops the run and keeps the last good
checkpoint, a cancel stops it and keeps the current weights, and `resume=True`
continues an interrupted run exactly where its last checkpoint left it, or
refuses. A folder holding a run is never overwritten without `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtc_core import checkpoint as ckpt
from mtc_core import io
from mtc_core.data import GroundTruthDataset, make_dataset
from mtc_core.estimators import drop_constant_dims, gaussian_tc
from mtc_core.models import VAE, build_model, model_class
from mtc_core.models.base import dataclass_from_dict, gaussian_kl

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
        resolve_device(self.device)
        if not isinstance(self.model_params, dict):
            raise ValueError(f"model_params must be a dict of the model's config fields, got {io.short_repr(self.model_params)}")
        try:  # unknown fields and sizes over models.base.SIZE_LIMITS, before any work
            model_class(self.model).Config.from_dict(dict(self.model_params))
        except TypeError as e:
            raise ValueError(f"model_params: {e}") from None
        io.check_dataset_spec(self.dataset)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, params)


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
        raise ValueError(f"image_shape {io.short_repr(shape)} does not match the dataset's images {list(dataset.image_shape)}; "
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
        if not (ckpt.has_checkpoint(out) or (out / io.CONFIG).is_file()):
            raise ValueError(f"--resume: {out} holds no run to resume")
    elif not overwrite and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty: pass --resume to continue the run in it, --overwrite to replace it, "
                         f"or choose another folder")


class Callback:
    """Hooks the trainer calls; override what you need. Return values are ignored."""

    def on_start(self, *, run_dir: Path, config: TrainConfig, start_step: int) -> None: ...

    def on_step(self, *, step: int, logs: dict[str, float]) -> None: ...

    def on_eval(self, *, step: int, record: dict[str, Any]) -> None: ...

    def on_end(self, *, status: str, message: str, step: int, run_dir: Path) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # complete | cancelled | diverged
    message: str
    step: int  # steps completed
    history: list[dict]
    model: VAE


@torch.no_grad()
def eval_record(model: VAE, x: torch.Tensor) -> dict[str, Any]:
    """Loss terms and the two TCs on a held-out batch: what history.jsonl records.

    The TCs of the mean and of the sampled codes use one estimator on the same points (the Gaussian TC of
    np.cov over the batch, as `evaluate`'s; DESIGN 1.4), so the curves compare like with like. The minibatch
    MSS/MWS estimates are training signals, biased at a batch far smaller than the dataset, and not logged.
    """
    was_training = model.training
    model.eval()
    mu, logvar = model.encode(x)
    z = model.reparameterise(mu, logvar)
    recon = model.reconstruction(x, model.decode(z)).item()
    kl_per_dim = gaussian_kl(mu, logvar).mean(0)
    model.train(was_training)
    mu_np, z_np = mu.detach().double().cpu().numpy(), z.detach().double().cpu().numpy()
    return {
        "recon": recon,
        "kl": kl_per_dim.sum().item(),
        "elbo": -(recon + kl_per_dim.sum().item()),
        "kl_per_dim": kl_per_dim.tolist(),
        **{f"tc_gaussian_{code}": batch_gaussian_tc(codes) for code, codes in (("mean", mu_np), ("sampled", z_np))},
        "tc_n": x.shape[0],
        "active_dims": int((mu.var(0) > 0.01).sum().item()),  # Var_x(mu_j) > 0.01 (Burda et al. 2016)
    }


def batch_gaussian_tc(codes: np.ndarray) -> float | None:
    """Gaussian TC of codes [B, D] over their non-constant latents; None when fewer than two vary, or when the codes
    are not finite (a run diverging at an eval step: the next step's loss check stops it as "diverged")."""
    if not np.isfinite(codes).all():
        return None
    kept, _ = drop_constant_dims(codes)
    if kept.shape[1] < 2:
        return None
    return gaussian_tc(np.cov(kept, rowvar=False))


def history_tc(record: dict, code: str) -> float | None:
    """The Gaussian TC of the `code` ("mean" | "sampled") codes of one history record, None when not logged.

    Histories written before the TCs were logged alike kept the same Gaussian TC of the mean codes as "tc_mean"
    (a ridge of 1e-8 apart); their "tc_sampled" was the minibatch MSS, biased at batch 512 against the dataset
    size (negative on most Shapes2D runs), so it is not read.
    """
    value = record.get(f"tc_gaussian_{code}", record.get("tc_mean") if code == "mean" else None)
    return value if isinstance(value, int | float) else None


def _optimizers(model: VAE, main: torch.optim.Optimizer) -> list[torch.optim.Optimizer]:
    return [main, *([model.disc_optimizer] if hasattr(model, "disc_optimizer") else [])]


def train(config: TrainConfig, run_dir: str | Path, *, callbacks: tuple[Callback, ...] | list[Callback] = (),
          cancel: threading.Event | None = None, command: str = "", resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train `config` into `run_dir`.

    A folder that already holds a run (a file of checkpoint.RUN_FILES) is never overwritten silently: resume=True
    continues it from its last checkpoint, exactly, or raises CheckpointError when the checkpoint is damaged or
    belongs to another run (model, dataset, train settings); overwrite=True replaces it; otherwise ValueError.
    resume=True on a folder without a run starts one (a sweep passes it for every run). Everything is validated
    before the folder is touched."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a folder")
    existing = ckpt.run_files(run_dir) if run_dir.is_dir() else []
    if existing and not (resume or overwrite):
        raise ValueError(f"{run_dir} already holds a run ({', '.join(existing)}): resume it, overwrite it explicitly, "
                         f"or train into another folder")
    resuming = resume and ckpt.has_checkpoint(run_dir)
    if resume and not resuming and {io.CONFIG, io.WEIGHTS} & set(existing):
        raise io.CheckpointError(f"{run_dir} holds a run without a checkpoint to resume from (a zoo copy keeps no optimiser "
                                 f"state); train into another folder, or overwrite it")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    dataset = make_dataset(config.dataset)
    rng = np.random.default_rng(config.seed)
    eval_rng = np.random.default_rng([config.seed, 1])  # held-out batch, independent of the training stream
    x_eval = torch.from_numpy(dataset.render(dataset.sample_factors(config.eval_size, eval_rng))).to(device)

    params = resolved_model_params(config, dataset)
    with _INIT_LOCK:  # initialisation draws from torch's global RNG: seed and build without another thread between
        torch.manual_seed(config.seed)
        model = build_model(config.model, params).to(device)
    model.noise = torch.Generator(device).manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.vae_parameters(), lr=config.lr)
    optimizers = _optimizers(model, optimizer)
    run_config = {
        "model": {"name": config.model},
        "train": dataclasses.asdict(config),
        "dataset": dataset.spec(),
        "command": command,
        "device": str(device),
    }
    identity = {"model": {"name": config.model, "params": io.model_params(model)}, "train": run_config["train"],
                "dataset": run_config["dataset"], "device": device.type, "command": command}

    start, history = 0, []
    if resuming:
        start, history = ckpt.restore(run_dir, model=model, optimizers=optimizers, rng=rng, noise=model.noise, run=identity,
                                      steps=config.steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    io.clean_orphans(run_dir)  # this trainer owns the folder now: a temporary file in it is from a writer that died
    if existing and not resuming:  # the run being replaced (overwrite), or what a first checkpoint left before a kill
        ckpt.remove_run_files(run_dir)

    def checkpoint(step: int, status: str, message: str = "", weights: bool = True) -> None:
        # Order matters for a kill at any point: history first (it then holds every record up to the checkpoint's
        # step), the checkpoint as one atomic file, then the files readers load.
        io.write_history(run_dir, history)
        if weights:
            ckpt.save(run_dir, step=step, model=model, optimizers=optimizers, rng=rng, noise=model.noise, run=identity,
                      history_records=len(history))
            io.save_weights(model, run_dir / io.WEIGHTS)
        cfg = {**run_config, "model": {"name": config.model, "params": io.model_params(model)}, "status": status,
               "message": message, "step": step, "format_version": io.FORMAT_VERSION, "versions": io.package_versions()}
        io.write_json(run_dir / io.CONFIG, cfg)

    for cb in callbacks:
        cb.on_start(run_dir=run_dir, config=config, start_step=start)
    if start == 0:
        checkpoint(0, "running")
    status, message, last_good, step = "complete", "", start, start
    t0 = time.perf_counter()
    model.train()
    while step < config.steps:
        x = torch.from_numpy(dataset.render(dataset.sample_factors(config.batch_size, rng))).to(device)
        loss, logs, out = model.loss(x, step)
        if not math.isfinite(loss.item()):
            status, message = "diverged", f"loss became {loss.item()} at step {step}; kept the checkpoint of step {last_good}"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        logs.update(model.auxiliary_step(out))
        step += 1
        for cb in callbacks:
            cb.on_step(step=step, logs=logs)
        if step % config.eval_every == 0 or step == config.steps:
            record = {"step": step, "train_loss": logs["loss"], **eval_record(model, x_eval)}
            history.append(record)
            for cb in callbacks:
                cb.on_eval(step=step, record=record)
        if cancel is not None and cancel.is_set():
            status, message = "cancelled", f"cancelled at step {step}"
            break
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            checkpoint(step, "running")
            last_good = step

    elapsed = time.perf_counter() - t0
    if status == "diverged":
        checkpoint(last_good, status, message, weights=False)
        final_step = last_good
    else:
        checkpoint(step, status, message)
        final_step = step
    metrics_path = run_dir / io.METRICS
    if step > start:  # resuming a finished run trains nothing: keep the speed it was trained at
        metrics = io.read_json(metrics_path) if metrics_path.is_file() else {}
        metrics["training"] = {"steps_per_s": (step - start) / elapsed if elapsed > 0 else None, "device": str(device)}
        io.write_json(metrics_path, io.json_safe(metrics))
    for cb in callbacks:
        cb.on_end(status=status, message=message, step=final_step, run_dir=run_dir)
    if status == "diverged":
        model, _ = io.load_run(run_dir, device)
    return TrainResult(run_dir=run_dir, status=status, message=message, step=final_step, history=history, model=model)


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
        if step % 10 == 0:
            self.bar.set_postfix(loss=f"{logs['loss']:.1f}")

    def on_eval(self, *, step, record):
        tc = {code: history_tc(record, code) for code in ("mean", "sampled")}
        self.bar.write(f"step {step}: recon {record['recon']:.2f} kl {record['kl']:.2f} Gaussian TC (n {record['tc_n']}) "
                       f"mean {tc['mean'] or 0:.3f} sampled {tc['sampled'] or 0:.3f} active {record['active_dims']}")

    def on_end(self, *, status, message, step, run_dir):
        self.bar.close()
