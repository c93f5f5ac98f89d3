"""Base class of the ground-truth datasets: a full grid of factor classes, one image per grid point.

Factors are integer classes, points x factors `[N, K]`. A flat index enumerates the grid in C order (last factor
fastest), which is the row order of the dSprites file.
"""

import json

import numpy as np


class GroundTruthDataset:
    """A dataset defined by a factor grid and a deterministic renderer.

    Subclasses set `name`, `factor_names`, `factor_sizes`, `image_shape` and a one-sentence `summary`, and implement
    `_render(factors)` (factors already validated) and `spec()`.
    """

    name: str  # registry key in mtc_core.data.DATASETS
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_shape: tuple[int, int, int]  # (C, H, W)
    summary: str  # first sentence of describe()
    factor_classes: dict[str, tuple[str, ...]] = {}  # factor name -> its classes' names, where they have names

    def class_names(self, k: int) -> tuple[str, ...] | None:
        """The names of factor k's classes ("cube", "cylinder", ...), or None where the classes are only numbered
        (or a file's grid has another number of them than the names)."""
        names = self.factor_classes.get(self.factor_names[k])
        return names if names is not None and len(names) == self.factor_sizes[k] else None

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor tuples drawn uniformly from the grid: `[n, K]` int64."""
        n = _check_count(n)
        return rng.integers(0, self.factor_sizes, size=(n, self.num_factors), dtype=np.int64)

    def render(self, factors) -> np.ndarray:
        """factors `[N, K]` int -> images `[N, C, H, W]` float32 in [0, 1]; the same factors give the same images."""
        images = self._render(self.check_factors(factors))
        assert images.shape == (len(images), *self.image_shape), f"renderer returned {images.shape}"
        return images

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(images `[n, C, H, W]`, factors `[n, K]`) for n uniform grid points."""
        factors = self.sample_factors(n, rng)
        return self.render(factors), factors

    def index_to_factors(self, index) -> np.ndarray:
        """flat indices `[N]` -> factors `[N, K]` int64 (C order, last factor fastest)."""
        index = np.asarray(index)
        if index.ndim != 1:
            raise ValueError(f"index must be 1-D [N], got shape {index.shape}")
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"index must be integers, got dtype {index.dtype}")
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise ValueError(f"index must be in [0, {len(self)}), got values in [{index.min()}, {index.max()}]")
        return np.stack(np.unravel_index(index.astype(np.int64), self.factor_sizes), axis=1).astype(np.int64)

    def factors_to_index(self, factors) -> np.ndarray:
        """factors `[N, K]` -> flat indices `[N]` int64."""
        return np.ravel_multi_index(tuple(self.check_factors(factors).T), self.factor_sizes).astype(np.int64)

    def check_factors(self, factors) -> np.ndarray:
        """Validated copy of factors as `[N, K]` int64; ValueError naming the first bad factor."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(f"factors must have shape [N, {self.num_factors}] for {self.factor_names}, got shape {factors.shape}")
        if factors.size and not np.issubdtype(factors.dtype, np.integer):
            raise ValueError(f"factors must be integer classes, got dtype {factors.dtype}")
        factors = factors.astype(np.int64)
        for k, (fname, size) in enumerate(zip(self.factor_names, self.factor_sizes, strict=True)):
            column = factors[:, k]
            if column.size and (column.min() < 0 or column.max() >= size):
                raise ValueError(f"factor '{fname}' must be in [0, {size}), got values in [{column.min()}, {column.max()}]")
        return factors

    def spec(self) -> dict:
        """JSON-serialisable {"name": ..., **constructor kwargs}; make_dataset(spec) rebuilds an equal dataset."""
        raise NotImplementedError

    def describe(self) -> str:
        """One paragraph for the app: what the images show, the factors and their sizes, the image size."""
        factors = ", ".join(f"{fname} ({size})" for fname, size in zip(self.factor_names, self.factor_sizes, strict=True))
        c, h, w = self.image_shape
        channels = "single-channel" if c == 1 else f"{c}-channel"
        return f"{self.summary} Factors: {factors}; {len(self):,} images of {h}x{w} pixels, {channels}."

    def _render(self, factors: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(json.dumps(self.spec(), sort_keys=True))

    def __repr__(self) -> str:
        kwargs = ", ".join(f"{key}={value!r}" for key, value in self.spec().items() if key != "name")
        return f"{type(self).__name__}({kwargs})"


def _check_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"n must be an integer, got {n!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(n)
