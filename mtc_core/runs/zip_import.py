"""Import a run directory from a .zip (docs/design.md, "Run folders"): `model.safetensors` + `config.json` [+ `metrics.json`, `history.jsonl`].

The archive is read member by member, never extracted as a whole: a member is refused for a path that could leave
the target folder (absolute, `..`, backslashes), for being a link, a folder other than one top-level folder, an
encrypted or unknown file, or for being over its size limit (checked on the bytes actually read, not only on the
size the archive claims). The files are written to a hidden temporary folder beside the target, validated exactly
as `runs.load_run` loads a run (the weights are safetensors: a pickle is refused by `runs.read_safetensors_header`), and
only then renamed into place. An existing run is never overwritten.
"""

from __future__ import annotations

import io as _bytes_io
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mtc_core import runs
from mtc_core.models.base import MAX_PARAMETERS

MAX_WEIGHTS_BYTES = MAX_PARAMETERS * 8 + runs.MAX_HEADER_BYTES  # float64 weights of the largest model a config may describe
LIMITS = {runs.WEIGHTS: MAX_WEIGHTS_BYTES, runs.CONFIG: runs.MAX_JSON_BYTES, runs.METRICS: runs.MAX_JSON_BYTES,
          runs.HISTORY: runs.MAX_IMPORTED_HISTORY_BYTES}
REQUIRED = (runs.WEIGHTS, runs.CONFIG)
MAX_ARCHIVE_BYTES = sum(LIMITS.values())
MAX_MEMBERS = 16
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ImportRefused(ValueError):
    """An archive that is not imported; the message names the member and the problem."""


def check_run_name(name: str) -> str:
    """A run folder name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters."""
    if not isinstance(name, str) or not NAME.match(name) or name in (".", ".."):
        raise ImportRefused(f"run name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit, "
                            "at most 100 characters)")
    return name


def _member_name(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename
    path = PurePosixPath(name)
    if "\\" in name or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise ImportRefused(f"member {name!r}: its path could leave the run folder (absolute, '..' or a drive)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ImportRefused(f"member {name!r} is a symbolic link; only plain files are imported")
    if info.flag_bits & 0x1:
        raise ImportRefused(f"member {name!r} is encrypted")
    return path


def _plan(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """run file name -> member: every member checked, at most one top-level folder around the files."""
    infos = archive.infolist()
    seen = Counter(str(PurePosixPath(info.filename)) for info in infos)  # "./a" and "a//b" name what "a" and "a/b" name
    twice = sorted(name for name, count in seen.items() if count > 1)
    if twice:  # first: which copy a reader takes is up to the reader (zipfile takes the last), so no other check is sound
        raise ImportRefused(f"the archive holds {len(twice)} name(s) more than once ({', '.join(map(repr, twice[:3]))}); "
                            "zip the run folder again")
    if len(infos) > MAX_MEMBERS:
        raise ImportRefused(f"the archive holds {len(infos)} members; a run has at most {len(LIMITS)} files")
    files = {}
    for info in infos:
        path = _member_name(info)
        if path.name == runs.LOCK and not info.is_dir():  # a trainer's lock file zipped with its folder: not a run file
            continue
        if info.is_dir():
            if len(path.parts) != 1:
                raise ImportRefused(f"member {info.filename!r}: nested folders; zip the run folder itself (its files at most one folder deep)")
            continue
        files[path] = info
    if any(len(p.parts) > 2 for p in files):
        raise ImportRefused(f"nested folders ({sorted(str(p) for p in files if len(p.parts) > 2)[0]!r}): zip the run folder "
                            "itself (its files at most one folder deep)")
    folders = {p.parent for p in files}
    if len(folders) > 1:
        raise ImportRefused(f"the run's files must sit together at the top of the archive or in one folder, got {sorted(map(str, files))[:6]}")
    plan = {}
    for path, info in files.items():
        if path.name not in LIMITS:
            raise ImportRefused(f"unknown file {str(path)!r}; a run archive holds only {', '.join(LIMITS)}")
        if path.name in plan:
            raise ImportRefused(f"the archive holds {path.name} twice")
        if info.file_size > LIMITS[path.name]:
            raise ImportRefused(f"{path.name}: {info.file_size:,} bytes, over the limit of {LIMITS[path.name]:,}"
                                + (" for an imported run's history" if path.name == runs.HISTORY else ""))
        plan[path.name] = info
    missing = [name for name in REQUIRED if name not in plan]
    if missing:
        raise ImportRefused(f"the archive has no {' and no '.join(missing)}; a run needs {' and '.join(REQUIRED)}")
    return plan


def _copy_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> None:
    """Copy one member, counting the bytes really read: a member that decompresses past its limit is refused."""
    written = 0
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise ImportRefused(f"{target.name}: decompresses past the limit of {limit:,} bytes")
                out.write(chunk)
    except OSError as e:  # a full disk: name the run's file, not the temporary folder it was being written to
        raise OSError(e.errno, e.strerror or str(e), target.name) from None


def _validate(folder: Path) -> None:
    """Exactly what loading and listing the run will check: config, weights against the config, status and step,
    then metrics and history (read line by line: one record in memory at a time)."""
    _, config = runs.load_run(folder)
    runs.check_run_state(config, folder / runs.CONFIG)
    if (folder / runs.METRICS).is_file() and not isinstance(runs.read_json(folder / runs.METRICS), dict):
        raise runs.CheckpointError(f"{runs.METRICS}: expected a JSON object")
    for _ in runs.iter_history(folder):
        pass


def import_run(archive: str | Path | bytes | BinaryIO, runs_root: str | Path, name: str) -> Path:
    """Import a zipped run as `runs_root/name`; returns its path. ImportRefused / CheckpointError (ValueErrors)
    name what is wrong; nothing is left behind on refusal and an existing run is never touched."""
    name = check_run_name(name)
    root = Path(runs_root)
    target = root / name
    holder = runs.run_lock_holder(target)
    if holder is not None:
        raise ImportRefused(runs.busy_message(target, holder, advice="choose another name"))
    if target.exists():
        raise ImportRefused(f"a run named {name!r} already exists in {root}; choose another name")
    if isinstance(archive, bytes | bytearray):
        archive = _bytes_io.BytesIO(archive)
    elif isinstance(archive, str | Path):
        path = Path(archive)
        if not path.is_file():
            raise ImportRefused(f"{path}: no such file")
        if path.stat().st_size > MAX_ARCHIVE_BYTES:
            raise ImportRefused(f"{path}: {path.stat().st_size:,} bytes, over the limit of {MAX_ARCHIVE_BYTES:,}")
    try:
        zipped = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise ImportRefused(f"not a zip archive ({e})") from None
    root.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    try:
        with zipped:
            for file_name, info in _plan(zipped).items():
                _copy_bounded(zipped, info, temporary / file_name, LIMITS[file_name])
        try:
            _validate(temporary)
        except runs.CheckpointError as e:  # name the archive's files, not the temporary folder they were checked in
            raise runs.CheckpointError(str(e).replace(f"{temporary}/", "").replace(str(temporary), "the run")) from None
        runs.publish_mode(temporary, directory=True)
        if target.exists():  # another import took the name meanwhile
            raise ImportRefused(f"a run named {name!r} already exists in {root}; choose another name")
        os.rename(temporary, target)
    except zipfile.BadZipFile as e:
        shutil.rmtree(temporary, ignore_errors=True)
        raise ImportRefused(f"a damaged zip archive ({e})") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target
