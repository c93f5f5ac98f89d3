"""Squares: a filled square on a small canvas that moves and grows.

Three factors and 1,024 images of 32x32 by default, the setting of the first probe in docs/design.md, "RTC-VAE" (32x32 squares
with 3 factors). Its two position factors share one object, so a VAE needs far longer than a minute to align
them with its axes (measured: beta-VAE / beta-TCVAE after 2,000-3,000 steps still mix posX and posY); the live
demo uses `Toy` instead.
"""

import numpy as np

from mtc_core.data.base import GroundTruthDataset


class Squares(GroundTruthDataset):
    """A white axis-aligned square on black: factors posX, posY (num_positions each) and scale (num_scales).

    Square sides grow in steps of 2 px from size // 8 (rounded up to even), so every scale step adds a ring of
    pixels around the same centre. Centres sit on pixel corners at round(linspace(side_max / 2, size - side_max / 2)),
    so the largest square stays inside the canvas and every position step moves the square.
    """

    name = "squares"
    factor_names = ("posX", "posY", "scale")
    summary = "Squares: a white square on black that moves and grows (the 32x32 probe of docs/design.md: RTC-VAE)."

    def __init__(self, *, size: int = 32, num_positions: int = 16, num_scales: int = 4):
        for key, value, low in (("size", size, 8), ("num_positions", num_positions, 2), ("num_scales", num_scales, 1)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"Squares: {key} must be an integer >= {low}, got {value!r}")
        self.size, self.num_positions, self.num_scales = int(size), int(num_positions), int(num_scales)
        first = 2 * -(-size // 16)  # size / 8 rounded up to an even number of pixels
        self._sides = first + 2 * np.arange(num_scales)
        span = size - self._sides[-1]  # room for the centre of the largest square
        if span < num_positions - 1:
            raise ValueError(
                f"Squares: {num_positions} positions do not fit on a {size} px canvas with squares up to "
                f"{self._sides[-1]} px; use at most {max(span + 1, 0)} positions or fewer scales"
            )
        self._centres = self._sides[-1] // 2 + np.round(np.linspace(0, span, num_positions)).astype(np.int64)
        self.factor_sizes = (num_positions, num_positions, num_scales)
        self.image_shape = (1, size, size)

    def _render(self, factors: np.ndarray) -> np.ndarray:
        pos_x, pos_y, scale = factors.T
        half = self._sides[scale] // 2
        top, left = self._centres[pos_y] - half, self._centres[pos_x] - half
        pixels = np.arange(self.size)
        rows = (pixels >= top[:, None]) & (pixels < (top + 2 * half)[:, None])  # [N, size]
        cols = (pixels >= left[:, None]) & (pixels < (left + 2 * half)[:, None])
        return (rows[:, :, None] & cols[:, None, :]).astype(np.float32)[:, None]

    def spec(self) -> dict:
        return {"name": self.name, "size": self.size, "num_positions": self.num_positions, "num_scales": self.num_scales}
