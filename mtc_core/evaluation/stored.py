"""A run's stored evaluation: `mtc_core.evaluate` on the run's own dataset, written into its metrics.json under the
key "evaluation" (other keys kept). The one writer behind `python -m mtc_core evaluate RUN` and the app's "Evaluate
and store" button, so both store the same thing at the same sizes (docs/design.md, "Run folders").

Imports torch on first use only: the CLI reads the sizes below when it parses its flags."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

NUM_TRAIN, NUM_TEST, SEED = 10_000, 5_000, 0  # `evaluate`'s defaults: the sizes of every stored evaluation in the zoo


def run_and_dataset(run: str | Path, device: str = "cpu"):
    """(model, config, dataset) of a run directory, the dataset checked against the images the model takes."""
    from mtc_core import runs
    from mtc_core.data import make_dataset

    model, config = runs.load_run(run, device)
    if "dataset" not in config:
        raise ValueError(f"{run}: its config.json names no dataset")
    try:
        dataset = make_dataset(config["dataset"], image_shape=model.config.image_shape)
    except ValueError as e:
        raise ValueError(f"{run}: {e}") from None
    return model, config, dataset


def evaluate_and_store(run: str | Path, *, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST, seed: int = SEED,
                       device: str = "cpu", progress: Callable[[str, dict | None], None] | None = None) -> dict:
    """Evaluate the run and store the result in its metrics.json ("evaluation"); returns what was stored.

    The run's lock is held from the first read to the write, so a training of the folder (by any process) and an
    evaluation never overlap: RunBusy when one trains it now. A metrics.json that is not a JSON object is refused
    before the minutes of work; the write is atomic (a kill leaves the old file whole)."""
    import mtc_core
    from mtc_core import runs
    from mtc_core.runs.lock import hold_run_lock

    run = Path(run)
    metrics_path = run / runs.METRICS
    with hold_run_lock(run, create=False, doing="evaluated"):
        model, _, dataset = run_and_dataset(run, device)
        metrics = runs.read_json(metrics_path) if metrics_path.is_file() else {}
        if not isinstance(metrics, dict):
            raise ValueError(f"{metrics_path}: not a JSON object, so the evaluation has nowhere to go; fix or delete the file")
        results = mtc_core.evaluate(model, dataset, num_train=num_train, num_test=num_test, seed=seed, progress=progress)
        metrics["evaluation"] = runs.json_safe(results)
        runs.write_json(metrics_path, metrics)
    return metrics["evaluation"]
