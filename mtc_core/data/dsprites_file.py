"""DSpritesFile: the real dSprites archive (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset).

The file `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` holds `imgs` uint8 [737280, 64, 64] in {0, 1},
`latents_classes` int64 [737280, 6] and `latents_values` float64 [737280, 6]; latent 0 is the colour (one value)
and is dropped. It is loaded without pickle and checked before use; nothing in the file is executed.
"""

import os
import zipfile
from pathlib import Path

import numpy as np

from mtc_core.data.base import GroundTruthDataset

ENV_VAR = "MTC_DSPRITES"
FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
KEYS = ("imgs", "latents_classes", "latents_values")
CHUNK = 65536  # images packed per step, to bound the temporary memory


class DSpritesFile(GroundTruthDataset):
    """The dSprites images, looked up by factor tuple: shape, scale, orientation, posX, posY.

    Factor sizes are read from the file (max class + 1), so a small file in the same format, e.g. a 3x2x2x4x4 grid,
    loads too. Images are kept bit-packed (1/8 of the 3 GB the file expands to).
    """

    name = "dsprites"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    summary = "dSprites (Matthey et al. 2017), read from the original file: a white square, ellipse or heart on black."

    def __init__(self, path=None):
        if path is None:
            path = os.environ.get(ENV_VAR)
        if not path:
            raise ValueError(
                f"DSpritesFile needs the path of {FILE_NAME}: pass path=... (CLI flag) or set the environment "
                f"variable {ENV_VAR}; the file is at https://github.com/deepmind/dsprites-dataset"
            )
        self.path = Path(path)
        imgs, classes = _load_checked(self.path)
        self.factor_sizes = tuple(int(size) for size in classes.max(axis=0) + 1)
        self.image_shape = (1, *imgs.shape[1:])
        if len(imgs) != len(self):
            raise ValueError(
                f"{self.path}: imgs holds {len(imgs)} images but the latent classes span a grid of "
                f"{' x '.join(map(str, self.factor_sizes))} = {len(self)}"
            )
        if not np.array_equal(self.index_to_factors(np.arange(len(imgs))), classes):
            raise ValueError(f"{self.path}: latents_classes are not in row-major order (last factor fastest) as in dSprites")
        self._width = imgs.shape[2]
        self._packed = np.concatenate([np.packbits(imgs[i : i + CHUNK], axis=-1) for i in range(0, len(imgs), CHUNK)])

    def _render(self, factors: np.ndarray) -> np.ndarray:
        packed = self._packed[self.factors_to_index(factors)]
        return np.unpackbits(packed, axis=-1, count=self._width).astype(np.float32)[:, None]

    def spec(self) -> dict:
        return {"name": self.name, "path": str(self.path)}


def _load_checked(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(imgs [N, H, W] uint8 in {0, 1}, factor classes [N, 5] int64) from a dSprites-format npz; ValueError if not."""
    if not path.is_file():
        raise ValueError(f"dSprites file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a valid .npz file: {error}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz archive with keys {KEYS}")
    with archive:
        missing = [key for key in KEYS if key not in archive.files]
        if missing:
            raise ValueError(f"{path} lacks the key(s) {missing}; a dSprites file has {KEYS}, this one has {archive.files}")
        try:
            imgs, classes, values = (archive[key] for key in KEYS)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: cannot read the arrays without pickle ({error})") from error
    if imgs.ndim != 3 or imgs.dtype != np.uint8:
        raise ValueError(f"{path}: imgs must be uint8 [N, H, W], got {imgs.dtype} {imgs.shape}")
    for key, array in (("latents_classes", classes), ("latents_values", values)):
        if array.shape != (len(imgs), 6):
            raise ValueError(f"{path}: {key} must have shape [{len(imgs)}, 6] (one row per image), got {array.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"{path}: latents_classes must be integers, got {classes.dtype}")
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"{path}: latents_values must be floats, got {values.dtype}")
    if len(imgs) == 0:
        raise ValueError(f"{path}: the file holds no images")
    if classes.min() < 0 or np.any(classes[:, 0] != 0):
        raise ValueError(f"{path}: latents_classes must be >= 0 with a single colour class 0 in column 0")
    if max(int(imgs[i : i + CHUNK].max()) for i in range(0, len(imgs), CHUNK)) > 1:
        raise ValueError(f"{path}: imgs must be binary (0 or 1) as in dSprites")
    return imgs, classes[:, 1:].astype(np.int64)
