"""DSpritesFile: the real dSprites archive (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset).

The file `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` holds `imgs` uint8 [737280, 64, 64] in {0, 1},
`latents_classes` int64 [737280, 6] and `latents_values` float64 [737280, 6]; latent 0 is the colour (one value)
and is dropped. It is loaded without pickle and checked before use; nothing in the file is executed.
"""

import math
import os
from pathlib import Path

import numpy as np

from mtc_core.data.base import GroundTruthDataset
from mtc_core.data.npz import NpzArchive
from mtc_core.data.shapes2d import SHAPES

ENV_VAR = "MTC_DSPRITES"
FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
KEYS = ("imgs", "latents_classes", "latents_values")
CHUNK = 65536  # images read and packed per step, to bound the temporary memory
MAX_IMAGES = 2**22  # 4.2 M images (dSprites has 737,280)
MAX_SIDE = 1024  # pixels of an image side (dSprites: 64)
MAX_PIXELS = 2**33  # pixels in all: 1 GB bit-packed in memory (dSprites: 3.0 G pixels, 377 MB packed)


class DSpritesFile(GroundTruthDataset):
    """The dSprites images, looked up by factor tuple: shape, scale, orientation, posX, posY.

    Factor sizes are read from the file (max class + 1), so a small file in the same format, e.g. a 3x2x2x4x4 grid,
    loads too. Images are kept bit-packed (1/8 of the 3 GB the file expands to) and are read in chunks, so the
    file is never held expanded; shapes and dtypes are checked from the array headers before any data is read.
    """

    name = "dsprites"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    factor_classes = {"shape": SHAPES}  # dSprites' order, which Shapes2D keeps
    summary = "dSprites (Matthey et al. 2017), read from the original file: a white square, ellipse or heart on black."

    def __init__(self, path=None):
        if path is None:
            path = os.environ.get(ENV_VAR)
        if not path:
            raise ValueError(
                f"DSpritesFile needs the path of {FILE_NAME}: pass path=... (CLI flag) or set the environment "
                f"variable {ENV_VAR}; the file is at https://github.com/deepmind/dsprites-dataset"
            )
        if not isinstance(path, str | os.PathLike):
            raise ValueError(f"the dSprites path must be a string, got {type(path).__name__}")
        self.path = Path(path)
        if not self.path.exists():
            raise ValueError(f"dSprites file not found: {self.path}")
        with NpzArchive(self.path) as archive:
            num_images, height, width = _check_headers(archive)
            classes = _read_classes(archive, num_images)
            self.factor_sizes = tuple(int(size) for size in classes.max(axis=0) + 1)
            self.image_shape = (1, height, width)
            if math.prod(self.factor_sizes) != num_images:
                raise ValueError(
                    f"{self.path}: imgs holds {num_images} images but the latent classes span a grid of "
                    f"{' x '.join(map(str, self.factor_sizes))} = {math.prod(self.factor_sizes)}"
                )
            if not np.array_equal(self.index_to_factors(np.arange(num_images)), classes):
                raise ValueError(f"{self.path}: latents_classes are not in row-major order (last factor fastest) as in dSprites")
            self._width = width
            self._packed = np.empty((num_images, height, (width + 7) // 8), dtype=np.uint8)
            for start, block in zip(range(0, num_images, CHUNK), archive.chunks("imgs", CHUNK), strict=True):
                if block.max() > 1:
                    raise ValueError(f"{self.path}: imgs must be binary (0 or 1) as in dSprites")
                self._packed[start : start + len(block)] = np.packbits(block, axis=-1)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        packed = self._packed[self.factors_to_index(factors)]
        return np.unpackbits(packed, axis=-1, count=self._width).astype(np.float32)[:, None]

    def spec(self) -> dict:
        return {"name": self.name, "path": str(self.path)}


def _check_headers(archive: NpzArchive) -> tuple[int, int, int]:
    """(N, H, W) of a dSprites-format archive from its array headers alone; ValueError naming the key otherwise."""
    path = archive.path
    missing = [key for key in KEYS if key not in archive.info]
    if missing:
        raise ValueError(f"{path} lacks the key(s) {missing}; a dSprites file has {KEYS}, this one has {archive.keys}")
    for key in KEYS:
        if archive.info[key].dtype.hasobject:
            raise ValueError(f"{path}: {key} holds Python objects, which cannot be read without pickle (refused)")
    imgs = archive.info["imgs"]
    if len(imgs.shape) != 3 or imgs.dtype != np.uint8:
        raise ValueError(f"{path}: imgs must be uint8 [N, H, W], got {imgs.dtype} {imgs.shape}")
    if imgs.fortran_order:
        raise ValueError(f"{path}: imgs is stored in Fortran order; dSprites is C order")
    num_images, height, width = imgs.shape
    if num_images == 0:
        raise ValueError(f"{path}: the file holds no images (imgs has shape {imgs.shape})")
    if height == 0 or width == 0:
        raise ValueError(f"{path}: imgs holds zero-size images (shape {imgs.shape}, images of {height}x{width} pixels)")
    if num_images > MAX_IMAGES or max(height, width) > MAX_SIDE or imgs.size > MAX_PIXELS:
        raise ValueError(f"{path}: imgs has shape {imgs.shape}; at most {MAX_IMAGES:,} images of up to {MAX_SIDE} x {MAX_SIDE} "
                         f"pixels and {MAX_PIXELS:,} pixels in all are read (dSprites: 737,280 x 64 x 64)")
    for key, kinds in (("latents_classes", "iu"), ("latents_values", "f")):
        info = archive.info[key]
        if info.shape != (num_images, 6):
            raise ValueError(f"{path}: {key} must have shape [{num_images}, 6] (one row per image), got {info.shape}")
        if info.dtype.kind not in kinds or info.dtype.fields is not None:
            raise ValueError(f"{path}: {key} must be {'integers' if kinds == 'iu' else 'floats'}, got {info.dtype}")
    return num_images, height, width


def _read_classes(archive: NpzArchive, num_images: int) -> np.ndarray:
    """Factor classes [N, 5] int64 (the colour column dropped), each in [0, N)."""
    classes = archive.read("latents_classes", max_bytes=num_images * 6 * 8)
    if classes.min() < 0 or np.any(classes[:, 0] != 0):
        raise ValueError(f"{archive.path}: latents_classes must be >= 0 with a single colour class 0 in column 0")
    if classes.max() >= num_images:
        raise ValueError(f"{archive.path}: latents_classes reach {classes.max()}, more classes than there are images")
    return classes[:, 1:].astype(np.int64)
