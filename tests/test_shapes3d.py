import colorsys
import json

import numpy as np
import pytest
import torch

from mtc_core import runs
from mtc_core.data import Shapes3D, make_dataset
from mtc_core.data.shapes3d import (
    AMBIENT,
    BAND,
    HUES,
    LIGHT,
    ORIENTATIONS,
    SCALES,
    SHAPES,
    SUPERSAMPLE,
    camera_rays,
    hsv_colours,
    intersect_object,
    intersect_room,
    object_normal,
    scene_tables,
)
from mtc_core.training.trainer import TrainConfig, train
from mtc_core.visualize import figures, traversal


@pytest.fixture(scope="module")
def shapes() -> Shapes3D:
    return Shapes3D()


def reference_image(factors) -> np.ndarray:
    """One image [3, 64, 64] ray by ray: shade every ray, colour it with colorsys, average 3 x 3 rays per pixel.
    Shares only the geometry with the renderer, not its tables, their band split, or the matrix product."""
    floor_hue, wall_hue, object_hue, scale, shape, orientation = factors
    origin, d = camera_rays(ORIENTATIONS[orientation : orientation + 1], (0, 64), (0, 64))
    origin, d = origin[0], d[0]
    t_room, is_floor, room_normal = intersect_room(origin, d)
    t_obj = intersect_object(shape, SCALES[scale], origin, d)
    hit = t_obj < t_room
    room = origin + t_room[..., None] * d
    to_light = LIGHT - room
    distance = np.linalg.norm(to_light, axis=-1)
    blocked = intersect_object(shape, SCALES[scale], room + 1e-7 * room_normal, to_light / distance[..., None]) < distance
    room_value = AMBIENT + (1 - AMBIENT) * np.maximum(0, np.sum(room_normal * to_light, -1) / distance) * ~blocked
    points = origin + np.where(hit, t_obj, 0)[..., None] * d
    normals = object_normal(shape, SCALES[scale], points)
    towards = (LIGHT - points) / np.linalg.norm(LIGHT - points, axis=-1, keepdims=True)
    obj_value = AMBIENT + (1 - AMBIENT) * np.maximum(0, np.sum(normals * towards, -1))
    rgb = {k: np.array(colorsys.hsv_to_rgb(HUES[h], 1.0, 1.0)) for k, h in (("floor", floor_hue), ("wall", wall_hue), ("obj", object_hue))}
    colour = np.where(hit[..., None], obj_value[..., None] * rgb["obj"],
                      room_value[..., None] * np.where(is_floor[..., None], rgb["floor"], rgb["wall"]))
    return colour.reshape(64, SUPERSAMPLE, 64, SUPERSAMPLE, 3).mean(axis=(1, 3)).transpose(2, 0, 1)


def test_grid_is_the_3dshapes_grid(shapes):
    assert shapes.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert shapes.factor_sizes == (10, 10, 10, 8, 4, 15) and len(shapes) == 480_000
    assert shapes.image_shape == (3, 64, 64)
    np.testing.assert_allclose(HUES, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], atol=1e-15)
    np.testing.assert_allclose(SCALES, [0.75 + k / 14 for k in range(8)])
    np.testing.assert_allclose(ORIENTATIONS, [-30 + 60 * k / 14 for k in range(15)])
    assert SHAPES == ("cube", "cylinder", "sphere", "capsule")


def test_index_order_is_the_files(shapes):
    # 3dshapes' get_index: sum_k factor_k * prod(sizes after k), orientation fastest
    factors = shapes.sample_factors(500, np.random.default_rng(0))
    bases = np.array([48000, 4800, 480, 60, 15, 1])
    np.testing.assert_array_equal(shapes.factors_to_index(factors), factors @ bases)
    np.testing.assert_array_equal(shapes.index_to_factors(np.array([1, 15, 60, 480, 4800, 48000, 479_999])),
                                  [[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0],
                                   [0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [9, 9, 9, 7, 3, 14]])


def test_render_matches_a_ray_by_ray_reference(shapes):
    factors = np.array([[0, 5, 2, 7, 0, 0], [3, 1, 8, 0, 1, 14], [9, 4, 6, 3, 2, 7], [6, 2, 0, 7, 3, 3], [1, 8, 4, 5, 3, 11]])
    images = shapes.render(factors)
    for image, row in zip(images, factors, strict=True):
        np.testing.assert_allclose(image, reference_image(row), atol=2e-6)


def test_deterministic_float32_in_unit_range(shapes):
    factors = shapes.sample_factors(300, np.random.default_rng(1))
    images = shapes.render(factors)
    assert images.dtype == np.float32 and images.shape == (300, 3, 64, 64) and images.flags.c_contiguous
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.9
    np.testing.assert_array_equal(images, shapes.render(factors))
    np.testing.assert_array_equal(images[7:8], shapes.render(factors[7:8]))  # a batch's images do not depend on the rest
    np.testing.assert_array_equal(images, Shapes3D().render(factors))
    assert shapes.render(np.zeros((0, 6), np.int64)).shape == (0, 3, 64, 64)


def test_every_single_factor_step_changes_the_image(shapes):
    rng = np.random.default_rng(2)
    base = shapes.sample_factors(200, rng)
    images = shapes.render(base)
    for k, size in enumerate(shapes.factor_sizes):
        moved = base.copy()
        moved[:, k] = (moved[:, k] + 1 + rng.integers(0, size - 1, len(base))) % size  # any other class of factor k
        change = np.abs(shapes.render(moved) - images).max(axis=(1, 2, 3))
        assert change.min() > 0.05, f"{shapes.factor_names[k]}: a change left an image (almost) as it was"


def test_tables_every_entry_distinct_and_every_surface_visible():
    band = scene_tables()["band"].reshape(len(SHAPES), len(SCALES), len(ORIENTATIONS), 3, -1).astype(np.float64)
    coverage = band.sum(axis=-1)  # [shape, scale, orientation, surface]
    assert (coverage > 20).all(), "floor, wall and object are each visible in every scene"
    assert (np.diff(coverage[..., 2], axis=1) > 0).all(), "the object's shaded area grows with scale"
    for axis in range(3):  # neighbouring shapes, scales and orientations give different masks
        step = np.abs(np.diff(band, axis=axis)).max(axis=(-2, -1))
        assert step.min() > 0.1
    colours = hsv_colours(HUES)
    assert np.abs(colours[:, None] - colours[None]).max(axis=-1)[~np.eye(10, dtype=bool)].min() > 0.3


def test_geometry_known_answers():
    a = 0.5  # scale 1: cube side 1, cylinder radius 0.5, sphere radius 0.5 centred 0.5 up, capsule radius 0.3
    origin, d = np.array([0.0, 0.3, 5.0]), np.array([0.0, 0.0, -1.0])  # towards the object, 0.3 above the floor
    depth = np.sqrt(a**2 - 0.2**2)  # the sphere's surface 0.2 below its centre
    for shape, expected_t, expected_normal in ((0, 5 - a, [0, 0, 1]), (1, 5 - a, [0, 0, 1]),
                                               (2, 5 - depth, [0, -0.2 / a, depth / a]), (3, 5 - 0.3, [0, 0, 1])):
        t = intersect_object(shape, 1.0, origin, d)
        assert t == pytest.approx(expected_t), SHAPES[shape]
        np.testing.assert_allclose(object_normal(shape, 1.0, origin + t * d), expected_normal, atol=1e-12)
    assert intersect_object(2, 1.0, np.array([2.0, 0.3, 5.0]), d) == np.inf
    t, is_floor, normal = intersect_room(np.array([0.0, 2.0, 0.0]), np.array([0.0, -1.0, 0.0]))
    assert t == pytest.approx(2.0) and is_floor and normal.tolist() == [0, 1, 0]
    t, is_floor, _ = intersect_room(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))
    assert t == pytest.approx(2.6) and not is_floor  # the corner, 2.6 behind the object


def test_hsv_colours_match_colorsys():
    hues = np.linspace(0, 1, 37, endpoint=False)
    expected = np.array([colorsys.hsv_to_rgb(h, 0.7, 1.0) for h in hues])
    np.testing.assert_allclose(hsv_colours(hues, 0.7), expected, atol=1e-12)


def test_band_holds_objects_and_shadows_only():
    tables = scene_tables()
    assert tables["top"].shape == (150, 3, BAND[0] * 64) and tables["bottom"].shape == (150, 3, (64 - BAND[1]) * 64)
    for table in tables.values():
        assert not table.flags.writeable


def test_spec_round_trip_and_describe(shapes):
    assert make_dataset(json.loads(json.dumps(shapes.spec()))) == shapes
    text = shapes.describe()
    assert "480,000 images of 64x64 pixels, 3-channel" in text and "orientation (15)" in text


def test_colour_images_train_traverse_and_draw(tmp_path, shapes):
    config = TrainConfig(model="beta_tcvae", dataset={"name": "shapes3d"}, steps=3, batch_size=8, lr=1e-3, eval_every=3,
                         eval_size=16, checkpoint_every=3, device="cpu")
    train(config, tmp_path / "run", command="pytest")
    model, saved = runs.load_run(tmp_path / "run")
    assert model.config.image_shape == (3, 64, 64) and model.config.architecture == "conv64"
    assert model.config.dataset_size == 480_000 and saved["dataset"] == {"name": "shapes3d"}
    images = shapes.render(shapes.sample_factors(4, np.random.default_rng(3)))
    x = torch.from_numpy(images)
    # Bernoulli likelihood on the [0, 1] intensities of all 3 x 64 x 64 values: logits 0 cost log 2 each, whatever x
    assert model.reconstruction(x, torch.zeros_like(x)).item() == pytest.approx(3 * 64 * 64 * np.log(2), rel=1e-6)
    mu, _ = traversal.encode_numpy(model, images)
    grid = traversal.traverse(model, mu[0], [0, 1], traversal.traversal_values(mu, 5))
    assert grid.shape == (2, 5, 3, 64, 64) and 0 <= grid.min() and grid.max() <= 1
    picture = figures.image_grid(np.stack([images[:3], images[1:]]), pad=2)
    assert picture.mode == "RGB" and picture.size == (3 * 66 + 2, 2 * 66 + 2)
    assert picture.getpixel((2 + 66 + 30, 2 + 40)) == tuple(int(v) for v in figures.to_uint8(images[1])[40, 30])


def test_class_names_where_the_classes_have_names():
    from mtc_core.data import make_dataset

    ds = make_dataset({"name": "shapes3d"})
    assert ds.class_names(ds.factor_names.index("shape")) == ("cube", "cylinder", "sphere", "capsule")
    assert ds.class_names(ds.factor_names.index("scale")) is None  # numbered, not named
    for name in ("shapes2d", "color_dsprites", "noisy_dsprites"):
        assert make_dataset({"name": name}).class_names(0) == ("square", "ellipse", "heart")
