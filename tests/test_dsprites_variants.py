import json

import numpy as np
import pytest

from mtc_core.data import ColorDSprites, NoisyDSprites, Shapes2D, make_dataset
from mtc_core.data.dsprites_variants import COLOUR_STREAM, NOISE_STREAM, counter_uniforms


@pytest.fixture(scope="module")
def shapes() -> Shapes2D:
    return Shapes2D()


@pytest.mark.parametrize("cls", [ColorDSprites, NoisyDSprites])
def test_grid_is_shapes2d_with_rgb_images(cls, shapes):
    ds = cls()
    assert ds.factor_names == shapes.factor_names and ds.factor_sizes == shapes.factor_sizes and len(ds) == 737_280
    assert ds.image_shape == (3, 64, 64)
    factors = ds.sample_factors(40, np.random.default_rng(0))
    images = ds.render(factors)
    assert images.dtype == np.float32 and images.shape == (40, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, cls().render(factors))
    np.testing.assert_array_equal(images[5:6], ds.render(factors[5:6]))  # an image does not depend on its batch
    assert not np.array_equal(images, cls(seed=1).render(factors))
    assert make_dataset(json.loads(json.dumps(cls(seed=7).spec()))) == cls(seed=7) != cls(seed=8)


def test_color_dsprites_is_the_sprite_times_one_colour_in_half_to_one(shapes):
    ds = ColorDSprites(seed=3)
    factors = ds.sample_factors(2000, np.random.default_rng(1))
    images = ds.render(factors)
    sprites = shapes.render(factors)[:, 0].astype(bool)
    colours = images.max(axis=(2, 3))  # [N, 3]: each image's one colour
    assert np.array_equal(images, sprites[:, None] * colours[:, :, None, None])
    assert colours.min() >= 0.5 and colours.max() < 1.0
    # U[0.5, 1]: mean 0.75, sd 0.5 / sqrt(12) = 0.144; channels independent
    assert np.abs(colours.mean(axis=0) - 0.75).max() < 0.01
    assert np.abs(colours.std(axis=0) - 0.5 / np.sqrt(12)).max() < 0.01
    assert np.abs(np.corrcoef(colours.T) - np.eye(3)).max() < 0.08


def test_noisy_dsprites_keeps_the_sprite_white_on_uniform_noise(shapes):
    ds = NoisyDSprites(seed=0)
    factors = ds.sample_factors(200, np.random.default_rng(2))
    images = ds.render(factors)
    sprites = np.broadcast_to(shapes.render(factors).astype(bool), images.shape)
    assert (images[sprites] == 1).all()
    noise = images[~sprites].astype(np.float64)
    assert noise.max() < 1 and abs(noise.mean() - 0.5) < 0.003 and abs(noise.var() - 1 / 12) < 0.002
    pixels = images[:, :, 0, 0].astype(np.float64)  # one background pixel across images and channels: uncorrelated
    assert np.abs(np.corrcoef(pixels.T) - np.eye(3)).max() < 0.2


def test_counter_uniforms_are_a_function_of_seed_stream_and_index():
    index = np.array([0, 1, 2, 737_279, 349_525, 349_526])
    a = counter_uniforms(0, NOISE_STREAM, index, 12288)
    np.testing.assert_array_equal(a, counter_uniforms(0, NOISE_STREAM, index, 12288))
    np.testing.assert_array_equal(a[2:3], counter_uniforms(0, NOISE_STREAM, index[2:3], 12288))
    # no two images share their noise: also not 2^32 / 12288 indices apart, where a 32-bit counter would wrap
    assert len({row.tobytes() for row in a}) == len(index)
    assert not np.array_equal(a, counter_uniforms(1, NOISE_STREAM, index, 12288))
    assert not np.array_equal(counter_uniforms(0, COLOUR_STREAM, index, 3), a[:, :3])
    flat = counter_uniforms(5, COLOUR_STREAM, np.arange(50_000), 2).astype(np.float64)
    counts = np.histogram(flat, bins=20, range=(0, 1))[0]
    assert np.abs(counts / flat.size - 0.05).max() < 0.003  # 100,000 draws: bin sd 0.0007
    assert abs(np.corrcoef(flat[:, 0], flat[:, 1])[0, 1]) < 0.02


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        ColorDSprites(seed=seed)
