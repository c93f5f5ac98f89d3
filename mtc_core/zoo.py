"""The shipped model zoo: run directories under `pretrained/` listed in `pretrained/index.json`.

index.json: {"format_version": 1, "runs": [{"path": "<dir name>", "label": "...", "model": "...", "dataset": "..."}]}
Paths are relative to the zoo folder and may not leave it. Weights are stored in float16 without training-only
nets such as FactorVAE's discriminator (config `"auxiliary_weights": false`), so each model is a few MB at most;
`io.load_run` casts them back to float32. A zoo model encodes and decodes; to train on, use the original run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from mtc_core import io

INDEX = "index.json"
INDEX_VERSION = 1
MAX_MODEL_BYTES = 4 * 1024 * 1024


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """The zoo's entries; ValueError naming the problem for a malformed index or an entry outside the zoo."""
    root = Path(root)
    index = root / INDEX
    if not index.is_file():
        return []
    data = io.read_json(index)
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
    io.write_json(root / INDEX, {"format_version": INDEX_VERSION, "runs": relative})


def add_run(run_dir: str | Path, root: str | Path, name: str, label: str) -> Path:
    """Copy a complete run into the zoo as `root/name` (float16 weights, config, history, metrics) and list it.

    Everything is validated first (the name, the zoo's index, the run, the copy's size) and the copy is written to a
    temporary folder beside the target, then swapped in by renames: a refused add leaves the zoo as it was. Adding a
    zoo model to itself (to relabel it) keeps its history and metrics."""
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
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target}: exists and is not a model folder")
    entries = [e for e in read_index(root) if Path(e["path"]).name != name]
    model, config = io.load_run(run_dir)
    if config.get("status") != "complete":
        raise ValueError(f"{run_dir}: only complete runs go into the zoo (status {config.get('status')!r})")
    dataset = config.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
        raise ValueError(f"{run_dir / io.CONFIG}: no dataset spec; the zoo lists every model with the dataset it was trained on")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    try:
        io.publish_mode(tmp, directory=True)
        io.save_weights(model, tmp / io.WEIGHTS, dtype=torch.float16, auxiliary=False)
        size = (tmp / io.WEIGHTS).stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ValueError(f"{name}: {size} bytes of weights, over the zoo's {MAX_MODEL_BYTES}")
        for file in (io.HISTORY, io.METRICS):
            if (run_dir / file).is_file():
                shutil.copyfile(run_dir / file, tmp / file)
        io.write_json(tmp / io.CONFIG, {**config, "auxiliary_weights": False})
        io.load_run(tmp)  # the copy loads as it is, before it replaces anything
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entries.append({"path": str(target), "label": label, "model": config["model"]["name"], "dataset": dataset["name"]})
    _write_index(root, entries)
    return target


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`: rename the old folder aside, rename the new one in, delete the old one. The
    target is missing only between the two renames, and its old copy is kept until the new one is in place."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old.", suffix=".tmp"))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
