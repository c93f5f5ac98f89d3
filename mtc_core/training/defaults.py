"""Training defaults: one home for the command line (`train`) and the app's Train page, so that the same choices give
the same config (and, at the same seed, the same model) through either door.

Per dataset: the 32x32 datasets (toy, squares) train the small MLP: Adam 2e-3 for 2,000 steps disentangles the toy in
about a minute on a CPU (the shipped toy zoo, sweeps/toy_zoo.yaml). Every other dataset is 64x64 and trains the conv64
networks with disentanglement_lib's Adam 1e-4 and batch 64, for 15,000 steps (the Shapes2D zoo, sweeps/zoo.yaml).
Per length: a history record every `TrainConfig.eval_every` steps (100, as the zoo), more often in runs shorter than
2,000 steps so that their curves still hold RECORDS points, less often past 500,000 steps (`eval_every`). Everything
else is `TrainConfig`'s own default (eval_size 512, checkpoint_every 1000, seed 0, device auto), as for a Python caller
and a sweep.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mtc_core.training.trainer import TrainConfig

MLP_32PX = {"steps": 2_000, "batch_size": 64, "lr": 2e-3}
CONV_64PX = {"steps": 15_000, "batch_size": 64, "lr": 1e-4}
MLP_DATASETS = ("toy", "squares")
RECORDS = 20  # history records a run shorter than 20 x TrainConfig.eval_every steps still gets
MAX_RECORDS = 5_000  # history records of a run longer than 5,000 x TrainConfig.eval_every steps
FROM_DATASET = ("image_shape", "architecture", "dataset_size")  # model fields filled from the dataset when not chosen


def dataset_defaults(name: Any) -> dict[str, Any]:
    """steps, batch_size and lr for a dataset name; {} for an unknown name (the dataset check reports it)."""
    from mtc_core.data import DATASETS

    if not isinstance(name, str) or name not in DATASETS:
        return {}
    return dict(MLP_32PX if name in MLP_DATASETS else CONV_64PX)


def default(name: str) -> Any:
    """TrainConfig's own default of a field (`default("dataset")` -> {"name": "toy"})."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


DATASET = default("dataset")["name"]  # the dataset picked when none is named


def eval_every(steps: int) -> int:
    """Steps between history records: TrainConfig's (100) from 2,000 steps on, more often in shorter runs (RECORDS
    records), less often past MAX_RECORDS records (a run's history stays small to read)."""
    return max(1, min(default("eval_every"), steps // RECORDS), -(-steps // MAX_RECORDS))


def model_choices(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The model fields that were chosen: those set (not None) and different from the model config's default (a field
    filled from the dataset, FROM_DATASET, whenever set). The Train page's form holds every field, the command line
    only the flags given; both record the same choices."""
    from mtc_core.models import model_class

    if not isinstance(params, dict):
        return params  # TrainConfig names the problem
    fields = {f.name: f.default for f in dataclasses.fields(model_class(model).Config) if f.name not in FROM_DATASET}
    return {k: v for k, v in params.items() if v is not None and (k not in fields or v != fields[k])}


def train_config(model: str, dataset: dict[str, Any], model_params: dict[str, Any], **train: Any) -> TrainConfig:
    """The TrainConfig of a choice of model, dataset spec, model fields and train settings (TrainConfig's field names),
    every setting not chosen at its default: steps, batch_size and lr the dataset's, eval_every from the steps, the rest
    TrainConfig's. Validated as far as a config can be before training: ValueError naming the problem (the variant's
    fields are checked by building the model)."""
    from mtc_core.data import make_dataset
    from mtc_core.models import build_model
    from mtc_core.training.trainer import resolved_model_params

    settings = {**dataset_defaults(dataset.get("name") if isinstance(dataset, dict) else None), **train}
    if isinstance(settings.get("steps"), int):
        settings.setdefault("eval_every", eval_every(settings["steps"]))
    config = TrainConfig(model=model, model_params=model_choices(model, model_params), dataset=dataset, **settings)
    build_model(config.model, resolved_model_params(config, make_dataset(config.dataset)))
    return config
