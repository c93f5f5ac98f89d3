"""Training checkpoints (docs/design.md, "Checkpoints"): one file, one atomic unit, so that a resume is exact or refuses.

`checkpoint.safetensors` in a run directory holds everything a run needs to continue at one step: the model's
weights (`model.*`), the Adam moments of every optimiser (`optim.<k>.<param index>.<key>`), the torch generator of
the model's noise (`torch_rng`) and, in the header's metadata, the step, the numpy generator, the run's identity
(model and its resolved config, train config, dataset spec, device type) and how many history records it had. It is
written to a temporary file and renamed, so a kill at any moment leaves the previous checkpoint or this one whole.

A checkpoint resumes on another device type (written on CUDA, resumed on the CPU, or the reverse: a sweep's retry on a
mixed cluster): weights and Adam moments are mapped to the new device and the numpy generator (data sampling) is
restored, so the run continues exactly up to device numerics. The noise generator lives on the device and its state
cannot cross device types; it is reseeded deterministically from the run's seed and the step (`reseeded_noise`), and
the run says so in config.json (`resume_notes`, carried by every later checkpoint).

The trainer writes history.jsonl before the checkpoint (so history.jsonl always holds every record up to the
checkpoint's step) and model.safetensors and config.json after it (what readers load); a resume takes the records up
to the checkpoint's step and refuses when some are missing.

Runs made before this format kept `trainer_state.safetensors` and `trainer_state.json` beside model.safetensors,
written one after the other. They resume only when the four files visibly belong to one checkpoint: config.json and
trainer_state.json name the same step, and the files were written in the order the old trainer wrote them
(modification times: weights, trainer state tensors, trainer state JSON, config). A kill between two of those
writes breaks one of the two conditions, and the resume refuses instead of mixing two steps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtc_core import runs

CHECKPOINT = "checkpoint.safetensors"
LEGACY_STATE, LEGACY_TENSORS = "trainer_state.json", "trainer_state.safetensors"
RUN_FILES = (runs.WEIGHTS, runs.CONFIG, runs.METRICS, runs.HISTORY, CHECKPOINT, LEGACY_STATE, LEGACY_TENSORS)
# Train settings a resume may change: how long, where and how often to save; everything else changes what is computed.
RESUME_MAY_CHANGE = ("steps", "device", "num_threads", "checkpoint_every")
MAX_RNG_STATE_BYTES = 1 << 20  # a torch generator state of another device type (CPU: 5,056 bytes, CUDA: 16)
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")  # what torch.optim.Adam keeps per parameter
_OPTIM_NAME = re.compile(r"optim\.(\d+)\.(\d+)\.(\w+)")


def run_files(run_dir: str | Path) -> list[str]:
    """The names of a run's own files present in `run_dir` (what a new training would overwrite)."""
    run_dir = Path(run_dir)
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def remove_run_files(run_dir: str | Path) -> None:
    """Delete a run's own files (not anything else the folder holds) before training a new run into it."""
    for name in run_files(run_dir):
        (Path(run_dir) / name).unlink()


def has_checkpoint(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / CHECKPOINT).is_file() or (run_dir / LEGACY_STATE).is_file()


def save(run_dir: Path, *, step: int, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], rng: np.random.Generator,
         noise: torch.Generator, run: dict[str, Any], history_records: int) -> None:
    """Write the checkpoint of `step` atomically; `run` identifies the run (see `check_same_run`)."""
    tensors = {f"model.{name}": t for name, t in runs.state_tensors(model).items()}
    tensors["torch_rng"] = noise.get_state()
    groups = []
    for k, opt in enumerate(optimizers):
        state = opt.state_dict()
        groups.append(state["param_groups"])
        for idx, values in state["state"].items():
            for key, value in values.items():
                tensors[f"optim.{k}.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"step": step, "param_groups": groups, "numpy_rng": rng.bit_generator.state, "history_records": history_records,
            "run": run}
    runs.atomic_save_file(tensors, run_dir / CHECKPOINT, metadata={"mtc_checkpoint": json.dumps(meta, allow_nan=False)})
    for name in (LEGACY_TENSORS, LEGACY_STATE):  # superseded: a later resume must not find an older format beside it
        (run_dir / name).unlink(missing_ok=True)


def restore(run_dir: Path, *, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], rng: np.random.Generator,
            noise: torch.Generator, run: dict[str, Any], steps: int) -> tuple[int, list[dict]]:
    """Load the run's last checkpoint into model, optimisers and generators after checking that it belongs to the run
    `run` describes and reaches at most `steps`. Returns (its step, the history records up to it).
    CheckpointError (a ValueError) naming the problem; nothing is changed on a refusal.

    A checkpoint of another device type reseeds `noise` (see the module docstring) and appends a sentence saying so to
    run["resume_notes"], which also receives the notes of earlier resumes the checkpoint carries."""
    if (run_dir / CHECKPOINT).is_file():
        tensors, meta = _read_checkpoint(run_dir / CHECKPOINT, model, optimizers, noise, run)
    else:
        tensors, meta = _read_legacy(run_dir, model, optimizers, noise, run)
    where = run_dir / (CHECKPOINT if (run_dir / CHECKPOINT).is_file() else LEGACY_STATE)
    step = meta["step"]
    if step > steps:
        raise runs.CheckpointError(f"{where}: the checkpoint is at step {step}, beyond the {steps} steps asked for")
    history = _history_up_to(run_dir, step, meta.get("history_records"))
    _check_param_groups(meta["param_groups"], optimizers, where)
    saved_rng = np.random.default_rng()
    try:
        saved_rng.bit_generator.state = meta["numpy_rng"]
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise runs.CheckpointError(f"{where}: unusable numpy generator state ({type(e).__name__}: {e})") from None
    metrics = run_dir / runs.METRICS
    if metrics.is_file() and not isinstance(runs.read_json(metrics), dict):
        raise runs.CheckpointError(f"{metrics}: expected a JSON object")
    # Everything is validated: from here on nothing can fail half-way.
    model.load_state_dict({name[len("model."):]: t for name, t in tensors.items() if name.startswith("model.")})
    for k, opt in enumerate(optimizers):
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            match = _OPTIM_NAME.fullmatch(name)
            if match and int(match[1]) == k:
                # a copy: the loaded tensor maps the file, Adam updates its moments in place
                state.setdefault(int(match[2]), {})[match[3]] = value.clone()
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    saved_device = meta["run"].get("device") if isinstance(meta.get("run"), dict) else None
    notes = [n for n in meta["run"].get("resume_notes", []) if isinstance(n, str)] if isinstance(meta.get("run"), dict) else []
    if _other_device(saved_device, noise):
        seed = reseeded_noise(noise, run["train"].get("seed", 0), step)
        notes.append(f"resumed at step {step} on {noise.device.type} from a checkpoint written on {saved_device}: weights, "
                     f"optimiser moments and the data sampler continue exactly; the {saved_device} noise generator's state "
                     f"cannot cross device types, so the noise stream was reseeded deterministically from the seed and the "
                     f"step ({seed})")
    else:
        noise.set_state(tensors["torch_rng"])
    if notes:
        run["resume_notes"] = notes
    rng.bit_generator.state = saved_rng.bit_generator.state
    return step, history


def reseeded_noise(noise: torch.Generator, seed: int, step: int) -> int:
    """Seed `noise` from the run's seed and the step (the same pair always gives the same stream); returns the seed."""
    value = int(np.random.SeedSequence([int(seed), int(step), 0x6E6F6973]).generate_state(1, np.uint64)[0] >> 1)
    noise.manual_seed(value)
    return value


def _other_device(saved: Any, noise: torch.Generator) -> bool:
    return isinstance(saved, str) and saved != noise.device.type


def _rng_expectation(file: Path, header: dict, saved_device: Any, noise: torch.Generator) -> torch.Tensor:
    """What torch_rng must be: the state of `noise` itself, or for a checkpoint of another device type a uint8 vector of
    at most MAX_RNG_STATE_BYTES (it is not loaded into `noise`, whose device cannot take it)."""
    state = noise.get_state()
    if not _other_device(saved_device, noise):
        return torch.empty(state.shape, dtype=state.dtype, device="meta")
    info = header.get("torch_rng")
    if info is None or info.dtype != "U8" or len(info.shape) != 1 or not 0 < info.shape[0] <= MAX_RNG_STATE_BYTES:
        raise runs.CheckpointError(f"{file}: torch_rng must be a uint8 vector of at most {MAX_RNG_STATE_BYTES} bytes")
    return torch.empty(info.shape, dtype=torch.uint8, device="meta")


def check_same_run(saved: Any, run: dict[str, Any], where: Path) -> None:
    """CheckpointError listing what differs between the run a checkpoint belongs to and the one asked for: the model
    (registry key and resolved config), the dataset spec and every train setting outside RESUME_MAY_CHANGE. The device
    type may change (`restore` maps the state to the new device)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict):
        raise runs.CheckpointError(f"{where}: the checkpoint does not say which run it belongs to")
    saved, run = _json(saved), _json(run)
    differences = []
    for key in ("model", "dataset"):
        if saved.get(key) != run[key]:
            differences.append(f"{key} {_describe(saved.get(key))} -> {_describe(run[key])}")
    ignored = {"model", "model_params", "dataset", *RESUME_MAY_CHANGE}  # model and dataset are compared resolved, above
    for key in sorted((set(saved["train"]) | set(run["train"])) - ignored):
        if saved["train"].get(key) != run["train"].get(key):
            differences.append(f"{key} {saved['train'].get(key)!r} -> {run['train'].get(key)!r}")
    if differences:
        made_by = f" (it was made by: {saved['command']})" if isinstance(saved.get("command"), str) and saved["command"] else ""
        raise runs.CheckpointError(f"{where.parent}: cannot resume a different run: {'; '.join(differences)}{made_by}; "
                                 f"resume with the settings it was trained with, or train into another folder")


def device_type(device: Any) -> str | None:
    """"cpu" / "cuda" of a device name as a run records it ("cuda:0"); None for anything else."""
    try:
        return torch.device(device).type if isinstance(device, str) else None
    except RuntimeError:
        return None


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _describe(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"name", "params"}:
        return f"{value['name']} {json.dumps(value['params'], sort_keys=True)}"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else repr(value)


def _expected_optimizer_tensors(names: list[str], optimizers: list[torch.optim.Optimizer], where: Path) -> dict[str, torch.Tensor]:
    """Shapes and dtypes the optimiser entries must have: Adam's step is a scalar, its moments have the parameter's
    shape. A parameter has all of ADAM_STATE or none (Adam creates them at its first update)."""
    params = [[p for group in opt.param_groups for p in group["params"]] for opt in optimizers]
    expected, keys_of = {}, {}
    for name in names:
        match = _OPTIM_NAME.fullmatch(name)
        if not match or int(match[1]) >= len(optimizers) or int(match[2]) >= len(params[int(match[1])]) or match[3] not in ADAM_STATE:
            raise runs.CheckpointError(f"{where}: unexpected tensor {name!r} (this run has {len(optimizers)} Adam optimiser(s))")
        param = params[int(match[1])][int(match[2])]
        shape = () if match[3] == "step" else tuple(param.shape)
        expected[name] = torch.empty(shape, dtype=torch.float32 if match[3] == "step" else param.dtype, device="meta")
        keys_of.setdefault((match[1], match[2]), set()).add(match[3])
    for (k, idx), keys in keys_of.items():
        if keys != set(ADAM_STATE):
            raise runs.CheckpointError(f"{where}: optimiser {k} parameter {idx} has state {sorted(keys)}, expected {list(ADAM_STATE)}")
    return expected


def _read_exact(file: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's tensors, which must be exactly `expected` in names, shapes and dtypes (a resume casts nothing)."""
    header, _ = runs.read_safetensors_header(file)
    for name, want in expected.items():
        if name in header and runs.DTYPES[header[name].dtype][0] != want.dtype:
            raise runs.CheckpointError(f"{file}: tensor {name} has dtype {runs.DTYPES[header[name].dtype][0]}, the run needs {want.dtype}")
    return runs.read_tensors(file, expected, "this run's checkpoint")


def _model_expectation(model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + name: torch.empty(t.shape, dtype=t.dtype, device="meta") for name, t in model.state_dict().items()}


def _read_checkpoint(file: Path, model, optimizers, noise, run) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    header, metadata = runs.read_safetensors_header(file)
    if "mtc_checkpoint" not in metadata:
        raise runs.CheckpointError(f"{file}: not an mtc_core checkpoint (no mtc_checkpoint metadata)")
    meta = _check_meta(runs.parse_json(metadata["mtc_checkpoint"], f"{file} metadata"), file)
    check_same_run(meta.get("run"), run, file)  # before the tensors: another run's are refused by what differs, not by shape
    expected = {**_model_expectation(model, "model."), "torch_rng": _rng_expectation(file, header, meta["run"].get("device"), noise),
                **_expected_optimizer_tensors([n for n in header if n.startswith("optim.")], optimizers, file)}
    return _read_exact(file, expected), meta


def _check_meta(meta: Any, where: Path) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise runs.CheckpointError(f"{where}: trainer state must be a JSON object, got {type(meta).__name__}")
    step, records = meta.get("step"), meta.get("history_records", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise runs.CheckpointError(f"{where}: trainer state has step {runs.short_repr(step)}, expected an integer >= 0")
    if records is not None and (isinstance(records, bool) or not isinstance(records, int) or records < 0):
        raise runs.CheckpointError(f"{where}: trainer state has history_records {runs.short_repr(records)}, expected an integer >= 0")
    if not isinstance(meta.get("param_groups"), list) or not isinstance(meta.get("numpy_rng"), dict):
        raise runs.CheckpointError(f"{where}: trainer state needs param_groups (a list) and numpy_rng (an object)")
    return meta


def _check_param_groups(saved: list, optimizers: list[torch.optim.Optimizer], where: Path) -> None:
    """The saved optimiser settings must be those of the optimisers now built (the same parameters, learning rates,
    betas...); a key one torch version has and another lacks is not a difference."""
    if len(saved) != len(optimizers):
        raise runs.CheckpointError(f"{where}: the checkpoint has {len(saved)} optimiser(s), this run {len(optimizers)}")
    for k, (groups, opt) in enumerate(zip(saved, optimizers, strict=True)):
        current = _json(opt.state_dict()["param_groups"])
        if not isinstance(groups, list) or len(groups) != len(current) or not all(isinstance(g, dict) for g in groups):
            raise runs.CheckpointError(f"{where}: optimiser {k}'s parameter groups do not match this run's")
        for group, now in zip(groups, current, strict=True):
            differing = sorted(key for key in set(group) & set(now) if group[key] != now[key])
            if "params" not in group or differing:
                raise runs.CheckpointError(f"{where}: optimiser {k}'s settings differ from this run's: {differing or ['params']}")


def _history_up_to(run_dir: Path, step: int, recorded: int | None) -> list[dict]:
    history = []
    for record in runs.read_history(run_dir):
        value = record.get("step")
        if isinstance(value, bool) or not isinstance(value, int):
            raise runs.CheckpointError(f"{run_dir / runs.HISTORY}: a record without an integer step: {runs.short_repr(record)}")
        if value <= step:
            history.append(record)
    if recorded is not None and len(history) < recorded:
        raise runs.CheckpointError(f"{run_dir / runs.HISTORY}: {len(history)} records up to step {step}, the checkpoint was "
                                 f"written after {recorded}; the history was cut, so the run cannot be resumed exactly")
    return history


def _read_legacy(run_dir: Path, model, optimizers, noise, run) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The old format's four files as one checkpoint, when they provably are one (see the module docstring)."""
    files = [run_dir / name for name in (runs.WEIGHTS, LEGACY_TENSORS, LEGACY_STATE, runs.CONFIG)]
    for file in files:
        if not file.is_file():
            raise runs.CheckpointError(f"{file}: missing file (needed to resume a run of the older checkpoint format)")
    config = runs.read_run_config(run_dir)
    meta = _check_meta(runs.read_json(run_dir / LEGACY_STATE), run_dir / LEGACY_STATE)
    times = [file.stat().st_mtime_ns for file in files]
    if config.get("step") != meta["step"] or times != sorted(times):
        raise runs.CheckpointError(
            f"{run_dir}: its last checkpoint (older format: {', '.join(f.name for f in files)}) was interrupted between two "
            f"of its files (config.json at step {runs.short_repr(config.get('step'))}, {LEGACY_STATE} at step {meta['step']}"
            f"{'' if times == sorted(times) else ', written out of order'}), so it cannot be resumed exactly; train it again "
            f"into another folder or overwrite it")
    saved = {"model": config.get("model"), "train": config.get("train"), "dataset": config.get("dataset"),
             "device": device_type(config.get("device")), "command": config.get("command")}
    check_same_run(saved, run, run_dir / runs.CONFIG)
    header, _ = runs.read_safetensors_header(run_dir / LEGACY_TENSORS)
    expected = {"torch_rng": _rng_expectation(run_dir / LEGACY_TENSORS, header, saved["device"], noise),
                **{name[len("optim."):]: t for name, t in _expected_optimizer_tensors(
                    [f"optim.{n}" for n in header if n != "torch_rng"], optimizers, run_dir / LEGACY_TENSORS).items()}}
    tensors = {f"optim.{name}" if name != "torch_rng" else name: t for name, t in _read_exact(run_dir / LEGACY_TENSORS, expected).items()}
    weights = _read_exact(run_dir / runs.WEIGHTS, _model_expectation(model))
    tensors.update({f"model.{name}": t for name, t in weights.items()})
    return tensors, {**meta, "history_records": None, "run": saved}
