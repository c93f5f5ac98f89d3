"""Dataset specs as stored with a run ({"name": ..., **arguments}): checked before any dataset is built."""

from __future__ import annotations

import math
from typing import Any

# Bounds on the sizes a dataset spec may ask for, checked before a dataset is built: the renderers allocate
# batch x side^2 floats, so a spec of a few bytes ({"name": "toy", "size": 1000000}) must not ask for a 10^6-px canvas.
# Far above the shipped datasets (toy and squares: 32 px, 12 or 16 levels; Shapes2D / dSprites: 64 px).
DATASET_LIMITS = {"size": (8, 256), "levels": (2, 256), "num_positions": (2, 256), "num_scales": (1, 128)}


MAX_SPEC_STRING = 4096  # a dataset spec's strings (e.g. a dSprites path)


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
    """repr for an error message, cut to `limit` characters: a message names the value, it does not echo a file."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
