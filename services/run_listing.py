"""Where the app finds models: the shipped zoo and the user's own runs (no streamlit here).

Zoo: `$MTC_ZOO_DIR` (default `<repo>/pretrained`) with an `index.json` in the format of
`mtc_core.runs.zoo`. Without an index the zoo directory's run directories are listed. User runs: every run directory under
`$MTC_RUNS_DIR` (default `<repo>/runs`); the app trains into it and may delete from
it, never from the zoo.

One bad run must not take the app down: every run is inspected (config, the weights' header against the config) before
it is offered, and a run that fails is listed by `broken_runs()` with the reason and skipped everywhere else.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from mtc_core import runs
from mtc_core.data import DATASETS, make_dataset
from mtc_core.evaluation.seeds import configuration_key, group_label
from mtc_core.models import FAMILIES, MODELS
from mtc_core.runs import checkpoint, zoo
from mtc_core.training.trainer import resolve_device
from services import training_queue

REPO = Path(__file__).resolve().parent.parent
FINISHED = ("complete",)  # what Compare and the overview count unless asked for more
UNFINISHED = ("cancelled", "diverged", "failed", "running", "interrupted")


def zoo_dir() -> Path:
    return Path(os.environ.get("MTC_ZOO_DIR") or REPO / "pretrained")


def runs_dir() -> Path:
    return Path(os.environ.get("MTC_RUNS_DIR") or REPO / "runs")


@dataclass(frozen=True)
class RunEntry:
    path: str  # absolute run directory
    label: str  # what the picker shows
    source: str  # zoo | runs
    model: str | None = None  # registry key
    dataset: str | None = None  # dataset name
    seed: int | None = None  # training seed
    status: str | None = None  # config.json's status; "interrupted": "running" with no training of this server behind it
    group: str = ""  # runs that differ only in their seed share it (seeds are aggregated over it)
    problem: str | None = None  # why the run cannot be explored; None for a usable run
    busy: bool = False  # a process holds the run's lock (this server's training, a terminal's, a sweep's): not to be deleted

    @property
    def family(self) -> str:
        return FAMILIES.get(self.model or "", self.model or "?")

    @property
    def group_label(self) -> str:
        """The label without its seed: one configuration."""
        return group_label(self.label)


@functools.lru_cache(maxsize=512)
def _inspect(path: str, stamp: tuple) -> tuple[dict | None, str | None]:
    """(validated config.json, None) or (None, the reason the run cannot be used), without reading any weights: the
    config (model key, bounded sizes, dataset spec) and the weights' header (dtypes, offsets, size). Checking the
    header's tensors against the model (a meta model per run, ~0.1 s) is left to loading (`cache.model`)."""
    try:
        config = runs.read_run_config(path)
        runs.check_run_state(config, Path(path) / runs.CONFIG)  # a status or step a table cannot show: broken, with why
        model_cfg = runs.model_config(config, Path(path) / runs.CONFIG)
        runs.read_safetensors_header(Path(path) / runs.WEIGHTS)
        if not isinstance(config.get("dataset"), dict):
            raise runs.CheckpointError(f"{Path(path) / runs.CONFIG}: no dataset spec")
        shape = _image_shape(json.dumps(config["dataset"], sort_keys=True))
        if tuple(model_cfg.image_shape) != shape:
            raise runs.CheckpointError(f"{Path(path) / runs.CONFIG}: dataset {config['dataset'].get('name')!r} renders images of "
                                     f"shape {shape} but the model takes {tuple(model_cfg.image_shape)}")
    except Exception as error:  # any failure makes the run unusable; the reason is what the user sees
        return None, f"{type(error).__name__}: {error}" if not isinstance(error, ValueError) else str(error)
    return config, None


@functools.lru_cache(maxsize=64)
def _image_shape(spec_json: str) -> tuple[int, ...]:
    """The (C, H, W) a dataset spec renders: the class's constant when it has one (no sprite tables built), else the
    built dataset's."""
    spec = json.loads(spec_json)
    cls = DATASETS.get(spec.get("name"))
    if cls is not None and isinstance(cls.__dict__.get("image_shape"), tuple):
        return tuple(cls.image_shape)
    return tuple(make_dataset(spec).image_shape)


def _stamp(path: Path) -> tuple:
    """Cache key of a run's files: a re-saved config or new weights give a new key."""
    out = []
    for name in (runs.CONFIG, runs.WEIGHTS):
        try:
            stat = (path / name).stat()
            out.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def inspect_run(path: str | Path) -> tuple[dict | None, str | None]:
    """(config, None) for a usable run directory, (None, reason) for a broken one; cached by the files' mtimes."""
    path = Path(path)
    return _inspect(str(path), _stamp(path))


def _entry(path: Path, label: str, source: str) -> RunEntry:
    config, problem = inspect_run(path)
    if config is None:
        return RunEntry(str(path), label, source, problem=problem)
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seed = train.get("seed") if isinstance(train.get("seed"), int) else None
    status = config.get("status") if isinstance(config.get("status"), str) else None
    held = busy(path) is not None
    if held:  # trained now by some process, whatever config.json says (a resumed run says so at its first checkpoint)
        status = "running"
    elif status == "running" and not training_queue.is_training(path):
        status = "interrupted"
    group = json.dumps([source, configuration_key(config)])  # the zoo's seeds and yours are not pooled
    return RunEntry(str(path), label, source, config["model"]["name"], str(config["dataset"].get("name")), seed, status, group,
                    busy=held)


def zoo_runs() -> list[RunEntry]:
    """The zoo's runs from its index.json (mtc_core.runs.zoo); without an index, its run directories. Ordered by dataset, the
    model registry, configuration and seed. A malformed index raises ValueError naming the problem (the picker shows it)."""
    root = zoo_dir()
    items = zoo.read_index(root) if (root / zoo.INDEX).is_file() else [{"path": str(p.resolve())} for p in runs.list_runs(root)]
    entries = [_entry(Path(item["path"]), str(item.get("label") or Path(item["path"]).name), "zoo")
               for item in items if (Path(item["path"]) / runs.CONFIG).is_file()]
    order = list(MODELS)
    return sorted(entries, key=lambda e: (e.dataset or "~", order.index(e.model) if e.model in order else len(order),
                                          e.group_label, e.seed if e.seed is not None else -1))


def user_runs() -> list[RunEntry]:
    """The user's run directories, newest first; the label says a status other than complete."""
    out = []
    for path in runs.list_runs(runs_dir()):
        entry = _entry(path.resolve(), path.name, "runs")
        suffix = "" if entry.status in ("complete", None) else f" ({entry.status})"
        out.append(RunEntry(**{**entry.__dict__, "label": f"run · {path.name}{suffix}"}))
    return out


def all_runs() -> list[RunEntry]:
    """Zoo first, then the user's runs, broken ones included. An unreadable zoo index leaves the zoo out."""
    try:
        zoo_entries = zoo_runs()
    except ValueError:
        zoo_entries = []
    return zoo_entries + user_runs()


def available_runs() -> list[RunEntry]:
    """Runs that can be explored (see `broken_runs` for the others)."""
    return [e for e in all_runs() if e.problem is None]


def broken_runs() -> list[RunEntry]:
    """Runs that cannot be explored, each with the reason in `problem`."""
    return [e for e in all_runs() if e.problem is not None]


def interrupted_runs() -> list[RunEntry]:
    """The user's runs that stopped without finishing and can be resumed from their last checkpoint: those marked
    running in config.json that no training of this server is writing (their process died: a server restart, a
    kill), and those marked failed (the trainer died of an error, config.json's message says which) that kept one."""
    return [e for e in user_runs() if e.status == "interrupted" or (e.status == "failed" and checkpoint.has_checkpoint(e.path))]


def short_label(path: str | Path) -> str:
    """The run directory's name, with "zoo/" in front for the zoo's."""
    path = Path(path)
    return path.name if is_user_run(path) else f"zoo/{path.name}"


def comparable_runs(statuses: tuple[str, ...] = FINISHED) -> list[RunEntry]:
    """Usable runs whose status is one of `statuses` (default: complete only; cancelled, diverged or interrupted runs
    are left out unless asked for)."""
    return [e for e in available_runs() if e.status in statuses]


def default_pair(entries: list[RunEntry]) -> tuple[RunEntry | None, RunEntry | None]:
    """Side by side's defaults: a beta-TCVAE and an RTC-VAE on the same dataset with the same seed (the zoo's
    most-seeded RTC-VAE configuration, i.e. its main one), preferring Shapes2D and seed 0."""
    def rank(e: RunEntry) -> tuple:
        return (e.source != "zoo", e.dataset != "shapes2d", e.seed != 0, e.seed if e.seed is not None else 1 << 40)

    seeds: dict[str, int] = {}
    for e in entries:
        seeds[e.group] = seeds.get(e.group, 0) + 1
    for a in sorted((e for e in entries if e.model == "beta_tcvae"), key=rank):
        partners = [b for b in entries if b.model == "rtc_vae" and (b.dataset, b.seed, b.source) == (a.dataset, a.seed, a.source)]
        if partners:
            return a, max(partners, key=lambda b: seeds[b.group])  # max keeps the first of equals: zoo order
    return (entries[0] if entries else None), (entries[1] if len(entries) > 1 else None)


def is_user_run(path: str | Path) -> bool:
    path = Path(path).resolve()
    return path.parent == runs_dir().resolve() and (path / runs.CONFIG).is_file()


def busy(path: str | Path) -> str | None:
    """Why the run cannot be deleted or resumed now ("runs/x is being trained by process 1234 (since ...)"), None when
    no process holds its lock (mtc_core.runs.lock: any process, not only this server's trainings)."""
    holder = runs.run_lock_holder(path)
    return None if holder is None else runs.busy_message(path, holder, advice="")


def delete_run(path: str | Path) -> None:
    """Delete one of the user's run directories; anything else (the zoo) is refused, and so is a run that any process
    is training (its lock is held, and held by this deletion while it deletes, so no training starts meanwhile)."""
    if not is_user_run(path):
        raise ValueError(f"{path} is not one of your runs under {runs_dir()}; only those can be deleted")
    if training_queue.is_training(path):
        raise ValueError(f"{Path(path).name} is still training; cancel it on the Train page first")
    with runs.hold_run_lock(path, create=False, doing="deleted", advice="it can be deleted once that process stops"):
        shutil.rmtree(path)


def config_mtime(path: str | Path) -> int:
    """Cache key part: a re-saved run (new config.json) gets a new key and reloads."""
    return (Path(path) / runs.CONFIG).stat().st_mtime_ns


def device_label() -> str:
    """What the app computes on: the GPU's name, or the CPU."""
    device = resolve_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads > 1 else ''})"
