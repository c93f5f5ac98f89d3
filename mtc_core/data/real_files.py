"""Loaders for the real 3dshapes and MPI3D files, when a user has them. Nothing in a file is executed.

- `3dshapes.h5` (Burgess & Kim 2018, https://github.com/deepmind/3d-shapes): HDF5 with `images` uint8
  [480000, 64, 64, 3] and `labels` float64 [480000, 6] (floor hue, wall hue, object hue, scale, shape,
  orientation; orientation varies fastest). Read with h5py, which has no pickle; both arrays must be plain
  datasets stored in the file itself (no links to other files, no virtual or external storage). The labels are
  read once and checked to form a full grid in that order; images are read from the file as they are asked for.
- MPI3D (Gondal et al. 2019, https://github.com/rr-learning/disentanglement_dataset): `mpi3d_toy.npz`,
  `mpi3d_realistic.npz`, `mpi3d_real.npz` hold `images` uint8 [1036800, 64, 64, 3] and nothing else: the factor
  classes are the row's position in the grid object_color 6, object_shape 6, object_size 2, camera_height 3,
  background_color 3, horizontal_axis 40, vertical_axis 40 (C order, last fastest, as disentanglement_lib reads it).
  Read through data/npz.NpzArchive (headers checked before any data, never pickle). A member stored uncompressed
  (`np.savez`) is memory-mapped; a compressed one (`np.savez_compressed`) is read into memory in chunks (12.7 GB for
  the full grid).
Both loaders read the grid from the file (3dshapes: the distinct label values; MPI3D: the `grid` argument, e.g.
"4,4,2,3,3,40,40" for mpi3d_complex), so small files in the same formats load too.
"""

import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from mtc_core.data.base import GroundTruthDataset
from mtc_core.data.npz import NpzArchive, describe_start, read_npy_header
from mtc_core.data.shapes3d import SHAPES

SHAPES3D_ENV, MPI3D_ENV = "MTC_3DSHAPES", "MTC_MPI3D"
MPI3D_GRID = "6,6,2,3,3,40,40"
MAX_IMAGES = 2**22  # 4.2 M images (3dshapes 480,000; MPI3D 1,036,800)
MAX_SIDE = 1024  # pixels of an image side (both: 64)
MAX_IN_MEMORY = 2**34  # bytes of images read into memory from a compressed .npz (MPI3D: 12.7 GB)
CHUNK = 16384  # images per read when a compressed .npz is loaded


def _resolve_path(path, env_var: str, what: str, where: str) -> Path:
    if path is None:
        path = os.environ.get(env_var)
    if not path:
        raise ValueError(f"{what} needs the path of the file: pass path=... (a dataset spec field) or set the environment "
                         f"variable {env_var}; the file is at {where}")
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"the {what} path must be a string, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}" if not path.exists() else f"{what}: {path} is not a regular file")
    return path


def _check_images(where: str, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, int, int]:
    """(N, H, W) of images [N, H, W, 3] uint8; ValueError naming the problem otherwise."""
    if dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8, got {dtype}")
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"{where}: images must have shape [N, H, W, 3] (RGB), got {tuple(shape)}")
    num, height, width, _ = shape
    if num == 0 or height == 0 or width == 0:
        raise ValueError(f"{where}: images has shape {tuple(shape)}; no images to read")
    if num > MAX_IMAGES or max(height, width) > MAX_SIDE:
        raise ValueError(f"{where}: images has shape {tuple(shape)}; at most {MAX_IMAGES:,} images of up to {MAX_SIDE} x {MAX_SIDE} "
                         "pixels are read")
    return int(num), int(height), int(width)


def _to_float(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) * np.float32(1 / 255)


class Shapes3DFile(GroundTruthDataset):
    """The 3dshapes images, looked up by factor tuple (floor_hue, wall_hue, object_hue, scale, shape, orientation)."""

    name = "3dshapes"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_classes = {"shape": SHAPES}  # 3dshapes' order (DeepMind's README), which Shapes3D keeps
    summary = "3dshapes (Burgess & Kim 2018), read from the original file: an object on a floor in front of a wall."

    def __init__(self, path=None):
        import h5py  # only this loader needs it

        self.path = _resolve_path(path, SHAPES3D_ENV, "3dshapes", "https://github.com/deepmind/3d-shapes")
        with self.path.open("rb") as f:
            head = f.read(64)
        if not head.startswith(b"\x89HDF\r\n\x1a\n"):
            found = "a zip archive (an .npz?)" if head.startswith(b"PK") else describe_start(head)
            raise ValueError(f"{self.path} is not an HDF5 file: it is {found}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise ValueError(f"{self.path}: cannot open as HDF5 ({' '.join(str(e).split())[:200]})") from None
        try:
            images, labels = (_h5_dataset(self._file, key) for key in ("images", "labels"))
            num, height, width = _check_images(f"{self.path}", images.shape, images.dtype)
            if labels.dtype.kind != "f" or labels.dtype.fields is not None or labels.shape != (num, 6):
                raise ValueError(f"{self.path}: labels must be floats of shape [{num}, 6] (one row of 6 factor values per image), "
                                 f"got {labels.dtype} {labels.shape}")
            values = labels[()].astype(np.float64)
            self.factor_sizes, self.factor_values = _grid_from_labels(self.path, values)
        except BaseException:
            self._file.close()
            raise
        self._images = images
        self.image_shape = (3, height, width)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        index = self.factors_to_index(factors)
        unique, inverse = np.unique(index, return_inverse=True)  # h5py reads increasing indices without repeats
        if len(unique) and unique[-1] - unique[0] + 1 == len(unique):
            block = self._images[int(unique[0]) : int(unique[-1]) + 1]  # a run of rows: one slice, much faster
        else:
            block = self._images[unique] if len(unique) else np.zeros((0, *self._images.shape[1:]), np.uint8)
        return _to_float(block[inverse])

    def spec(self) -> dict:
        return {"name": self.name, "path": str(self.path)}


def _h5_dataset(file, key: str):
    """file[key], which must be a plain dataset stored in this file; ValueError naming the problem otherwise."""
    import h5py

    link = file.get(key, getlink=True)
    if link is None:
        raise ValueError(f"{file.filename} lacks the dataset {key!r}; a 3dshapes file holds 'images' and 'labels', this one "
                         f"holds {sorted(file.keys())[:20]}")
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{file.filename}: {key!r} is a link ({type(link).__name__}) to somewhere else, not data in this file; refused")
    node = file[key]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{file.filename}: {key!r} is a {type(node).__name__}, not an array")
    if node.is_virtual or node.external:
        raise ValueError(f"{file.filename}: {key!r} keeps its data in other files (virtual or external storage); refused")
    return node


def _grid_from_labels(path: Path, values: np.ndarray) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]]:
    """Factor sizes and each factor's sorted values from labels [N, 6], which must be a full grid in C order."""
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: labels hold NaN or infinite values")
    levels, classes = [], []
    for column in values.T:
        unique, inverse = np.unique(column, return_inverse=True)
        levels.append(unique)
        classes.append(inverse.reshape(-1))
    sizes = tuple(len(level) for level in levels)
    if math.prod(sizes) != len(values):
        raise ValueError(f"{path}: the labels' distinct values span a grid of {' x '.join(map(str, sizes))} = {math.prod(sizes):,} "
                         f"points, but the file holds {len(values):,} images; 3dshapes holds every combination exactly once")
    expected = np.stack(np.unravel_index(np.arange(len(values)), sizes), axis=1)
    if not np.array_equal(np.stack(classes, axis=1), expected):
        raise ValueError(f"{path}: labels are not in the 3dshapes order (every combination once, floor hue slowest, "
                         "orientation fastest)")
    return sizes, tuple(levels)


class MPI3DFile(GroundTruthDataset):
    """MPI3D images, looked up by factor tuple; the grid is the `grid` argument (MPI3D's unless told otherwise)."""

    name = "mpi3d"
    factor_names = ("object_color", "object_shape", "object_size", "camera_height", "background_color", "horizontal_axis",
                    "vertical_axis")
    summary = "MPI3D (Gondal et al. 2019), read from the original file: a robot arm holding an object, seen by one of three cameras."

    def __init__(self, path=None, grid: str = MPI3D_GRID):
        self.grid = grid
        self.factor_sizes = _parse_grid(grid)
        self.path = _resolve_path(path, MPI3D_ENV, "MPI3D", "https://github.com/rr-learning/disentanglement_dataset")
        with NpzArchive(self.path) as archive:
            for key, info in archive.info.items():
                if info.dtype.hasobject:
                    raise ValueError(f"{self.path}: {key} holds Python objects, which cannot be read without pickle (refused)")
            if "images" not in archive.info:
                raise ValueError(f"{self.path} lacks the key 'images'; an MPI3D file holds 'images', this one has {archive.keys}")
            info = archive.info["images"]
            num, height, width = _check_images(f"{self.path}", info.shape, info.dtype)
            if info.fortran_order:
                raise ValueError(f"{self.path}: images is stored in Fortran order; MPI3D is C order")
            if num != math.prod(self.factor_sizes):
                raise ValueError(f"{self.path}: images holds {num:,} images but the grid {grid} has {math.prod(self.factor_sizes):,} "
                                 "points (pass grid=... for another MPI3D variant)")
            self._images = _stored_memmap(self.path, "images", info.shape)
            if self._images is None:
                if info.nbytes > MAX_IN_MEMORY:
                    raise ValueError(f"{self.path}: images is compressed and would take {info.nbytes / 1e9:.1f} GB in memory (limit "
                                     f"{MAX_IN_MEMORY / 1e9:.1f} GB); re-save it uncompressed (np.savez) to read it memory-mapped")
                self._images = np.empty(info.shape, np.uint8)
                for start, block in zip(range(0, num, CHUNK), archive.chunks("images", CHUNK), strict=True):
                    self._images[start : start + len(block)] = block
        self.image_shape = (3, height, width)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        return _to_float(self._images[self.factors_to_index(factors)])

    def spec(self) -> dict:
        return {"name": self.name, "path": str(self.path), "grid": self.grid}


def _parse_grid(grid) -> tuple[int, ...]:
    """"6,6,2,3,3,40,40" -> (6, 6, 2, 3, 3, 40, 40): seven sizes >= 1 (a string, so that a dataset spec stays flat)."""
    if not isinstance(grid, str) or len(grid) > 100:
        raise ValueError(f"MPI3D grid must be a string of 7 comma-separated sizes like {MPI3D_GRID!r}, got {grid!r}")
    try:
        sizes = tuple(int(part) for part in grid.split(","))
    except ValueError:
        raise ValueError(f"MPI3D grid must be 7 comma-separated integers like {MPI3D_GRID!r}, got {grid!r}") from None
    if len(sizes) != 7 or min(sizes) < 1 or math.prod(sizes) > MAX_IMAGES:
        raise ValueError(f"MPI3D grid must be 7 sizes >= 1 with at most {MAX_IMAGES:,} points in all, like {MPI3D_GRID!r}, "
                         f"got {grid!r}")
    return sizes


def _stored_memmap(path: Path, key: str, shape: tuple[int, ...]) -> np.memmap | None:
    """A read-only memory map of an uncompressed (stored) .npz member, or None when it is compressed. Its .npy header
    is re-read here only for its length; NpzArchive has checked its content and the member's size."""
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo(f"{key}.npy")
        if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1:
            return None
    with path.open("rb") as f:
        f.seek(member.header_offset)
        local = f.read(30)  # the local file header: its name and extra-field lengths can differ from the central directory's
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: the zip entry of {key} is damaged")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        f.seek(member.header_offset + 30 + name_length + extra_length)
        start = f.tell()
        header_shape, _, dtype = read_npy_header(f)
        offset = f.tell()
    if tuple(header_shape) != tuple(shape) or dtype != np.uint8 or offset - start + math.prod(shape) != member.file_size:
        raise ValueError(f"{path}: the stored member {key} does not match its header")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=tuple(shape))
