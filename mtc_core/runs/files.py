"""The run folder's files: their names, atomic writes, bounded JSON reads, temporary-file cleanup, listing.

A run directory holds `model.safetensors` (weights only: never pickle), `config.json` (format version, model and
train config, dataset spec, package versions, the command that made it, the run's status), `metrics.json` and
`history.jsonl`; a run still being trained also holds `checkpoint.safetensors` (`runs.checkpoint`). Every write goes
to a temporary file in the same directory and is renamed into place, so a crash leaves the old file or the new one,
never half of one; temporary files a crash left behind are removed when the run is loaded (docs/design.md, "Run
folders").
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


FORMAT_VERSION = 1


WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.jsonl"


STATUSES = ("running", "complete", "cancelled", "diverged")


MAX_JSON_BYTES = 16_000_000  # config.json / metrics.json: a few KB in practice


MAX_HISTORY_BYTES = 64_000_000  # history.jsonl: ~1 KB per record, 150 records for a 15,000-step run


STALE_TMP_SECONDS = 900  # a temporary file this old belongs to a writer that died (writes take milliseconds)


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
