"""Ground-truth datasets: a factor grid, `sample_factors(n, rng)`, `render(factors)`, index <-> factors.

`make_dataset(spec)` rebuilds a dataset from the JSON spec stored with a run.
"""

import inspect

from mtc_core.data.base import GroundTruthDataset
from mtc_core.data.dsprites_file import DSpritesFile
from mtc_core.data.dsprites_variants import ColorDSprites, NoisyDSprites
from mtc_core.data.real_files import MPI3DFile, Shapes3DFile
from mtc_core.data.shapes2d import Shapes2D
from mtc_core.data.shapes3d import Shapes3D
from mtc_core.data.squares import Squares
from mtc_core.data.toy import Toy

DATASETS = {"shapes2d": Shapes2D, "dsprites": DSpritesFile, "toy": Toy, "squares": Squares, "shapes3d": Shapes3D,
            "color_dsprites": ColorDSprites, "noisy_dsprites": NoisyDSprites, "3dshapes": Shapes3DFile, "mpi3d": MPI3DFile}
BUILT_IN = ("toy", "squares", "shapes2d", "shapes3d", "color_dsprites", "noisy_dsprites")  # rendered here: no file needed

__all__ = ["BUILT_IN", "DATASETS", "ColorDSprites", "DSpritesFile", "GroundTruthDataset", "MPI3DFile", "NoisyDSprites", "Shapes2D", "Shapes3D",
           "Shapes3DFile", "Squares", "Toy", "make_dataset"]


def make_dataset(spec: dict | str, image_shape: tuple[int, ...] | None = None) -> GroundTruthDataset:
    """A dataset from {"name": ..., **constructor kwargs} or just its name; ValueError naming what is wrong.

    `image_shape` (C, H, W): the images a model takes; a dataset rendering other images is refused."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a dataset spec is a name or a dict with a 'name' key, got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    cls = DATASETS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as error:
        raise ValueError(f"bad arguments for dataset {name!r}: {error}; accepted: {inspect.signature(cls)}") from error
    dataset = cls(**kwargs)
    if image_shape is not None and tuple(image_shape) != tuple(dataset.image_shape):
        raise ValueError(f"dataset {name!r} renders images of shape {tuple(dataset.image_shape)} but the model takes "
                         f"{tuple(image_shape)}")
    return dataset
