"""Colour- and noisy-dSprites (Locatello et al. 2019, ICML, "Challenging common assumptions ...", Sec. 5) on the
Shapes2D grid.

disentanglement_lib (`data/ground_truth/dsprites.py`) defines them from the binary dSprites image x in {0, 1}:
- `ColorDSprites`: x * c, one colour c ~ U[0.5, 1]^3 per image (the sprite is tinted, the background stays black);
- `NoisyDSprites`: min(x + u, 1), u ~ U[0, 1] independently per pixel and channel (the sprite stays white, the
  background becomes noise).
Both are RGB and keep the 5 dSprites factors; colour and noise are nuisances, not factors.

Where the randomness comes from. disentanglement_lib draws c and u afresh on every call. Here they are a fixed
function of (seed, flat grid index): `render(factors)` stays a function, so everything that renders the same factors
twice (the intervention metrics, traversals, the app, a resumed training) sees the same image, and a run is
reproduced by its dataset spec alone. Across grid points the draws are independent uniforms, as there; what differs
is that one grid point always shows the same colour or noise. The uniforms come from a counter-based generator:
SplitMix64's output function (Steele et al. 2014) applied to key(seed, stream) + counter x golden ratio, with the
counter = index x (values per image) + position; the top 24 bits give a float32 in [0, 1). No per-image loop.

scream-dSprites is not offered: its background is a crop of Munch's painting "The Scream" (disentanglement_lib
downloads the picture); a procedural texture would be another dataset, not comparable to published numbers.
"""

import numpy as np

from mtc_core.data.base import GroundTruthDataset
from mtc_core.data.shapes2d import IMAGE_SIZE, Shapes2D

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MAX_SEED = 2**32 - 1
COLOUR_STREAM, NOISE_STREAM = 1, 2


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_uniforms(seed: int, stream: int, index: np.ndarray, count: int) -> np.ndarray:
    """`count` uniforms in [0, 1) per flat index: float32 `[len(index), count]`, a pure function of its arguments."""
    key = _mix(np.array([seed * 4 + stream], dtype=np.uint64))[0]  # distinct seeds and streams get unrelated keys
    counter = np.asarray(index, dtype=np.uint64)[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)
    bits = _mix(key + counter * GOLDEN)
    return (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


class _Shapes2DVariant(GroundTruthDataset):
    factor_names = Shapes2D.factor_names
    factor_classes = Shapes2D.factor_classes
    factor_sizes = Shapes2D.factor_sizes
    image_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def __init__(self, *, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"{type(self).__name__}: seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
        self.seed = int(seed)
        self._shapes = Shapes2D()

    def spec(self) -> dict:
        return {"name": self.name, "seed": self.seed}


class ColorDSprites(_Shapes2DVariant):
    """Shapes2D sprites tinted by one colour per image, each channel uniform in [0.5, 1] (disentanglement_lib's
    `ColorDSprites`); black background. The colour is a function of (seed, grid index)."""

    name = "color_dsprites"
    summary = ("Colour-dSprites (Locatello et al. 2019) on the Shapes2D grid: each sprite tinted by a random colour "
               "(each channel uniform in [0.5, 1], fixed per image by the seed) on black.")

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n = len(factors)
        sprites = self._shapes.render(factors).reshape(n, 1, IMAGE_SIZE**2)  # in {0, 1}
        colours = 0.5 + 0.5 * counter_uniforms(self.seed, COLOUR_STREAM, self.factors_to_index(factors), 3)
        # flat pixels keep numpy's broadcasting loop long (3-4x faster than broadcasting over [64, 64])
        return (sprites * colours[:, :, None]).reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE)


class NoisyDSprites(_Shapes2DVariant):
    """White Shapes2D sprites on a background of uniform noise, independent per pixel and channel
    (disentanglement_lib's `NoisyDSprites`: min(x + u, 1)). The noise is a function of (seed, grid index)."""

    name = "noisy_dsprites"
    summary = ("Noisy-dSprites (Locatello et al. 2019) on the Shapes2D grid: a white sprite on uniform noise "
               "(independent per pixel and channel, fixed per image by the seed).")

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n = len(factors)
        sprites = self._shapes.render(factors)
        noise = counter_uniforms(self.seed, NOISE_STREAM, self.factors_to_index(factors), 3 * IMAGE_SIZE**2)
        # min(x + u, 1) with x in {0, 1} and u in [0, 1) is max(x, u)
        return np.maximum(noise.reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE), sprites)
