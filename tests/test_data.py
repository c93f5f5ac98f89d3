import io
import json
import math
import tracemalloc
import zipfile

import numpy as np
import pytest

from mtc_core.data import DATASETS, DSpritesFile, GroundTruthDataset, Shapes2D, Squares, Toy, dsprites_file, make_dataset
from mtc_core.data.shapes2d import ORIENTATIONS, position_pixels, sprite_table

TINY_SIZES = (3, 2, 2, 4, 4)  # shape, scale, orientation, posX, posY of the tiny dSprites-format file
TINY_PICKS = ((0, 1, 2), (0, 5), (0, 13), (0, 10, 21, 31), (0, 10, 21, 31))  # the Shapes2D classes they show


def corner_factors(sizes) -> np.ndarray:
    """All 2^K tuples with every factor at its first or last class, [2^K, K]."""
    grids = np.meshgrid(*[[0, size - 1] for size in sizes], indexing="ij")
    return np.stack([grid.reshape(-1) for grid in grids], axis=1)


def tiny_arrays() -> dict:
    """A dSprites-format archive of 192 Shapes2D images, classes in row-major order."""
    classes = np.stack(np.unravel_index(np.arange(np.prod(TINY_SIZES)), TINY_SIZES), axis=1)
    picked = np.stack([np.asarray(picks)[classes[:, k]] for k, picks in enumerate(TINY_PICKS)], axis=1)
    imgs = Shapes2D().render(picked)[:, 0].astype(np.uint8)
    latents_classes = np.concatenate([np.zeros((len(classes), 1), np.int64), classes], axis=1)
    return {"imgs": imgs, "latents_classes": latents_classes, "latents_values": latents_classes.astype(np.float64)}


@pytest.fixture(scope="module")
def shapes() -> Shapes2D:
    return Shapes2D()


@pytest.fixture()
def tiny_file(tmp_path):
    path = tmp_path / "tiny_dsprites.npz"
    np.savez(path, **tiny_arrays())
    return path


# ---- shared behaviour


@pytest.mark.parametrize("dataset", [Shapes2D(), Toy(), Squares()], ids=["shapes2d", "toy", "squares"])
def test_render_deterministic_binary_float32(dataset):
    factors = dataset.sample_factors(50, np.random.default_rng(0))
    images = dataset.render(factors)
    assert images.shape == (50, *dataset.image_shape) and images.dtype == np.float32
    assert set(np.unique(images)) == {0.0, 1.0}
    np.testing.assert_array_equal(images, dataset.render(factors))
    assert (images.sum(axis=(1, 2, 3)) > 0).all()


@pytest.mark.parametrize("dataset", [Shapes2D(), Toy(), Squares()], ids=["shapes2d", "toy", "squares"])
def test_sampling_is_seeded_and_uniform(dataset):
    a_images, a_factors = dataset.sample(20, np.random.default_rng(7))
    b_images, b_factors = dataset.sample(20, np.random.default_rng(7))
    np.testing.assert_array_equal(a_factors, b_factors)
    np.testing.assert_array_equal(a_images, b_images)
    assert a_factors.dtype == np.int64 and a_factors.shape == (20, dataset.num_factors)
    assert not np.array_equal(a_factors, dataset.sample_factors(20, np.random.default_rng(8)))
    many = dataset.sample_factors(20000, np.random.default_rng(0))
    for k, size in enumerate(dataset.factor_sizes):
        counts = np.bincount(many[:, k], minlength=size)
        assert len(counts) == size and counts.min() > 0.7 * 20000 / size
    assert dataset.sample_factors(0, np.random.default_rng(0)).shape == (0, dataset.num_factors)
    with pytest.raises(ValueError, match="n must be >= 0"):
        dataset.sample_factors(-1, np.random.default_rng(0))


@pytest.mark.parametrize("dataset", [Shapes2D(), Toy(), Squares()], ids=["shapes2d", "toy", "squares"])
def test_index_factor_round_trip(dataset):
    rng = np.random.default_rng(1)
    index = np.concatenate([[0, len(dataset) - 1], rng.integers(0, len(dataset), 500)])
    factors = dataset.index_to_factors(index)
    assert factors.dtype == np.int64 and factors.shape == (len(index), dataset.num_factors)
    np.testing.assert_array_equal(dataset.factors_to_index(factors), index)
    corners = corner_factors(dataset.factor_sizes)
    np.testing.assert_array_equal(dataset.index_to_factors(dataset.factors_to_index(corners)), corners)
    np.testing.assert_array_equal(dataset.index_to_factors([0, len(dataset) - 1]), [[0] * len(corners[0]), corners[-1]])


def test_index_is_c_order_last_factor_fastest(shapes):
    np.testing.assert_array_equal(
        shapes.index_to_factors([1, 32, 1024, 40960, 245760]),
        [
            [0, 0, 0, 0, 1],
            [0, 0, 0, 1, 0],
            [0, 0, 1, 0, 0],
            [0, 1, 0, 0, 0],
            [1, 0, 0, 0, 0],
        ],
    )


def test_bad_factors_and_indices_raise_naming_the_problem(shapes):
    with pytest.raises(ValueError, match=r"shape \[N, 5\]"):
        shapes.render(np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"shape \[N, 5\]"):
        shapes.render(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="factor 'posX' must be in \\[0, 32\\)"):
        shapes.render([[0, 0, 0, 32, 0]])
    with pytest.raises(ValueError, match="factor 'orientation'"):
        shapes.factors_to_index([[0, 0, -1, 0, 0]])
    with pytest.raises(ValueError, match="integer"):
        shapes.render(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="index must be in"):
        shapes.index_to_factors([len(shapes)])
    with pytest.raises(ValueError, match="n must be an integer"):
        shapes.sample_factors(2.5, np.random.default_rng(0))
    assert shapes.render(np.zeros((0, 5), np.int64)).shape == (0, 1, 64, 64)


# ---- Shapes2D


def test_shapes2d_is_the_dsprites_grid(shapes):
    assert shapes.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert shapes.factor_sizes == (3, 6, 40, 32, 32)
    assert shapes.num_factors == 5 and shapes.image_shape == (1, 64, 64)
    assert len(shapes) == 737280
    np.testing.assert_allclose(ORIENTATIONS[[0, -1]], [0, 2 * np.pi])


def test_sprite_symmetries_match_the_documented_counts():
    table = sprite_table().reshape(3, 6, 40, -1)
    same = (table[:, :, :, None, :] == table[:, :, None, :, :]).all(-1)  # [shape, scale, o1, o2]
    upper = np.triu(np.ones((40, 40), bool), 1)
    endpoints = same[:, :, 0, 39]
    consecutive = same[:, :, np.arange(39), np.arange(1, 40)]
    others = same & upper
    others[:, :, 0, 39] = False
    assert endpoints.sum() == 18 and endpoints.all()
    assert consecutive.sum() == 0
    assert others.sum(axis=(1, 2, 3)).tolist() == [8, 0, 0]  # square, ellipse, heart
    # each square coincidence is a near 90 deg symmetry: angles 2.3 deg off a multiple of pi / 2
    _, scale, o1, o2 = np.nonzero(others)
    offset = np.mod((o2 - o1) * 2 * np.pi / 39, np.pi / 2)
    np.testing.assert_allclose(np.minimum(offset, np.pi / 2 - offset), 2 * np.pi / 39 * 0.25, atol=1e-12)
    assert scale.max() <= 3  # scales 0.5 .. 0.8 only
    # different shapes never give the same sprite
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert not (table[a] == table[b]).all(-1).any()


def test_area_grows_strictly_with_scale():
    area = sprite_table().sum(axis=(3, 4))  # [shape, scale, orientation]
    assert (np.diff(area, axis=1) > 0).all()
    assert 150 < area[:, -1].min() and area[:, -1].max() < 300  # about 20 px across at scale 1, as dSprites


def test_positions_are_injective_and_keep_the_sprite_inside(shapes):
    centres = position_pixels()
    assert (np.diff(centres) >= 1).all() and centres[0] - 12 == 0 and centres[-1] + 12 == 63
    corners = corner_factors(shapes.factor_sizes)
    areas = sprite_table()[corners[:, 0], corners[:, 1], corners[:, 2]].sum(axis=(1, 2))
    np.testing.assert_array_equal(shapes.render(corners).sum(axis=(1, 2, 3)), areas)  # nothing clipped


def test_every_single_factor_change_alters_the_image_except_symmetries(shapes):
    rng = np.random.default_rng(3)
    base = shapes.sample_factors(300, rng)
    table = sprite_table().reshape(3, 6, 40, -1)
    for k, size in enumerate(shapes.factor_sizes):
        changed = base.copy()
        changed[:, k] = (base[:, k] + rng.integers(1, size, len(base))) % size
        differs = (shapes.render(base) != shapes.render(changed)).any(axis=(1, 2, 3))
        if k == 2:  # orientation: the image changes exactly when the sprite does
            s, c = base[:, 0], base[:, 1]
            expected = (table[s, c, base[:, 2]] != table[s, c, changed[:, 2]]).any(-1)
            np.testing.assert_array_equal(differs, expected)
        else:
            assert differs.all(), shapes.factor_names[k]


def test_describe_names_factors_and_sizes(shapes):
    text = shapes.describe()
    assert "shape (3)" in text and "posY (32)" in text and "737,280" in text and "64x64" in text


# ---- Squares


def test_squares_grid_and_single_factor_changes():
    squares = Squares()
    assert squares.factor_names == ("posX", "posY", "scale") and squares.factor_sizes == (16, 16, 4)
    assert squares.image_shape == (1, 32, 32) and len(squares) == 1024
    images = squares.render(squares.index_to_factors(np.arange(len(squares)))).reshape(16, 16, 4, -1)
    area = images.sum(-1)
    np.testing.assert_array_equal(area[0, 0], [16, 36, 64, 100])  # sides 4, 6, 8, 10
    assert (area == area[0, 0]).all()  # never clipped
    for axis in range(3):  # every step of one factor changes the image
        assert (np.diff(images, axis=axis) != 0).any(-1).all()
    assert len(np.unique(images.reshape(len(squares), -1), axis=0)) == len(squares)


def test_squares_kwargs_and_errors():
    small = Squares(size=16, num_positions=8, num_scales=3)
    assert small.factor_sizes == (8, 8, 3) and small.image_shape == (1, 16, 16)
    assert small.render(corner_factors(small.factor_sizes)).shape == (8, 1, 16, 16)
    with pytest.raises(ValueError, match="positions do not fit"):
        Squares(size=16, num_positions=16)
    with pytest.raises(ValueError, match="size must be an integer"):
        Squares(size=3.5)


# ---- Toy


def test_toy_grid_and_each_factor_owns_its_band():
    toy = Toy()
    assert toy.factor_names == ("left", "right", "bar") and toy.factor_sizes == (12, 12, 12)
    assert toy.image_shape == (1, 32, 32) and len(toy) == 12**3
    images = toy.render(toy.index_to_factors(np.arange(len(toy)))).reshape(12, 12, 12, 32, 32)
    assert len(np.unique(images.reshape(len(toy), -1), axis=0)) == len(toy)
    for axis, name in enumerate(toy.factor_names):
        changed = np.diff(images, axis=axis) != 0  # [.., 32, 32] where one step of this factor changes a pixel
        assert changed.any((-1, -2)).all(), f"some step of {name} leaves the image unchanged"
        start, stop = toy.band(name)
        columns = changed.any(tuple(range(changed.ndim - 1)))  # which columns ever change
        np.testing.assert_array_equal(np.flatnonzero(columns), np.arange(start, stop))
    # square areas are constant, the bar's length grows with its factor
    np.testing.assert_array_equal(images[:, 0, 0, :, slice(*toy.band("left"))].sum((-1, -2)), 36)
    bar = images[0, 0, :, :, slice(*toy.band("bar"))].sum((-1, -2))
    assert (np.diff(bar) > 0).all() and bar[0] == 4 * 4 and bar[-1] == 28 * 4


def test_toy_kwargs_and_errors():
    small = Toy(size=24, levels=6)
    assert small.factor_sizes == (6, 6, 6) and small.render(corner_factors(small.factor_sizes)).shape == (8, 1, 24, 24)
    with pytest.raises(ValueError, match="levels do not fit"):
        Toy(size=24, levels=20)
    with pytest.raises(ValueError, match="size must be an integer"):
        Toy(size=3.5)


# ---- DSpritesFile


def test_dsprites_file_round_trip(tiny_file, shapes):
    ds = DSpritesFile(tiny_file)
    assert ds.factor_sizes == TINY_SIZES and ds.image_shape == (1, 64, 64) and len(ds) == 192
    assert ds.factor_names == shapes.factor_names
    factors = ds.sample_factors(40, np.random.default_rng(0))
    picked = np.stack([np.asarray(picks)[factors[:, k]] for k, picks in enumerate(TINY_PICKS)], axis=1)
    np.testing.assert_array_equal(ds.render(factors), shapes.render(picked))
    np.testing.assert_array_equal(ds.render(ds.index_to_factors(np.arange(192)))[:, 0], tiny_arrays()["imgs"])
    assert ds.spec() == {"name": "dsprites", "path": str(tiny_file)}
    assert make_dataset(json.loads(json.dumps(ds.spec()))) == ds


def test_dsprites_env_var_and_missing_path(tiny_file, monkeypatch):
    monkeypatch.setenv("MTC_DSPRITES", str(tiny_file))
    assert DSpritesFile().path == tiny_file
    assert make_dataset("dsprites").spec()["path"] == str(tiny_file)
    monkeypatch.delenv("MTC_DSPRITES")
    with pytest.raises(ValueError, match="MTC_DSPRITES"):
        DSpritesFile()


def malformed(name, arrays):
    """Edits of the tiny archive that DSpritesFile must refuse."""
    arrays = dict(arrays)
    if name == "missing key":
        del arrays["latents_values"]
    elif name == "wrong classes shape":
        arrays["latents_classes"] = arrays["latents_classes"][:, 1:]
    elif name == "wrong imgs dtype":
        arrays["imgs"] = arrays["imgs"].astype(np.float32)
    elif name == "non-binary imgs":
        arrays["imgs"] = arrays["imgs"] * 255
    elif name == "shuffled rows":
        order = np.random.default_rng(0).permutation(len(arrays["imgs"]))
        arrays = {key: value[order] for key, value in arrays.items()}
    elif name == "count mismatch":
        arrays = {key: value[:-1] for key, value in arrays.items()}
    elif name == "object array":
        arrays["latents_values"] = np.array([{"exec": "payload"}] * len(arrays["imgs"]), dtype=object)
    return arrays


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing key", "lacks the key.*latents_values"),
        ("wrong classes shape", "latents_classes must have shape"),
        ("wrong imgs dtype", "imgs must be uint8"),
        ("non-binary imgs", "binary"),
        ("shuffled rows", "row-major"),
        ("count mismatch", "imgs holds 191 images"),
        ("object array", "without pickle"),
    ],
)
def test_dsprites_malformed_files_raise(tmp_path, name, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **malformed(name, tiny_arrays()))
    with pytest.raises(ValueError, match=message):
        DSpritesFile(path)


def test_dsprites_not_an_npz_raises(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(ValueError, match="not a valid .npz"):
        DSpritesFile(garbage)
    broken_zip = tmp_path / "broken.npz"
    broken_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 20)
    with pytest.raises(ValueError, match="not a valid .npz"):
        DSpritesFile(broken_zip)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="single .npy array"):
        DSpritesFile(single)
    with pytest.raises(ValueError, match="not found"):
        DSpritesFile(tmp_path / "absent.npz")


# ---- registry


def test_make_dataset_round_trips_specs():
    assert DATASETS.items() >= {"shapes2d": Shapes2D, "dsprites": DSpritesFile, "toy": Toy, "squares": Squares}.items()
    for dataset in [Shapes2D(), Toy(), Toy(size=24, levels=6), Squares(), Squares(size=16, num_positions=8, num_scales=2)]:
        rebuilt = make_dataset(json.loads(json.dumps(dataset.spec())))
        assert isinstance(rebuilt, GroundTruthDataset) and rebuilt == dataset and hash(rebuilt) == hash(dataset)
        assert rebuilt.factor_sizes == dataset.factor_sizes
    assert make_dataset("toy") == Toy() != Toy(size=24, levels=6)
    assert make_dataset("squares") == Squares() != Squares(size=16, num_positions=8)
    assert make_dataset("shapes2d") == Shapes2D()


def test_make_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        make_dataset("mnist")
    with pytest.raises(ValueError, match="bad arguments for dataset 'toy'.*colour"):
        make_dataset({"name": "toy", "colour": 1})
    with pytest.raises(ValueError, match="bad arguments for dataset 'shapes2d'"):
        make_dataset({"name": "shapes2d", "size": 32})
    with pytest.raises(ValueError, match="'name' key"):
        make_dataset({"size": 32})


# ---- hostile dSprites files (issue 12): headers are checked before any data is read


def _zip_with(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy_header(shape, descr="|u1", fortran=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=isinstance(array, np.ndarray) and array.dtype.hasobject)
    return buffer.getvalue()


def _with_tiny_latents(imgs_member: bytes, n: int = 2) -> dict[str, bytes]:
    return {"imgs.npy": imgs_member, "latents_classes.npy": _npy(np.zeros((n, 6), np.int64)),
            "latents_values.npy": _npy(np.zeros((n, 6)))}


def test_a_zip_bomb_is_refused_from_its_header_without_decompressing(tmp_path):
    # 256 MB of zeros declared as a 1-D imgs array deflate to ~250 KB; np.load expanded such a member before the
    # shape check (2 GB for a 2 MB file)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("imgs.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((2**28,)))
            zeros = bytes(2**22)
            for _ in range(2**6):
                member.write(zeros)
        for key in ("latents_classes", "latents_values"):
            archive.writestr(f"{key}.npy", _npy(np.zeros((2, 6))))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"imgs must be uint8 \[N, H, W\].*\(268435456,\)"):
            DSpritesFile(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_declared_sizes_beyond_deflate_are_refused(tmp_path):
    data = bytearray(_zip_with(_with_tiny_latents(_npy(np.zeros((2, 4, 4), np.uint8))), zipfile.ZIP_DEFLATED))
    entry = data.index(b"PK\x01\x02")  # first central directory entry: imgs.npy; uncompressed size at offset 24
    data[entry + 24: entry + 28] = (2**31).to_bytes(4, "little")
    path = tmp_path / "forged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="beyond what deflate achieves"):
        DSpritesFile(path)


@pytest.mark.parametrize("shape, needle", [
    ((10**18,), r"claims shape \(1000000000000000000,\)"),  # no data behind it: refused, no MemoryError
    ((2**23, 64, 64), r"claims shape \(8388608, 64, 64\) of uint8 \(34,359,738,368 bytes\) but its member holds 16 bytes"),
    ((2, 0, 64), "imgs holds zero-size images"),
    ((0, 64, 64), "holds no images"),
])
def test_absurd_or_empty_image_shapes_are_refused_from_the_header(tmp_path, shape, needle):
    member = _npy_header(shape) + (bytes(math.prod(shape)) if math.prod(shape) < 2**20 else bytes(16))
    path = tmp_path / "shape.npz"
    path.write_bytes(_zip_with(_with_tiny_latents(member, n=shape[0] if shape[0] < 10 else 2)))
    with pytest.raises(ValueError, match=needle):
        DSpritesFile(path)


def test_image_counts_and_sizes_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(dsprites_file, "MAX_IMAGES", 4)
    monkeypatch.setattr(dsprites_file, "MAX_SIDE", 8)
    path = tmp_path / "big.npz"
    path.write_bytes(_zip_with(_with_tiny_latents(_npy(np.zeros((8, 4, 4), np.uint8)), n=8)))
    with pytest.raises(ValueError, match=r"imgs has shape \(8, 4, 4\); at most 4 images"):
        DSpritesFile(path)
    path.write_bytes(_zip_with(_with_tiny_latents(_npy(np.zeros((2, 16, 4), np.uint8)))))
    with pytest.raises(ValueError, match="up to 8 x 8 pixels"):
        DSpritesFile(path)


def test_truncated_and_non_numeric_members_are_refused(tmp_path):
    path = tmp_path / "truncated.npz"
    path.write_bytes(_zip_with(_with_tiny_latents(_npy_header((2, 4, 4)) + bytes(20))))
    with pytest.raises(ValueError, match=r"claims shape \(2, 4, 4\) of uint8 \(32 bytes\) but its member holds 20 bytes"):
        DSpritesFile(path)
    members = _with_tiny_latents(_npy(np.zeros((2, 4, 4), np.uint8)))
    members["latents_classes.npy"] = _npy(np.array([["a"] * 6] * 2))
    path.write_bytes(_zip_with(members))
    with pytest.raises(ValueError, match="latents_classes must be integers, got <U1"):
        DSpritesFile(path)
    path.write_bytes(_zip_with({**members, "readme.txt": b"hello"}))
    with pytest.raises(ValueError, match="'readme.txt' is not an .npy array"):
        DSpritesFile(path)
    path.write_bytes(_zip_with(_with_tiny_latents(_npy(np.zeros((2, 4, 4), np.uint8))), zipfile.ZIP_BZIP2))
    with pytest.raises(ValueError, match="compression method 12; numpy writes stored or deflated"):
        DSpritesFile(path)


@pytest.mark.parametrize("content, needle", [
    (b"", "an empty file"),
    (b"hello world, not an archive", "a text file starting 'hello world"),
    (bytes([0x80, 0x04, 0x95]) + b"\x00" * 40, "a Python pickle"),
    (bytes([0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]) + b"{}", r"starts with the bytes 80 00 00 00"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "an HDF5 file"),
    (b"\x1f\x8b\x08" + b"\x00" * 40, "a gzip file"),
    (b"PK\x03\x04" + b"\x00" * 40, "a broken zip archive"),
])
def test_a_garbage_file_is_described_not_called_pickled(tmp_path, content, needle):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=needle) as error:
        DSpritesFile(path)
    assert ("pickle" in str(error.value)) == (needle == "a Python pickle")


def test_dsprites_path_that_is_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        DSpritesFile(tmp_path)
    with pytest.raises(ValueError, match="path must be a string"):
        DSpritesFile(["a", "list"])


def test_dsprites_file_with_a_pickled_metadata_member_still_loads(tmp_path):
    # the real file carries a pickled `metadata` dict next to the arrays: never read, never unpickled
    arrays = tiny_arrays()
    path = tmp_path / "with_metadata.npz"
    np.savez(path, **arrays, metadata=np.array({"title": "dSprites"}, dtype=object))
    data = DSpritesFile(path)
    np.testing.assert_array_equal(data.render(data.index_to_factors(np.arange(len(data))))[:, 0], arrays["imgs"])


def test_dsprites_file_in_fortran_order_or_big_endian_loads_the_same(tmp_path, tiny_file):
    arrays = tiny_arrays()
    expected = DSpritesFile(tiny_file)
    path = tmp_path / "variants.npz"
    np.savez(path, imgs=arrays["imgs"], latents_classes=np.asfortranarray(arrays["latents_classes"].astype(">i8")),
             latents_values=arrays["latents_values"].astype(">f8"))
    data = DSpritesFile(path)
    assert data.factor_sizes == expected.factor_sizes == TINY_SIZES
    factors = data.index_to_factors(np.arange(len(data)))
    np.testing.assert_array_equal(data.render(factors), expected.render(factors))
    np.savez(path, imgs=np.asfortranarray(arrays["imgs"]), latents_classes=arrays["latents_classes"],
             latents_values=arrays["latents_values"])
    with pytest.raises(ValueError, match="Fortran order"):
        DSpritesFile(path)


def test_dsprites_images_are_read_in_chunks(tmp_path, tiny_file, monkeypatch):
    # the same images whether the file is read in one block or 7 images at a time
    whole = DSpritesFile(tiny_file)
    monkeypatch.setattr(dsprites_file, "CHUNK", 7)
    chunked = DSpritesFile(tiny_file)
    factors = whole.index_to_factors(np.arange(len(whole)))
    np.testing.assert_array_equal(chunked.render(factors), whole.render(factors))
