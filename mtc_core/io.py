"""Run directories and checkpoints (DESIGN 2.5).

A run directory holds `model.safetensors` (weights only: never pickle),
`config.json` (format version, model and train config, dataset spec, package
versions, the command that made it, the run's status), `metrics.json` and
`history.jsonl`; a run still being trained also holds `checkpoint.safetensors`
(mtc_core.train). Every write goes to a temporary file in the same directory and
is renamed into place, so a crash leaves the old file or the new one, never half
of one; temporary files a crash left behind are removed when the run is loaded.

Loading validates everything before it allocates anything: the config's sizes
are bounded (models.base.SIZE_LIMITS, DATASET_LIMITS), the weights' header is
parsed by hand and checked against the shapes of the model the config describes
(built on the meta device, which allocates nothing), and only then is the model
built and the data read. Every refusal is a `CheckpointError` naming the file
and the problem; nothing in a file is ever executed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mtc_core.models import MODELS, VAE, model_class
from mtc_core.models.base import MAX_PARAMETERS, meta_model

FORMAT_VERSION = 1
WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.jsonl"
STATUSES = ("running", "complete", "cancelled", "diverged")
# Our models have at most a few hundred tensors (a header of a few KB), checkpoints with optimiser state a few times
# more; the bound keeps a hostile header from making the loader parse a 100 MB JSON document.
MAX_HEADER_BYTES = 1_000_000
MAX_JSON_BYTES = 16_000_000  # config.json / metrics.json: a few KB in practice
MAX_HISTORY_BYTES = 64_000_000  # history.jsonl: ~1 KB per record, 150 records for a 15,000-step run
STALE_TMP_SECONDS = 900  # a temporary file this old belongs to a writer that died (writes take milliseconds)
# Bounds on the sizes a dataset spec may ask for, checked before a dataset is built: the renderers allocate
# batch x side^2 floats, so a spec of a few bytes ({"name": "toy", "size": 1000000}) must not ask for a 10^6-px canvas.
# Far above the shipped datasets (toy and squares: 32 px, 12 or 16 levels; Shapes2D / dSprites: 64 px).
DATASET_LIMITS = {"size": (8, 256), "levels": (2, 256), "num_positions": (2, 256), "num_scales": (1, 128)}
MAX_SPEC_STRING = 4096  # a dataset spec's strings (e.g. a dSprites path)
# safetensors dtypes a run may hold (torch dtype, bytes per element). float8 and complex tensors are refused by name.
DTYPES = {"F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "I64": (torch.int64, 8), "I32": (torch.int32, 4), "I16": (torch.int16, 2), "I8": (torch.int8, 1),
          "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1)}
TENSOR_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}


class CheckpointError(ValueError):
    """A run directory that cannot be loaded; the message names the file and the problem."""


def package_versions() -> dict[str, str]:
    from mtc_core import __version__

    return {"mtc_core": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | Path, directory: bool = False) -> None:
    """Give a temporary file or folder the permissions a plain open() or mkdir() would have (mkstemp and mkdtemp make
    them private to the user), before it is renamed into place."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.save_file through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())


def write_history(path: str | Path, records: list[dict]) -> None:
    lines = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)
    _atomic_write_bytes(Path(path) / HISTORY, lines.encode())


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError and NaN / Infinity literals are ValueErrors
        raise CheckpointError(f"{what}: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{what}: JSON nested too deeply") from None


def _read_bounded(file: Path, limit: int) -> bytes:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing file")
    try:
        size = file.stat().st_size
        if size > limit:
            raise CheckpointError(f"{file}: {size} bytes, over the limit of {limit}")
        return file.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror or e})") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    return parse_json(_read_bounded(path, MAX_JSON_BYTES), str(path))


def read_history(path: str | Path) -> list[dict]:
    """history.jsonl's records (a missing file: none); CheckpointError for a line that is not a JSON object."""
    file = Path(path) / HISTORY
    if not file.is_file():
        return []
    try:
        text = _read_bounded(file, MAX_HISTORY_BYTES).decode()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{file}: not valid UTF-8 ({e})") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            record = parse_json(line, f"{file} line {number}")
            if not isinstance(record, dict):
                raise CheckpointError(f"{file} line {number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def state_tensors(model: torch.nn.Module, dtype: torch.dtype | None = None, auxiliary: bool = True) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors (optionally floats cast, e.g. to float16; optionally without the
    training-only nets named by `model.auxiliary_prefixes`)."""
    tensors = {}
    skip = () if auxiliary else tuple(getattr(model, "auxiliary_prefixes", ()))
    for name, t in model.state_dict().items():
        if skip and name.startswith(skip):
            continue
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    return tensors


def save_weights(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None, auxiliary: bool = True) -> None:
    """Atomically write the model's state dict as safetensors (see `state_tensors` for dtype and auxiliary)."""
    atomic_save_file(state_tensors(model, dtype, auxiliary), path)


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


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header, validated."""

    dtype: str  # safetensors dtype name, a key of DTYPES
    shape: tuple[int, ...]
    begin: int  # byte offsets into the data section
    end: int


def read_safetensors_header(file: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """(tensors, metadata) from a safetensors file's header, parsed by hand so that every failure gets a clear message:
    names, dtypes, shapes and byte ranges are checked against each other and the file's size; no tensor is read."""
    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file}: missing file")
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            (n,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
            raw = f.read(n) if n is not None and n <= min(size - 8, MAX_HEADER_BYTES) else None
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror or e})") from None
    # A pickle starts with 0x80 and its protocol, a torch.save file with a zip's "PK"; only a file that does not
    # parse as safetensors is named a pickle (a valid header length may start with byte 0x80 as well).
    pickle_hint = head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
    refusal = f"{file}: looks like a pickle / torch.save file; only safetensors weights are loaded (never pickle)"
    if n is None:
        raise CheckpointError(refusal if pickle_hint else f"{file}: truncated ({size} bytes), not a safetensors file")
    if raw is None:
        if pickle_hint:
            raise CheckpointError(refusal)
        if n > size - 8:
            raise CheckpointError(f"{file}: not a safetensors file, or truncated (header length {n} > file size {size})")
        raise CheckpointError(f"{file}: header of {n} bytes, over the limit of {MAX_HEADER_BYTES}")
    try:
        header = parse_json(raw, str(file))
    except CheckpointError as e:
        raise CheckpointError(refusal if pickle_hint else f"{file}: not a safetensors file (unreadable header: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(f"{file}: header __metadata__ must map strings to strings")
    tensors = {name: _tensor_info(file, name, entry) for name, entry in header.items()}
    data_size, position = size - 8 - n, 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin != position:
            raise CheckpointError(f"{file}: tensor {name} starts at byte {info.begin} of the data, expected {position} "
                                  f"(tensors must cover the data without gaps or overlaps)")
        position = info.end
    if position != data_size:
        problem = "truncated" if position > data_size else "corrupt"
        raise CheckpointError(f"{file}: {problem}: the header describes {8 + n + position} bytes, the file has {size}")
    return tensors, metadata


def _tensor_info(file: Path, name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{file}: header entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        kind = " (float8 weights are not supported)" if isinstance(dtype, str) and dtype.startswith("F8") else ""
        raise CheckpointError(f"{file}: tensor {name!r} has dtype {dtype!r}{kind}; supported: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise CheckpointError(f"{file}: tensor {name!r} has shape {shape!r}, not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise CheckpointError(f"{file}: tensor {name!r} has data_offsets {offsets!r}, expected [begin, end] byte offsets")
    if (offsets[1] - offsets[0]) != math.prod(shape) * DTYPES[dtype][1]:
        raise CheckpointError(f"{file}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes, its shape {shape} and "
                              f"dtype {dtype} need {math.prod(shape) * DTYPES[dtype][1]}")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def check_header(file: Path, header: dict[str, TensorInfo], expected: dict[str, torch.Tensor], what: str) -> None:
    """The header holds exactly the `expected` tensors (any tensors, e.g. on the meta device), with their shapes, and
    dtypes that cast to theirs without loss of meaning: floats as any float (half-precision weights are a legitimate
    compact format), everything else exactly."""
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{file}: tensor names do not match {what}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, want in expected.items():
        info = header[name]
        if info.shape != tuple(want.shape):
            raise CheckpointError(f"{file}: tensor {name} has shape {info.shape}, {what} needs {tuple(want.shape)}")
        got = DTYPES[info.dtype][0]
        if got != want.dtype and not (got.is_floating_point and want.dtype.is_floating_point):
            raise CheckpointError(f"{file}: tensor {name} has dtype {got}, {what} needs {want.dtype}")


def read_tensors(file: str | Path, expected: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after `read_safetensors_header` and `check_header` passed; floats cast to the
    expected dtype and refused when they hold NaN or inf."""
    file = Path(file)
    check_header(file, read_safetensors_header(file)[0], expected, what)
    try:
        tensors = load_file(file)
    except Exception as e:  # the safetensors library's own errors are not one type
        raise CheckpointError(f"{file}: unreadable safetensors file ({type(e).__name__}: {e})") from None
    for name, want in expected.items():
        got = tensors[name]
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{file}: tensor {name} holds NaN or inf")
        tensors[name] = got.to(want.dtype)
    return tensors


def check_dataset_spec(spec: Any) -> None:
    """ValueError unless `spec` is a dataset name or {"name": str, **scalar arguments} within DATASET_LIMITS."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ValueError(f"a dataset spec is a name or an object with a 'name' string, got {short_repr(spec)}")
    for key, value in spec.items():
        if isinstance(value, str):
            if len(value) > MAX_SPEC_STRING:
                raise ValueError(f"dataset spec {key!r}: a string of {len(value)} characters, over the limit of {MAX_SPEC_STRING}")
        elif value is not None and not isinstance(value, bool | int | float):
            raise ValueError(f"dataset spec {key!r} must be a string, number or boolean, got {short_repr(value)}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"dataset spec {key!r} must be finite, got {value!r}")
        if key in DATASET_LIMITS:
            low, high = DATASET_LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"dataset spec {key!r} must be an integer in {low}..{high}, got {short_repr(value)}")


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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


def clean_orphans(path: str | Path, older_than: float = 0.0) -> list[str]:
    """Remove the temporary files and folders (`.<name>.<random>.tmp`) that a writer killed mid-write left in `path`,
    when older than `older_than` seconds (a younger one may belong to a writer still at work). Returns their names.
    A folder we may not write to (a read-only install) is left as it is."""
    removed = []
    now = time.time()
    try:
        entries = list(Path(path).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if now - entry.lstat().st_mtime < older_than:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
        except OSError:
            continue
    return removed


def check_writable_folder(folder: str | Path) -> None:
    """Create the folder (and its parents) and a file in it, so that an unwritable or special path fails (OSError)
    before any work rather than at the first save."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


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
    """Run directories (those with a config.json) under root, newest first; hidden folders (a zoo's half-written
    temporary copies) are not runs."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if not p.name.startswith(".") and (p / CONFIG).is_file()]
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
