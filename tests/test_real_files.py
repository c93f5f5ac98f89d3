import json

import h5py
import numpy as np
import pytest

from mtc_core.data import MPI3DFile, Shapes3DFile, make_dataset, real_files

SHAPES3D_GRID = (2, 2, 2, 2, 2, 3)  # a small 3dshapes-format file: 96 images
SHAPES3D_VALUES = ([0.0, 0.1], [0.3, 0.9], [0.5, 0.6], [0.75, 1.25], [0.0, 3.0], [-30.0, 0.0, 30.0])
MPI3D_SMALL = "2,2,1,1,1,3,3"  # 36 images


def shapes3d_arrays(size=64) -> dict:
    rng = np.random.default_rng(0)
    num = int(np.prod(SHAPES3D_GRID))
    classes = np.stack(np.unravel_index(np.arange(num), SHAPES3D_GRID), axis=1)
    labels = np.stack([np.asarray(values)[classes[:, k]] for k, values in enumerate(SHAPES3D_VALUES)], axis=1)
    return {"images": rng.integers(0, 256, (num, size, size, 3), dtype=np.uint8), "labels": labels}


def write_h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


@pytest.fixture()
def shapes3d_file(tmp_path):
    return write_h5(tmp_path / "3dshapes.h5", **shapes3d_arrays())


def mpi3d_images(num=36) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (num, 64, 64, 3), dtype=np.uint8)


# ---- 3dshapes.h5


def test_shapes3d_file_reads_the_grid_and_the_images(shapes3d_file):
    arrays = shapes3d_arrays()
    ds = Shapes3DFile(shapes3d_file)
    assert ds.factor_sizes == SHAPES3D_GRID and ds.image_shape == (3, 64, 64) and len(ds) == 96
    assert ds.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    np.testing.assert_array_equal(ds.factor_values[5], [-30, 0, 30])
    factors = ds.sample_factors(50, np.random.default_rng(0))  # repeats and any order
    expected = arrays["images"][ds.factors_to_index(factors)].transpose(0, 3, 1, 2) / 255
    images = ds.render(factors)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images, expected, atol=1e-7)
    np.testing.assert_allclose(ds.render(ds.index_to_factors(np.arange(10, 40))),  # a run of rows is read as one slice
                               arrays["images"][10:40].transpose(0, 3, 1, 2) / 255, atol=1e-7)
    assert ds.render(np.zeros((0, 6), np.int64)).shape == (0, 3, 64, 64)
    assert make_dataset(json.loads(json.dumps(ds.spec()))) == ds


def test_shapes3d_file_path_from_the_environment(shapes3d_file, monkeypatch):
    monkeypatch.delenv(real_files.SHAPES3D_ENV, raising=False)
    with pytest.raises(ValueError, match="MTC_3DSHAPES"):
        Shapes3DFile()
    monkeypatch.setenv(real_files.SHAPES3D_ENV, str(shapes3d_file))
    assert make_dataset("3dshapes").factor_sizes == SHAPES3D_GRID
    with pytest.raises(ValueError, match="not found"):
        Shapes3DFile(shapes3d_file.parent / "missing.h5")


def _shuffled(arrays):
    arrays["labels"] = arrays["labels"][::-1].copy()
    return arrays


def _new_value(arrays):
    arrays["labels"][7, 3] = 1.0
    return arrays


@pytest.mark.parametrize("change, message", [
    (lambda a: {"images": a["images"]}, "lacks the dataset 'labels'"),
    (lambda a: {**a, "images": a["images"].astype(np.float32)}, "images must be uint8, got float32"),
    (lambda a: {**a, "images": a["images"][..., 0]}, r"images must have shape \[N, H, W, 3\]"),
    (lambda a: {**a, "images": np.concatenate([a["images"], a["images"][..., :1]], -1)}, r"\[N, H, W, 3\] \(RGB\)"),
    (lambda a: {**a, "images": a["images"][:0]}, "no images"),
    (lambda a: {**a, "labels": a["labels"][:, :5]}, r"labels must be floats of shape \[96, 6\]"),
    (lambda a: {**a, "labels": a["labels"].astype(np.int64)}, "labels must be floats"),
    (lambda a: {**a, "labels": a["labels"][:95]}, r"labels must be floats of shape \[96, 6\]"),
    (_shuffled, "not in the 3dshapes order"),
    (_new_value, "span a grid of 2 x 2 x 2 x 3 x 2 x 3"),
    (lambda a: {**a, "labels": np.where(np.arange(96)[:, None] == 3, np.nan, a["labels"])}, "NaN"),
], ids=["no-labels", "float-images", "grey", "four-channels", "empty", "five-labels", "int-labels", "short-labels",
        "order", "not-a-grid", "nan"])
def test_shapes3d_malformed_files_raise(tmp_path, change, message):
    path = write_h5(tmp_path / "bad.h5", **change(shapes3d_arrays()))
    with pytest.raises(ValueError, match=message):
        Shapes3DFile(path)


def test_shapes3d_refuses_links_groups_and_external_storage(tmp_path):
    arrays = shapes3d_arrays()
    write_h5(tmp_path / "other.h5", **arrays)
    for name, make in [
        ("ExternalLink", lambda f: f.__setitem__("images", h5py.ExternalLink(str(tmp_path / "other.h5"), "/images"))),
        ("SoftLink", lambda f: (f.create_dataset("real", data=arrays["images"]), f.__setitem__("images", h5py.SoftLink("/real")))),
        ("Group", lambda f: f.create_group("images")),
        ("external storage", lambda f: f.create_dataset("images", shape=arrays["images"].shape, dtype=np.uint8,
                                                        external=[(str(tmp_path / "raw.bin"), 0, arrays["images"].nbytes)])),
    ]:
        (tmp_path / "raw.bin").write_bytes(arrays["images"].tobytes())
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            make(f)
            f.create_dataset("labels", data=arrays["labels"])
        with pytest.raises(ValueError, match="refused|not an array"):
            Shapes3DFile(path)


@pytest.mark.parametrize("content, found", [(b"", "an empty file"), (b"PK\x03\x04rest", "a zip archive"),
                                            (b"hello world\n", "a text file")])
def test_shapes3d_not_hdf5_is_described(tmp_path, content, found):
    path = tmp_path / "3dshapes.h5"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"not an HDF5 file: it is {found}"):
        Shapes3DFile(path)


# ---- MPI3D .npz


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_mpi3d_reads_the_grid_in_c_order(tmp_path, save):
    images = mpi3d_images()
    path = tmp_path / "mpi3d_toy.npz"
    save(path, images=images)
    ds = MPI3DFile(path, grid=MPI3D_SMALL)
    assert ds.factor_sizes == (2, 2, 1, 1, 1, 3, 3) and ds.image_shape == (3, 64, 64) and len(ds) == 36
    assert isinstance(ds._images, np.memmap) == (save is np.savez)  # stored members are memory-mapped
    factors = ds.sample_factors(30, np.random.default_rng(0))
    index = (factors * [18, 9, 9, 9, 9, 3, 1]).sum(axis=1)  # C order, vertical_axis fastest
    np.testing.assert_allclose(ds.render(factors), images[index].transpose(0, 3, 1, 2) / 255, atol=1e-7)
    assert make_dataset(json.loads(json.dumps(ds.spec()))) == ds


def test_mpi3d_default_grid_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(real_files.MPI3D_ENV, raising=False)
    with pytest.raises(ValueError, match="MTC_MPI3D"):
        MPI3DFile()
    path = tmp_path / "mpi3d.npz"
    np.savez(path, images=mpi3d_images())
    monkeypatch.setenv(real_files.MPI3D_ENV, str(path))
    with pytest.raises(ValueError, match=r"holds 36 images but the grid 6,6,2,3,3,40,40 has 1,036,800 points"):
        make_dataset("mpi3d")
    assert make_dataset({"name": "mpi3d", "grid": MPI3D_SMALL}).factor_sizes == (2, 2, 1, 1, 1, 3, 3)


@pytest.mark.parametrize("arrays, message", [
    (lambda: {"imgs": mpi3d_images()}, "lacks the key 'images'"),
    (lambda: {"images": mpi3d_images().astype(np.float32)}, "images must be uint8, got float32"),
    (lambda: {"images": mpi3d_images()[..., 0]}, r"\[N, H, W, 3\]"),
    (lambda: {"images": mpi3d_images(35)}, "holds 35 images but the grid 2,2,1,1,1,3,3 has 36 points"),
    (lambda: {"images": np.asfortranarray(mpi3d_images())}, "Fortran order"),
    (lambda: {"images": mpi3d_images(), "extra": np.array([{"a": 1}], dtype=object)}, "Python objects"),
], ids=["key", "dtype", "grey", "count", "fortran", "pickle"])
def test_mpi3d_malformed_files_raise(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays())
    with pytest.raises(ValueError, match=message):
        MPI3DFile(path, grid=MPI3D_SMALL)


def test_mpi3d_not_an_npz_and_compressed_size_limit(tmp_path, monkeypatch):
    path = write_h5(tmp_path / "mpi3d.npz", images=mpi3d_images())
    with pytest.raises(ValueError, match="not a valid .npz file: it is an HDF5 file"):
        MPI3DFile(path, grid=MPI3D_SMALL)
    np.savez_compressed(path, images=mpi3d_images())
    monkeypatch.setattr(real_files, "MAX_IN_MEMORY", 1000)
    with pytest.raises(ValueError, match="re-save it uncompressed"):
        MPI3DFile(path, grid=MPI3D_SMALL)


@pytest.mark.parametrize("grid", ["6,6,2,3,3,40", "6,6,2,3,3,40,x", "0,6,2,3,3,40,40", "6,6,2,3,3,40,40,1", 7, "9,9,9,9,9,9,9"])
def test_mpi3d_bad_grid_raises(tmp_path, grid):
    with pytest.raises(ValueError, match="MPI3D grid must be"):
        MPI3DFile(tmp_path / "unused.npz", grid=grid)
