"""Shapes2D: a procedural dSprites (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset).

Same factor grid as the dSprites file, drawn by implicit functions instead of read from disk.
"""

import functools

import numpy as np

from mtc_core.data.base import GroundTruthDataset

IMAGE_SIZE = 64
SPRITE_HALF = 12  # sprites are (2 * 12 + 1)^2 pixels, centred on their middle pixel
RADIUS = 10.5  # circumradius in pixels of every shape at scale 1: at most 21 px across in any orientation
SUPERSAMPLE = 4  # 4 x 4 points per pixel; a pixel is on when at least half of them are inside the shape
# The shape turns about a point 7/16 px right and 3/16 px below the sprite's middle pixel centre: off the pixel
# lattice's own symmetry axes, so that a 9.2 deg orientation step changes some pixel even for the smallest square.
CENTRE_OFFSET = (7 / 16, 3 / 16)

SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)  # both endpoints, as dSprites: orientation 39 is orientation 0
POSITIONS = np.linspace(0.0, 1.0, 32)

HEART_CENTRE = 0.2935  # centroid height of the heart curve below, so it turns about its middle
HEART_RADIUS = 1.2935  # its circumradius about that centroid


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership in a shape of circumradius 1 centred at the origin; (u, v) with v pointing up."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / np.sqrt(2)
    if shape == "ellipse":
        return u**2 + (v / 0.5) ** 2 <= 1  # semi-axes 1 and 1/2
    # heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0: point at y = -1, lobes up to y = 1.236
    x, y = u * HEART_RADIUS, v * HEART_RADIUS + HEART_CENTRE
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


@functools.cache
def sprite_table() -> np.ndarray:
    """All 3 * 6 * 40 sprites, `[shape, scale, orientation, 25, 25]` bool, read-only.

    Orientation 39 (2 pi) is drawn with angle 0, so that the two endpoints give bit-identical sprites.
    """
    side = 2 * SPRITE_HALF + 1
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    samples = (np.arange(side)[:, None] - SPRITE_HALF + sub[None, :]).reshape(-1)  # [side * SUPERSAMPLE]
    px = samples[None, :] - CENTRE_OFFSET[0]  # sample points relative to the centre of rotation, y up
    py = CENTRE_OFFSET[1] - samples[:, None]
    angles = 2 * np.pi * (np.arange(len(ORIENTATIONS)) % (len(ORIENTATIONS) - 1)) / (len(ORIENTATIONS) - 1)
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    table = np.zeros((len(SHAPES), len(SCALES), len(ORIENTATIONS), side, side), dtype=bool)
    for s, shape in enumerate(SHAPES):
        for c, scale in enumerate(SCALES):
            # rotate the sample points by -angle into the shape's frame: [orientation, rows, cols]
            u = (cos * px + sin * py) / (RADIUS * scale)
            v = (-sin * px + cos * py) / (RADIUS * scale)
            hits = _inside(shape, u, v).reshape(len(angles), side, SUPERSAMPLE, side, SUPERSAMPLE)
            table[s, c] = hits.sum(axis=(2, 4)) * 2 >= SUPERSAMPLE**2
    assert not (table[..., 0, :].any() or table[..., -1, :].any() or table[..., 0].any() or table[..., -1].any()), (
        "a sprite touches its border: raise SPRITE_HALF"
    )
    table.flags.writeable = False
    return table


def position_pixels() -> np.ndarray:
    """Centre pixel of the sprite for each of the 32 positions (same for x and y), `[32]` int64, strictly increasing."""
    span = IMAGE_SIZE - 1 - 2 * SPRITE_HALF  # the whole sprite stays inside the image
    return SPRITE_HALF + np.round(POSITIONS * span).astype(np.int64)


class Shapes2D(GroundTruthDataset):
    """Procedural dSprites: 3 shapes x 6 scales x 40 orientations x 32 x 32 positions, 64x64 binary.

    Exactly dSprites' factor grid: shape (square, ellipse, heart), scale linspace(0.5, 1, 6), orientation
    linspace(0, 2 pi, 40), posX and posY linspace(0, 1, 32). posX moves the sprite right, posY down.
    Each (shape, scale, orientation) has one precomputed 25x25 sprite (circumradius 10.5 px at scale 1,
    turning about a point just off the middle pixel centre, 4x4 supersampled, a pixel on when half its area
    is inside); a position places it by translation,
    centre pixel 12 + round(pos * 39), so the sprite never leaves the image and every position step moves it.

    Identical sprites, counted over the whole sprite table by tests/test_data.py:
    - orientation 39 (2 pi) equals orientation 0 for every shape and scale: 18 pairs, the only exact
      symmetry on this grid. The orientation step is 2 pi / 39 and 39 is odd, so the square's 90 deg and
      the ellipse's 180 deg periods fall between grid points.
    - consecutive orientations (o, o + 1): 0 pairs; every single orientation step changes the sprite.
    - other pairs of orientations of one shape and scale: 8, all squares at scales 0.5 to 0.8 whose angles
      differ by 2.3 deg from a multiple of 90 deg (10 or 29 steps), too little to move a pixel.
      Ellipse and heart: none.
    - different shapes at the same scale and orientation: 0 pairs; the area grows strictly with scale.
    Position steps always move the sprite, so these are all the single-factor changes that leave an image as is.
    """

    name = "shapes2d"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    factor_classes = {"shape": SHAPES}
    factor_sizes = (len(SHAPES), len(SCALES), len(ORIENTATIONS), len(POSITIONS), len(POSITIONS))
    image_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    summary = (
        "Procedural dSprites: a white square, ellipse or heart on black, rotated, scaled and moved over the exact "
        "dSprites factor grid (orientation 0 and 2 pi coincide, as in dSprites)."
    )

    def __init__(self):
        side = 2 * SPRITE_HALF + 1
        self._sprites = sprite_table().reshape(-1, side * side)  # [720, 625]
        self._centres = position_pixels()
        rows, cols = np.divmod(np.arange(side * side), side)
        self._offsets = (rows - SPRITE_HALF) * IMAGE_SIZE + (cols - SPRITE_HALF)  # sprite pixel -> flat image offset

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n = len(factors)
        shape, scale, orientation, pos_x, pos_y = factors.T
        sprite = self._sprites[(shape * len(SCALES) + scale) * len(ORIENTATIONS) + orientation]  # [n, 625]
        centre = np.arange(n) * IMAGE_SIZE**2 + self._centres[pos_y] * IMAGE_SIZE + self._centres[pos_x]
        images = np.zeros((n, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        images.reshape(-1)[(centre[:, None] + self._offsets)[sprite]] = 1.0
        return images

    def render_torch(self, factors):
        """`render` in torch on the device of `factors` (a `[N, 5]` int64 tensor of valid factors, as `sample_factors`
        draws them): the same 0/1 pixels, `[N, 1, 64, 64]` float32 there, without a sync (no boolean indexing)."""
        import torch

        sprites, centres, offsets = self._device_tables(factors.device)
        shape, scale, orientation, pos_x, pos_y = factors.unbind(1)
        sprite = sprites[(shape * len(SCALES) + scale) * len(ORIENTATIONS) + orientation]  # [n, 625] 0 / 1
        place = (centres[pos_y] * IMAGE_SIZE + centres[pos_x])[:, None] + offsets  # [n, 625] distinct pixels per image
        images = torch.zeros(len(factors), IMAGE_SIZE * IMAGE_SIZE, dtype=torch.float32, device=factors.device)
        return images.scatter_(1, place, sprite).view(len(factors), 1, IMAGE_SIZE, IMAGE_SIZE)

    def _device_tables(self, device):
        """The sprite table (float32 0/1), centre pixels and sprite offsets as tensors on `device`, made once per device."""
        import torch

        cache = self.__dict__.setdefault("_on_device", {})
        if device not in cache:
            cache[device] = (torch.as_tensor(self._sprites.astype(np.float32), device=device),
                             torch.as_tensor(self._centres, device=device), torch.as_tensor(self._offsets, device=device))
        return cache[device]

    def spec(self) -> dict:
        return {"name": self.name}
