"""Aggregation over training seeds: one rule for RESULTS.md (`claims`), the app (`services.run_listing`) and sweeps
(`sweep_results`), so a configuration's mean ± sd reads the same everywhere (docs/design.md, "Seeds").

A configuration is everything a run's config.json fixes except its seed and where it ran (`configuration_key`); a
quantity over a configuration's runs is summarised by its mean and sample sd (`mean_sd`, sd from two seeds on).
"""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

# train fields that do not make a configuration: the seed (what is aggregated over), where a run executed, and the
# fields stored beside `train` in config.json (model, its params, dataset)
NOT_CONFIGURATION = ("seed", "device", "num_threads", "model", "model_params", "dataset")


def configuration_key(config: dict[str, Any]) -> str:
    """Runs whose config.json differ only in their seed (and device or threads) share this key: the model's registry key
    and params (without `dataset_size`, which follows the dataset), the dataset spec and the train settings."""
    model = config.get("model") or {}
    params = {k: v for k, v in (model.get("params") or {}).items() if k != "dataset_size"}
    train = {k: v for k, v in (config.get("train") or {}).items() if k not in NOT_CONFIGURATION}
    return json.dumps([model.get("name"), params, config.get("dataset"), train], sort_keys=True, default=str)


def group_runs(rows: list[dict], key: str = "group") -> list[list[dict]]:
    """Rows grouped by `row[key]`, groups in the order of their first row, rows in their given order."""
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return list(groups.values())


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sd) over seeds; sd None for one value, both None for none."""
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def group_label(label: str) -> str:
    """A run's label without its seed ("beta-TCVAE (beta 6), Shapes2D, seed 1" -> "beta-TCVAE (beta 6), Shapes2D")."""
    return re.sub(r",?\s*seed \d+$", "", label)
