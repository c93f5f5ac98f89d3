"""Toy: three independent objects on a 32x32 canvas, for live training in the browser.

Each factor moves or stretches its own object in its own band of columns (left square: height; right
square: height; centre bar: length), so the factors are independent in the pixels as well as in the
data. A small MLP beta-TCVAE (6 latents, lr 2e-3, beta 6) gives traversals in which every active latent
moves one object after 2,000 steps, about a minute on one CPU thread. A factor is often carried by two
latents: factor disintegration (docs/design.md, "Factor disintegration") on a dataset small enough to watch it happen.
"""

import numpy as np

from mtc_core.data.base import GroundTruthDataset

SQUARE = 6  # side of the two squares, px
BAR_WIDTH = 4  # width of the centre bar, px


class Toy(GroundTruthDataset):
    """Factors `left` and `right` (vertical position of a square in the left / right band) and `bar`
    (length of a vertical bar centred in the middle band), each with `levels` values.

    Bands (columns) for size 32: left 3-8, bar 14-17, right 23-28; they never overlap, so changing one
    factor changes pixels in its band only.
    """

    name = "toy"
    factor_names = ("left", "right", "bar")
    summary = "Toy: two squares that slide up and down and a bar that stretches, each in its own band; trains live in a minute."

    def __init__(self, *, size: int = 32, levels: int = 12):
        for key, value, low in (("size", size, 24), ("levels", levels, 2)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"Toy: {key} must be an integer >= {low}, got {value!r}")
        travel = size - SQUARE - 4  # squares move between rows 2 and size - 2 - SQUARE
        if levels - 1 > travel:
            raise ValueError(f"Toy: {levels} levels do not fit on a {size} px canvas; use at most {travel + 1}")
        self.size, self.levels = int(size), int(levels)
        self.factor_sizes = (levels, levels, levels)
        self.image_shape = (1, size, size)
        steps = np.arange(levels) / (levels - 1)
        self._tops = 2 + np.round(steps * travel).astype(np.int64)
        self._lengths = 4 + 2 * np.round(steps * (size - 8) / 2).astype(np.int64)  # even: the bar stays centred
        centre = size // 2
        self._bands = {"left": (centre - 13, centre - 13 + SQUARE), "bar": (centre - BAR_WIDTH // 2, centre + BAR_WIDTH // 2),
                       "right": (centre + 7, centre + 7 + SQUARE)}

    def band(self, factor: str) -> tuple[int, int]:
        """Columns [start, stop) of the object that `factor` controls."""
        return self._bands[factor]

    def _render(self, factors: np.ndarray) -> np.ndarray:
        rows = np.arange(self.size)
        top_left, top_right = self._tops[factors[:, 0]], self._tops[factors[:, 1]]
        half = self._lengths[factors[:, 2]] // 2
        masks = {
            "left": (rows >= top_left[:, None]) & (rows < top_left[:, None] + SQUARE),  # [N, size] over rows
            "right": (rows >= top_right[:, None]) & (rows < top_right[:, None] + SQUARE),
            "bar": (rows >= self.size // 2 - half[:, None]) & (rows < self.size // 2 + half[:, None]),
        }
        images = np.zeros((len(factors), 1, self.size, self.size), dtype=np.float32)
        for name, (start, stop) in self._bands.items():
            images[:, 0, :, start:stop] = masks[name][:, :, None]
        return images

    def spec(self) -> dict:
        return {"name": self.name, "size": self.size, "levels": self.levels}
