"""The shipped model zoo: run directories under `pretrained/` listed in `pretrained/index.json`.

index.json: {"format_version": 1, "runs": [{"path": "<dir name>", "label": "...", "model": "...", "dataset": "..."}]}
Paths are relative to the zoo folder and may not leave it. Weights are stored in float16 without training-only
nets such as FactorVAE's discriminator (config `"auxiliary_weights": false`), so each model is a few MB at most;
`runs.load_run` casts them back to float32. A zoo model encodes and decodes; to train on, use the original run.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from mtc_core import runs
from mtc_core.runs import checkpoint as ckpt
from mtc_core.runs.files import is_orphan_name

INDEX = "index.json"
INDEX_VERSION = 1
MAX_MODEL_BYTES = 4 * 1024 * 1024


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """The zoo's entries; ValueError naming the problem for a malformed index or an entry outside the zoo."""
    root = Path(root)
    index = root / INDEX
    if not index.is_file():
        return []
    data = runs.read_json(index)
    if not isinstance(data, dict) or data.get("format_version") != INDEX_VERSION or not isinstance(data.get("runs"), list):
        raise ValueError(f"{index}: expected {{'format_version': {INDEX_VERSION}, 'runs': [...]}}")
    entries = []
    for entry in data["runs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ValueError(f"{index}: each run needs a 'path' string, got {entry!r}")
        path = (root / entry["path"]).resolve()
        if root.resolve() not in path.parents:
            raise ValueError(f"{index}: run path {entry['path']!r} leaves the zoo folder")
        entries.append({**entry, "path": str(path)})
    return entries


def _write_index(root: Path, entries: list[dict[str, Any]]) -> None:
    relative = [{**e, "path": Path(e["path"]).name} for e in entries]
    runs.write_json(root / INDEX, {"format_version": INDEX_VERSION, "runs": relative})


def add_run(run_dir: str | Path, root: str | Path, name: str, label: str, *, overwrite: bool = False) -> Path:
    """Copy a complete run into the zoo as `root/name` (float16 weights, config, history, metrics) and list it.

    Everything is validated first (the name, the zoo's index, the run, the copy's size) and the copy is written to a
    temporary folder beside the target, then swapped in by renames: a refused add leaves the zoo as it was. An existing
    `root/name` is replaced only with `overwrite` and only when it is one of the zoo's models (listed in index.json, a
    run folder holding nothing but a run's files); anything else there is never touched. A run being trained (its
    lock held, `runs.lock`) is refused as the source and as the target. Adding a zoo model to itself with `overwrite`
    (to relabel it) keeps its history and metrics."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"zoo name must be letters, digits, '_', '-' or '.', not starting with '.', got {name!r}")
    if name == INDEX:
        raise ValueError(f"zoo name {name!r} is the zoo's own index file")
    if not isinstance(label, str) or not label.strip():
        raise ValueError("a zoo model needs a non-empty label")
    run_dir, root = Path(run_dir), Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: the zoo must be a folder, this is a file")
    target = root / name
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ValueError(f"{target}: exists and is not a model folder")
    index = read_index(root)
    entries = [e for e in index if Path(e["path"]).name != name]
    if target.exists():
        _check_replaceable(target, listed=len(entries) < len(index), overwrite=overwrite, index=root / INDEX)
    with runs.hold_run_lock(run_dir, create=False, doing="copied into the zoo"):  # no training starts in it meanwhile
        model, config = runs.load_run(run_dir)
        if config.get("status") != "complete":
            raise ValueError(f"{run_dir}: only complete runs go into the zoo (status {config.get('status')!r})")
        dataset = config.get("dataset")
        if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
            raise ValueError(f"{run_dir / runs.CONFIG}: no dataset spec; the zoo lists every model with the dataset it was trained on")
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
        try:
            runs.publish_mode(tmp, directory=True)
            runs.save_weights(model, tmp / runs.WEIGHTS, dtype=torch.float16, auxiliary=False)
            size = (tmp / runs.WEIGHTS).stat().st_size
            if size > MAX_MODEL_BYTES:
                raise ValueError(f"{name}: {size} bytes of weights, over the zoo's {MAX_MODEL_BYTES}")
            for file in (runs.HISTORY, runs.METRICS):
                if (run_dir / file).is_file():
                    shutil.copyfile(run_dir / file, tmp / file)
            runs.write_json(tmp / runs.CONFIG, {**config, "auxiliary_weights": False})
            runs.load_run(tmp)  # the copy loads as it is, before it replaces anything
            added = not target.exists()
            _swap_in(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        entries.append({"path": str(target), "label": label, "model": config["model"]["name"], "dataset": dataset["name"]})
        try:
            _write_index(root, entries)
        except BaseException:  # a full disk: a new folder the index does not list would be a zoo model nothing lists
            if added:
                shutil.rmtree(target, ignore_errors=True)
            raise
    return target


def _foreign_files(folder: Path) -> list[str]:
    """What `folder` holds besides a run's files, its lock and the temporary files of a writer that died."""
    names = []
    for entry in folder.iterdir():
        hidden_ok = entry.name == runs.LOCK or is_orphan_name(entry.name)
        if not (entry.is_file() and not entry.is_symlink() and (entry.name in ckpt.RUN_FILES or hidden_ok)):
            names.append(entry.name + ("/" if entry.is_dir() else ""))
    return sorted(names)


def _not_a_zoo_run(folder: Path) -> str | None:
    """Why `folder` is not a zoo model's folder that may be replaced, None when it is one."""
    try:
        runs.read_run_config(folder)
    except ValueError as e:
        return f"not a valid run folder ({e})"
    foreign = _foreign_files(folder)
    if foreign:
        return f"it holds files that are not a run's ({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''})"
    return None


def _check_replaceable(target: Path, *, listed: bool, overwrite: bool, index: Path) -> None:
    """Refuse to replace `target` unless it is a zoo model that is not being trained and `overwrite` says so."""
    runs.refuse_if_busy(target, advice="the zoo does not replace it")
    if not listed:
        raise ValueError(f"{target} exists and is not one of the zoo's models (not listed in {index}); zoo-add never "
                         f"replaces it: choose another --name, or move it away")
    problem = _not_a_zoo_run(target)
    if problem is not None:
        raise ValueError(f"{target}: {problem}; zoo-add replaces only a zoo model's folder: choose another --name, or move it away")
    if not overwrite:
        raise ValueError(f"the zoo already has a model named {target.name!r} ({target}); pass --overwrite to replace it")


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`: rename the old folder aside, rename the new one in, then delete the old one's
    run files. The target is missing only between the two renames, and its old copy is kept until the new one is in
    place. What was renamed aside is checked again (still a zoo model's folder) before anything replaces it; the old
    copy is deleted file by file, run files only, so nothing else can be lost."""
    if not target.exists() and not target.is_symlink():
        new.rename(target)  # onto nothing (or an empty folder made meanwhile: nothing lost); a full one raises
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old.", suffix=".tmp"))
    old.rmdir()
    target.rename(old)
    try:
        problem = None if old.is_dir() and not old.is_symlink() else "not a folder"
        problem = problem or _not_a_zoo_run(old)
        if problem is not None:
            raise ValueError(f"{target}: changed meanwhile, {problem}; left as it is")
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    for entry in old.iterdir():
        if entry.name in ckpt.RUN_FILES or entry.name == runs.LOCK or is_orphan_name(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
    with contextlib.suppress(OSError):
        old.rmdir()
