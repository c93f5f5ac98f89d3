"""The run folder's files: their names, atomic writes, bounded JSON reads, temporary-file cleanup, listing.

A run directory holds `model.safetensors` (weights only: never pickle), `config.json` (format version, model and
train config, dataset spec, package versions, the command that made it, the run's status), `metrics.json` and
`history.jsonl`; a run still being trained also holds `checkpoint.safetensors` (`runs.checkpoint`). Every write goes
to a temporary file in the same directory and is renamed into place, so a crash leaves the old file or the new one,
never half of one; temporary files a crash left behind are removed when the run is loaded (docs/design.md, "Run
folders").
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.jsonl"


STATUSES = ("running", "complete", "cancelled", "diverged", "failed")  # failed: the trainer died of an error (message says which)


MAX_JSON_BYTES = 16_000_000  # config.json / metrics.json: a few KB in practice


MAX_HISTORY_BYTES = 64_000_000  # history.jsonl of a run trained here: ~450 bytes a record at 10 latents, 11 KB at 512


# history.jsonl of an imported run. The zoo's largest is 65 KB (150 records of a 15,000-step run), 150 records at 512
# latents 1.7 MB: 8 MB is ample for a real run, and bounds what a zip that compresses 60 MB of history into 829 KB
# makes the import hold and every page read.
MAX_IMPORTED_HISTORY_BYTES = 8_000_000


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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path` and rename it into place; on any failure the temporary file is
    removed, and an OSError without a file name (a full disk: ENOSPC from write, flush or fsync) names `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(tmp)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def error_text(error: BaseException) -> str:
    """A refusal or a failed write as one line: an OSError as "<file>: <reason>" (a full disk: "...: No space left on
    device"), without errno or quotes; anything else as its message."""
    if isinstance(error, OSError) and error.strerror:
        files = [str(f) for f in (error.filename, error.filename2) if f is not None]
        text = f"{' -> '.join(files)}: {error.strerror}" if files else error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def is_disk_full(error: BaseException) -> bool:
    """Whether an error is a full disk (or quota): the one refusal every writer turns into a line, not a traceback."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())


def write_history(path: str | Path, records: list[dict]) -> None:
    """history.jsonl with one JSON object per line. A record never fails to write: a value JSON cannot hold (NaN, inf)
    is stored as null and the record's "note" names it (a record that already explains its nulls keeps its note)."""
    lines = "".join(json.dumps(_storable(r), sort_keys=True, allow_nan=False) + "\n" for r in records)
    atomic_write_bytes(Path(path) / HISTORY, lines.encode())


def _storable(record: dict) -> dict:
    stored = json_safe(record)
    bad = sorted(str(k) for k, v in record.items() if _has_non_finite(v))
    if bad:
        stored.setdefault("note", f"not finite, stored as null: {', '.join(bad)}")
    return stored


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, np.ndarray):
        return bool(value.dtype.kind in "fc" and not np.isfinite(value).all())
    if isinstance(value, float | np.floating):
        return not math.isfinite(value)
    return False


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
    return list(iter_history(path))


def iter_history(path: str | Path) -> Iterator[dict]:
    """history.jsonl's records one at a time, read line by line (a check of the whole file holds one record at a
    time); CheckpointError for a file over MAX_HISTORY_BYTES or a line that is not a JSON object."""
    file = Path(path) / HISTORY
    if not file.is_file():
        return
    try:
        f = open(file, "rb")
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror or e})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_HISTORY_BYTES:
            raise CheckpointError(f"{file}: {size:,} bytes, over the limit of {MAX_HISTORY_BYTES:,} for a run's history")
        read = 0
        for number, line in enumerate(f, 1):
            read += len(line)
            if read > MAX_HISTORY_BYTES:  # grown since it was opened
                raise CheckpointError(f"{file}: over the limit of {MAX_HISTORY_BYTES:,} bytes for a run's history")
            if line.strip():
                yield _history_record(line, f"{file} line {number}")


def _history_record(line: bytes, where: str) -> dict:
    try:
        text = line.decode()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{where}: not valid UTF-8 ({e})") from None
    record = parse_json(text, where)
    if not isinstance(record, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def last_history_record(path: str | Path, chunk: int = 1 << 16) -> dict | None:
    """The last record of history.jsonl (None when it has none), read from the file's end: what a table of runs shows
    without reading every run's whole history. CheckpointError as `read_history` for that record."""
    file = Path(path) / HISTORY
    if not file.is_file():
        return None
    try:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_HISTORY_BYTES:
                raise CheckpointError(f"{file}: {size:,} bytes, over the limit of {MAX_HISTORY_BYTES:,} for a run's history")
            tail, position = b"", size
            while position > 0 and b"\n" not in tail.rstrip():  # until the last non-empty line is whole
                start = max(0, position - chunk)
                f.seek(start)
                tail, position = f.read(position - start) + tail, start
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror or e})") from None
    last = tail.rstrip().rsplit(b"\n", 1)[-1]
    return _history_record(last, f"{file} last line") if last.strip() else None


# The temporary name of Rust's `tempfile` crate (`.tmp` and six letters or digits), through which safetensors'
# save_file wrote before this package wrote its bytes itself (runs.weights.atomic_save_file): a writer killed then
# left one, as large as the checkpoint, in the run folder.
FOREIGN_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")


def is_orphan_name(name: str) -> bool:
    """A temporary file's name: ours (`.<name>.<random>.tmp`) or safetensors' own (FOREIGN_TMP)."""
    return (name.startswith(".") and name.endswith(".tmp")) or FOREIGN_TMP.fullmatch(name) is not None


def clean_orphans(path: str | Path, older_than: float = 0.0) -> list[str]:
    """Remove the temporary files and folders (`.<name>.<random>.tmp`, or safetensors' `.tmpXXXXXX`) that a writer
    killed mid-write left in `path`, when older than `older_than` seconds (a younger one may belong to a writer still
    at work). Returns their names. A folder we may not write to (a read-only install) is left as it is."""
    removed = []
    now = time.time()
    try:
        entries = list(Path(path).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_orphan_name(entry.name):
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
    before any work rather than at the first save. The folders it made are removed again: whoever writes there makes
    them (a training that fails before its first checkpoint then leaves no empty folder behind)."""
    folder = Path(folder)
    made = [p for p in [folder, *folder.parents] if not p.exists() and not p.is_symlink()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    finally:
        for path in made:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break


def unique_dir(root: str | Path, stem: str) -> Path:
    """A fresh directory `root/stem` (`stem-2`, `stem-3`... when taken), made at once, so that two processes asking at
    the same moment get different ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        path = root / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {root}")


def new_run_dir(root: str | Path, label: str) -> Path:
    """A fresh, unique run directory `<date>-<time>-<label>` under root."""
    return unique_dir(root, f"{time.strftime('%Y%m%d-%H%M%S')}-{label}")


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
