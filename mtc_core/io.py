"""Run directories and checkpoints (DESIGN 2.5).

A run directory holds `model.safetensors` (weights only: never pickle),
`config.json` (format version, model and train config, dataset spec, package
versions, the command that made it, the run's status), `metrics.json` and
`history.jsonl`. Every write goes to a temporary file in the same directory and
is renamed into place, so a crash leaves the old file or the new one, never half
of one. Loading validates everything before building a model from the registry;
nothing in a file is ever executed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mtc_core.models import MODELS, VAE, build_model

FORMAT_VERSION = 1
WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.jsonl"
STATUSES = ("running", "complete", "cancelled", "diverged")
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on the JSON header


class CheckpointError(ValueError):
    """A run directory that cannot be loaded; the message names the file and the problem."""


def package_versions() -> dict[str, str]:
    from mtc_core import __version__

    return {"mtc_core": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())


def write_history(path: str | Path, records: list[dict]) -> None:
    lines = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)
    _atomic_write_bytes(Path(path) / HISTORY, lines.encode())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def read_history(path: str | Path) -> list[dict]:
    file = Path(path) / HISTORY
    if not file.is_file():
        return []
    try:
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON lines ({e})") from None


def save_weights(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None, auxiliary: bool = True) -> None:
    """Atomically write the model's state dict as safetensors (optionally cast floats, e.g. to float16;
    optionally without the training-only nets named by `model.auxiliary_prefixes`)."""
    path = Path(path)
    tensors = {}
    skip = () if auxiliary else tuple(getattr(model, "auxiliary_prefixes", ()))
    for name, t in model.state_dict().items():
        if skip and name.startswith(skip):
            continue
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_run(model: VAE, config: dict[str, Any], path: str | Path, *, history: list[dict] | None = None,
             metrics: dict | None = None, weights_dtype: torch.dtype | None = None) -> Path:
    """Write a run directory. `config` must name the model (`config["model"]["name"]`); the
    model's own config fields, the format version and package versions are filled in."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    name = config.get("model", {}).get("name")
    if name not in MODELS or not isinstance(model, MODELS[name]):
        raise ValueError(f"config['model']['name'] must be the registry key of the model ({type(model).__name__}), got {name!r}")
    full = {**config, "format_version": FORMAT_VERSION, "versions": package_versions()}
    full["model"] = {"name": name, "params": model_params(model)}
    full.setdefault("status", "complete")
    save_weights(model, path / WEIGHTS, weights_dtype)
    if history is not None:
        write_history(path, history)
    if metrics is not None:
        write_json(path / METRICS, metrics)
    write_json(path / CONFIG, full)
    return path


def model_params(model: VAE) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model.config).items()}


def _check_safetensors_file(file: Path) -> dict[str, dict]:
    """Parse the header of a safetensors file by hand so every failure gets a clear message."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing file")
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise CheckpointError(f"{file}: looks like a pickle / torch.save file; only safetensors weights are loaded (never pickle)")
        if len(head) < 8:
            raise CheckpointError(f"{file}: truncated ({size} bytes), not a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(f"{file}: not a safetensors file, or truncated (header length {n} > file size {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{file}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"{file}: truncated: the header describes {8 + n + end} bytes, the file has {size}")
    return header


def load_run(path: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """Validate a run directory and rebuild its model from the registry. Returns (model in eval mode, config)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a run directory")
    config = read_json(path / CONFIG)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / CONFIG}: expected a JSON object")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path / CONFIG}: format_version {version!r} is not supported (this mtc_core reads {FORMAT_VERSION})")
    spec = config.get("model")
    if not isinstance(spec, dict) or spec.get("name") not in MODELS:
        name = spec.get("name") if isinstance(spec, dict) else spec
        raise CheckpointError(f"{path / CONFIG}: unknown model key {name!r}; known: {sorted(MODELS)}")
    try:
        model = build_model(spec["name"], spec.get("params", {}))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: invalid model config: {e}") from None
    header = _check_safetensors_file(path / WEIGHTS)
    expected = model.state_dict()
    if config.get("auxiliary_weights") is False:  # an inference-only copy (the zoo): training-only nets were left out
        expected = {k: v for k, v in expected.items() if not k.startswith(model.auxiliary_prefixes)}
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path / WEIGHTS}: tensor names do not match {spec['name']}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        tensors = load_file(path / WEIGHTS)
    except Exception as e:  # the safetensors library's own errors are not one type
        raise CheckpointError(f"{path / WEIGHTS}: unreadable safetensors file ({e})") from None
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{path / WEIGHTS}: tensor {name} has shape {tuple(got.shape)}, the model needs {tuple(want.shape)}")
        # Half-precision weights are a legitimate compact format; anything else must match exactly.
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise CheckpointError(f"{path / WEIGHTS}: tensor {name} has dtype {got.dtype}, the model needs {want.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{path / WEIGHTS}: tensor {name} holds NaN or inf")
        tensors[name] = got.to(want.dtype)
    model.load_state_dict(tensors, strict=len(expected) == len(model.state_dict()))
    return model.to(device).eval(), config


def new_run_dir(root: str | Path, label: str) -> Path:
    """A fresh, unique run directory under root; two processes asking at once get different ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{stamp}-{label}" + (f"-{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {root}")


def list_runs(root: str | Path) -> list[Path]:
    """Run directories (those with a config.json) under root, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / CONFIG).is_file()]
    return sorted(runs, key=lambda p: (p / CONFIG).stat().st_mtime, reverse=True)


def json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become None; numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
