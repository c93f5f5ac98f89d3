"""Training defaults per dataset: one table for the command line (`train`) and the app's Train page.

The 32x32 datasets (toy, squares) train the small MLP: Adam 2e-3 for 2,000 steps disentangles the toy in about a
minute on a CPU (the shipped toy zoo, sweeps/toy_zoo.yaml). Every other dataset is 64x64 and trains the conv64
networks with disentanglement_lib's Adam 1e-4 and batch 64, for 15,000 steps (the Shapes2D zoo, sweeps/zoo.yaml).
`TrainConfig`'s own defaults stay those of a Python caller who names every setting.
"""

from __future__ import annotations

from typing import Any

MLP_32PX = {"steps": 2_000, "batch_size": 64, "lr": 2e-3}
CONV_64PX = {"steps": 15_000, "batch_size": 64, "lr": 1e-4}
MLP_DATASETS = ("toy", "squares")


def dataset_defaults(name: Any) -> dict[str, Any]:
    """steps, batch_size and lr for a dataset name; {} for an unknown name (the dataset check reports it)."""
    from mtc_core.data import DATASETS

    if not isinstance(name, str) or name not in DATASETS:
        return {}
    return dict(MLP_32PX if name in MLP_DATASETS else CONV_64PX)
