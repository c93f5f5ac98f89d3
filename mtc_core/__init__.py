"""mtc_core: mean vs sampled total correlation in VAEs (models, estimators, metrics, training, evaluation).

Science packages: `data`, `models`, `estimators`, `metrics`, `theory`. Workflows: `runs` (run folders), `training`,
`evaluation`, `visualize`, `cli`. The names users call are re-exported here and stay put when files move
(docs/design.md, "The house"); they are imported on first use, since torch and sklearn are slow to import.
Never imports streamlit: the app (app.py, pages/, ui/, services/) sits on top of this package.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "evaluate": "mtc_core.evaluation.scoring",
    "analyse_codes": "mtc_core.evaluation.codes_analysis",
    "load_run": "mtc_core.runs.run_dir",
    "save_run": "mtc_core.runs.run_dir",
    "train": "mtc_core.training.trainer",
    "TrainConfig": "mtc_core.training.trainer",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mtc_core' has no attribute {name!r}")
