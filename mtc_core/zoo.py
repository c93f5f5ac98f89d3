"""The shipped model zoo: run directories under `pretrained/` listed in `pretrained/index.json`.

index.json: {"format_version": 1, "runs": [{"path": "<dir name>", "label": "...", "model": "...", "dataset": "..."}]}
Paths are relative to the zoo folder and may not leave it. Weights are stored in float16 without training-only
nets such as FactorVAE's discriminator (config `"auxiliary_weights": false`), so each model is a few MB at most;
`io.load_run` casts them back to float32. A zoo model encodes and decodes; to train on, use the original run.
"""

from __future__ import annotations

import re
import shutil
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
    """Copy a complete run into the zoo as `root/name` (float16 weights, config, history, metrics) and list it."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"zoo name must be letters, digits, '_', '-' or '.', got {name!r}")
    run_dir, root = Path(run_dir), Path(root)
    model, config = io.load_run(run_dir)
    if config.get("status") != "complete":
        raise ValueError(f"{run_dir}: only complete runs go into the zoo (status {config.get('status')!r})")
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    io.save_weights(model, target / io.WEIGHTS, dtype=torch.float16, auxiliary=False)
    if (target / io.WEIGHTS).stat().st_size > MAX_MODEL_BYTES:
        raise ValueError(f"{name}: {(target / io.WEIGHTS).stat().st_size} bytes of weights, over the zoo's {MAX_MODEL_BYTES}")
    for file in (io.HISTORY, io.METRICS):
        if (run_dir / file).is_file():
            shutil.copyfile(run_dir / file, target / file)
    io.write_json(target / io.CONFIG, {**config, "auxiliary_weights": False})
    entries = [e for e in read_index(root) if Path(e["path"]).name != name]
    entries.append({"path": str(target), "label": label, "model": config["model"]["name"], "dataset": config["dataset"]["name"]})
    _write_index(root, entries)
    return target
