"""Save and load a run: the model rebuilt from its registry key and config, validated before anything is allocated.

Loading checks the config's sizes (models.base.SIZE_LIMITS, data.spec.DATASET_LIMITS), then the weights' header
against the shapes of the model the config describes (built on the meta device, which allocates nothing), and only
then builds the model and reads the data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mtc_core.data.spec import check_dataset_spec, short_repr
from mtc_core.models import MODELS, VAE, model_class
from mtc_core.models.base import MAX_PARAMETERS, meta_model
from mtc_core.runs.files import (
    CONFIG,
    FORMAT_VERSION,
    METRICS,
    STALE_TMP_SECONDS,
    STATUSES,
    WEIGHTS,
    CheckpointError,
    clean_orphans,
    package_versions,
    read_json,
    write_history,
    write_json,
)
from mtc_core.runs.weights import read_tensors, save_weights


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


def read_run_config(path: str | Path) -> dict[str, Any]:
    """config.json of a run directory, validated: format version, model key and config fields (bounded), dataset spec."""
    file = Path(path) / CONFIG
    config = read_json(file)
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(config).__name__}")
    version = config.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # not True, which equals 1
        raise CheckpointError(f"{file}: format_version {short_repr(version)} is not supported (this mtc_core reads {FORMAT_VERSION})")
    spec = config.get("model")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{file}: 'model' must be an object with the model's registry key and params, got {short_repr(spec)}")
    if not isinstance(spec.get("name"), str) or spec["name"] not in MODELS:
        raise CheckpointError(f"{file}: unknown model key {short_repr(spec.get('name'))}; known: {sorted(MODELS)}")
    if not isinstance(spec.get("params", {}), dict):
        raise CheckpointError(f"{file}: model params must be an object, got {short_repr(spec.get('params'))}")
    if "dataset" in config:
        try:
            check_dataset_spec(config["dataset"])
        except ValueError as e:
            raise CheckpointError(f"{file}: {e}") from None
    if not isinstance(config.get("auxiliary_weights", True), bool):
        raise CheckpointError(f"{file}: auxiliary_weights must be true or false, got {short_repr(config['auxiliary_weights'])}")
    return config


def check_run_state(config: dict[str, Any], file: Path) -> None:
    """A run config's status (one of STATUSES) and step (an integer >= 0), each optional: what a listing shows of a
    run. Loading a model needs neither; a table of runs does (a number where a word belongs breaks its column).
    CheckpointError naming the field."""
    status, step = config.get("status"), config.get("step")
    if status is not None and (not isinstance(status, str) or status not in STATUSES):
        raise CheckpointError(f"{file}: status {short_repr(status)} is not one of {', '.join(STATUSES)}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise CheckpointError(f"{file}: step {short_repr(step)} is not an integer >= 0")


def model_config(config: dict[str, Any], file: Path) -> Any:
    """The model's config dataclass from a validated run config; CheckpointError naming a bad or oversized field."""
    spec = config["model"]
    try:
        return model_class(spec["name"]).Config.from_dict(dict(spec.get("params", {})))
    except (TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(f"{file}: invalid model config: {e}") from None


def expected_tensors(config: dict[str, Any], model_cfg: Any, file: Path) -> dict[str, torch.Tensor]:
    """The weights a run's model needs, as meta tensors (no memory), without the training-only nets of an
    inference-only copy (the zoo: `"auxiliary_weights": false`)."""
    cls = model_class(config["model"]["name"])
    meta = meta_model(cls, model_cfg)
    expected = meta.state_dict()
    count = sum(t.numel() for t in expected.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{file}: the model config describes {count:,} parameters, over the limit of {MAX_PARAMETERS:,}")
    if config.get("auxiliary_weights") is False:
        expected = {k: v for k, v in expected.items() if not k.startswith(meta.auxiliary_prefixes)}
    return expected


def load_run(path: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """Validate a run directory and rebuild its model from the registry. Returns (model in eval mode, config).

    Order: config (sizes bounded), the weights' header against the shapes the config implies, then the model is
    built and the weights read. Temporary files a dead writer left behind are removed first."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a run directory")
    clean_orphans(path, older_than=STALE_TMP_SECONDS)
    config = read_run_config(path)
    model_cfg = model_config(config, path / CONFIG)
    expected = expected_tensors(config, model_cfg, path / CONFIG)
    tensors = read_tensors(path / WEIGHTS, expected, config["model"]["name"])
    try:
        model = model_class(config["model"]["name"])(model_cfg)
        model.load_state_dict(tensors, strict=len(expected) == len(model.state_dict()))
        model = model.to(device)
    except (RuntimeError, MemoryError) as e:  # out of memory on the device, most likely
        raise CheckpointError(f"{path}: the model could not be built on {device} ({type(e).__name__}: {e})") from None
    return model.eval(), config
