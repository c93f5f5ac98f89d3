"""Codes files: round trips, the three variance keys, factors as classes or grid values, and hostile files refused
with a message naming the problem (pickled objects, NaN, wrong shapes, unknown keys, oversized or truncated members)."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from mtc_core.evaluation import codes_file
from mtc_core.evaluation.codes_file import Codes, load_codes, save_codes, validate


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def arrays(rng):
    n, d = 60, 4
    return {"mean": rng.normal(size=(n, d)), "logvar": rng.normal(-2, 0.5, size=(n, d)),
            "factors": rng.integers(0, 3, size=(n, 2))}


def test_save_then_load_gives_the_same_arrays(tmp_path, arrays, rng):
    codes = validate(**arrays, sampled=arrays["mean"] + 0.1, factor_names=np.array(["shape", "x"]), num_train=40)
    loaded = load_codes(save_codes(tmp_path / "codes.npz", codes))
    for key in ("mean", "logvar", "sampled", "factors"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(codes, key))
    assert loaded.factor_names == ("shape", "x") and loaded.num_train == 40 and loaded.mean.dtype == np.float64
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npz"]  # the temporary file was renamed, none left


def test_var_and_std_keys_give_the_same_logvar(arrays):
    logvar = arrays["logvar"]
    from_var = load_codes(npz_bytes(mean=arrays["mean"], var=np.exp(logvar)))
    from_std = load_codes(npz_bytes(mean=arrays["mean"], std=np.exp(logvar / 2)))
    np.testing.assert_allclose(from_var.logvar, logvar, atol=1e-12)
    np.testing.assert_allclose(from_std.logvar, logvar, atol=1e-12)


def test_float32_codes_are_read_as_float64(arrays):
    codes = load_codes(npz_bytes(mean=arrays["mean"].astype(np.float32), logvar=arrays["logvar"].astype(np.float32)))
    assert codes.mean.dtype == np.float64 and codes.sampled is None and codes.factors is None


def test_factor_values_on_a_grid_become_classes_and_constant_factors_are_dropped(arrays):
    """disentangling-vae's dSprites labels: float values per factor, the first (colour) constant."""
    n = len(arrays["mean"])
    values = np.column_stack([np.ones(n), np.linspace(0.5, 1.0, 6)[np.arange(n) % 6], np.arange(n) % 3 * 0.25])
    codes = load_codes(npz_bytes(mean=arrays["mean"], logvar=arrays["logvar"], factors=values,
                                 factor_names=np.array(["color", "scale", "x"])))
    assert codes.dropped_factors == ("color",) and codes.factor_names == ("scale", "x")
    np.testing.assert_array_equal(codes.factors[:, 0], np.arange(n) % 6)
    np.testing.assert_array_equal(codes.factors[:, 1], np.arange(n) % 3)


def test_integer_factor_classes_are_kept_as_given(arrays):
    factors = arrays["factors"] + 5
    codes = validate(arrays["mean"], arrays["logvar"], factors=factors)
    np.testing.assert_array_equal(codes.factors, factors)
    assert codes.factor_names == ("factor 0", "factor 1")


def hostile_cases(arrays) -> dict[str, tuple[bytes, str]]:
    m, lv = arrays["mean"], arrays["logvar"]
    nan = m.copy()
    nan[3, 2] = np.nan
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, "x"]
    return {
        "pickled object array": (npz_bytes(mean=m, logvar=lv, factor_names=objects), "Python objects"),
        "a plain pickle": (pickle.dumps({"mean": m}), "a pickle"),
        "NaN in mean": (npz_bytes(mean=nan, logvar=lv), "mean holds 1 NaN or inf value(s), the first at point 3, latent 2"),
        "inf in logvar": (npz_bytes(mean=m, logvar=np.where(nan != nan, np.inf, lv)), "logvar holds"),
        "logvar of another shape": (npz_bytes(mean=m, logvar=lv[:, :3]), "logvar has shape (60, 3); it must match mean's (60, 4)"),
        "1-D mean": (npz_bytes(mean=m[:, 0], logvar=lv), "mean must be a 2-D array"),
        "factors of another length": (npz_bytes(mean=m, logvar=lv, factors=arrays["factors"][:10]), "factors must be [points, factors] with 60"),
        "unknown key with a hint": (npz_bytes(mu=m, logvar=lv), "'mu.npy' (did you mean 'mean'?)"),
        "no variance key": (npz_bytes(mean=m), "give exactly one of logvar, var or std, got none"),
        "two variance keys": (npz_bytes(mean=m, logvar=lv, var=np.exp(lv)), "got ['logvar', 'var']"),
        "negative variance": (npz_bytes(mean=m, var=-np.exp(lv)), "var must be > 0"),
        "log-variance too large": (npz_bytes(mean=m, logvar=lv + 1000), "beyond ±700"),
        "complex codes": (npz_bytes(mean=m.astype(complex), logvar=lv), "mean must be a 2-D array of numbers"),
        "names of another length": (npz_bytes(mean=m, logvar=lv, factors=arrays["factors"], factor_names=np.array(["a"])),
                                    "factor_names has 1 names for 2"),
        "num_train leaving no test points": (npz_bytes(mean=m, logvar=lv, factors=arrays["factors"], num_train=np.array(59)),
                                             "num_train must be in 2..58"),
        "a single .npy": (npy_bytes(m), "a single .npy array"),
        "not a zip": (b"mean,logvar\n1,2\n", "not an .npz archive"),
        "every factor constant": (npz_bytes(mean=m, logvar=lv, factors=np.zeros((60, 2), int)), "every factor is constant"),
    }


def npy_bytes(x) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


@pytest.mark.parametrize("case", ["pickled object array", "a plain pickle", "NaN in mean", "inf in logvar", "logvar of another shape",
                                  "1-D mean", "factors of another length", "unknown key with a hint", "no variance key",
                                  "two variance keys", "negative variance", "log-variance too large", "complex codes",
                                  "names of another length", "num_train leaving no test points", "a single .npy", "not a zip",
                                  "every factor constant"])
def test_hostile_files_are_refused_naming_the_problem(arrays, case):
    data, message = hostile_cases(arrays)[case]
    with pytest.raises(ValueError) as error:
        load_codes(data)
    assert message in str(error.value)


def test_oversized_files_and_members_are_refused_before_loading(arrays):
    data = npz_bytes(**arrays)
    with pytest.raises(ValueError, match="over the limit"):
        load_codes(data, max_bytes=len(data) - 1)
    bomb = io.BytesIO()
    np.savez_compressed(bomb, mean=np.zeros((100_000, 20)), logvar=np.zeros((100_000, 20)))  # 32 MB unpacked, ~30 KB packed
    assert len(bomb.getvalue()) < 1_000_000
    with pytest.raises(ValueError, match="unpack to 32,000,256 bytes, over the limit of 1,000,000"):
        load_codes(bomb.getvalue(), max_bytes=1_000_000)


def test_a_member_whose_header_claims_more_data_than_it_holds_is_refused(arrays):
    header = npy_bytes(np.zeros((60, 4)))[:128]  # the header of a 60 x 4 float64 array, without its data
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mean.npy", header + b"\0" * 64)
        archive.writestr("logvar.npy", npy_bytes(arrays["logvar"]))
    with pytest.raises(ValueError, match="mean: truncated"):
        load_codes(buffer.getvalue())


def test_a_continuous_factor_is_refused_in_one_line_before_any_fitting(rng):
    # 600 distinct values fitted for 33 s, then refused with a list of 600 class ids; now: at once, in one line
    n = 900
    factors = np.column_stack([rng.integers(0, 3, n), rng.permutation(np.arange(n) % 600) / 7.0])
    data = npz_bytes(mean=rng.normal(size=(n, 3)), logvar=rng.normal(-2, 0.5, size=(n, 3)), factors=factors,
                     factor_names=np.array(["shape", "x"]))
    with pytest.raises(ValueError) as refused:
        load_codes(data)
    assert str(refused.value) == ("factor 'x' (column 1) has 600 distinct values; factors are integer classes or values on a "
                                  "grid of at most 100 levels: bin it first (np.digitize)")
    binned = np.digitize(factors[:, 1], np.quantile(factors[:, 1], np.linspace(0, 1, 11)[1:-1]))
    codes = validate(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), factors=np.column_stack([factors[:, 0], binned]))
    assert codes.factors[:, 1].max() == 9
    n = codes_file.MAX_CLASSES + 1
    with pytest.raises(ValueError, match=r"factor 'x' \(column 0\) has 101 distinct values; .* at most 100 levels"):
        validate(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), factors=rng.normal(size=(n, 1)), factor_names=np.array(["x"]))
    validate(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), factors=np.arange(n)[:, None] % 100)  # 100 levels: read


def test_classes_missing_from_one_side_of_the_split_are_refused_before_any_fitting(rng, monkeypatch):
    import time

    from mtc_core.evaluation import codes_analysis

    n = 300  # 90 classes over 300 points: a random 2:1 split leaves some out of the 100 held-out points
    fitted = []
    monkeypatch.setattr(codes_analysis, "score_points", lambda *a, **k: fitted.append(1))
    start = time.perf_counter()
    with pytest.raises(ValueError) as refused:
        codes_analysis.analyse_codes(rng.normal(size=(n, 3)), rng.normal(-2, 0.5, size=(n, 3)),
                                     factors=np.column_stack([np.arange(n) % 90, np.arange(n) % 2]), factor_names=np.array(["x", "y"]))
    message = str(refused.value)
    assert message.startswith("factor 'x': ") and "classes occur only among the training or only among the held-out points" in message
    assert "\n" not in message and len(message) < 300 and fitted == [] and time.perf_counter() - start < 5


# The layouts the README's recipes write; each must load as the recipe says.
def test_recipe_layout_disentanglement_lib(rng):
    """gaussian_encoder's float32 "mean" / "logvar" and GroundTruthData.sample_factors' integer classes (dSprites: 5)."""
    factors = np.column_stack([rng.integers(0, s, 200) for s in (3, 6, 40, 32, 32)])
    data = npz_bytes(mean=rng.normal(size=(200, 10)).astype(np.float32), logvar=rng.normal(size=(200, 10)).astype(np.float32),
                     factors=factors, factor_names=np.array(["shape", "scale", "orientation", "posX", "posY"]))
    codes = load_codes(data)
    assert codes.factors.shape == (200, 5) and codes.dropped_factors == ()


def test_recipe_layout_disent(rng):
    """disent: the posterior Normal's loc and scale (key `std`), factors from gt_data.sample_factors."""
    codes = load_codes(npz_bytes(mean=rng.normal(size=(200, 6)).astype(np.float32), std=rng.uniform(0.1, 1, (200, 6)).astype(np.float32),
                                 factors=rng.integers(0, 4, (200, 3)), factor_names=np.array(["a", "b", "c"])))
    assert codes.logvar.shape == (200, 6) and np.all(codes.logvar < 0)


def test_recipe_layout_disentangling_vae(rng):
    """disentangling-vae's dSprites loader yields 6 float latent values per image, colour constant; sampled given."""
    n = 200
    values = np.column_stack([np.ones(n), rng.integers(1, 4, n).astype(float), rng.choice(np.linspace(0.5, 1, 6), n),
                              rng.choice(np.linspace(0, 2 * np.pi, 40), n), rng.choice(np.linspace(0, 1, 32), n),
                              rng.choice(np.linspace(0, 1, 32), n)])
    mean, logvar = rng.normal(size=(n, 10)), rng.normal(size=(n, 10))
    codes = load_codes(npz_bytes(mean=mean, logvar=logvar, sampled=mean + np.exp(logvar / 2) * rng.normal(size=(n, 10)),
                                 factors=values, factor_names=np.array(["color", "shape", "scale", "orientation", "posX", "posY"])))
    assert codes.dropped_factors == ("color",) and codes.factors.shape == (n, 5) and codes.factors.max() < 40
    assert isinstance(codes, Codes) and codes.sampled is not None


def test_keep_writes_validated_bytes_once(tmp_path, arrays):
    data = npz_bytes(**arrays)
    path = codes_file.keep(data, tmp_path / "codes", "mine")
    assert path.read_bytes() == data
    with pytest.raises(ValueError, match="already kept"):
        codes_file.keep(npz_bytes(mean=arrays["mean"], logvar=arrays["logvar"]), tmp_path / "codes", "mine")
    with pytest.raises(ValueError, match="NaN"):
        codes_file.keep(npz_bytes(mean=arrays["mean"] * np.nan, logvar=arrays["logvar"]), tmp_path / "codes", "other")
    assert path.read_bytes() == data and sorted(p.name for p in (tmp_path / "codes").iterdir()) == ["mine.npz"]


def test_keep_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, arrays, disk_full):
    data = npz_bytes(**arrays)
    disk_full()
    with pytest.raises(OSError) as error:
        codes_file.keep(data, tmp_path / "codes", "mine")
    from mtc_core import runs

    assert runs.error_text(error.value) == f"{tmp_path / 'codes' / 'mine.npz'}: No space left on device"
    assert list((tmp_path / "codes").iterdir()) == []  # the half-written temporary file is gone
    disk_full.off()
    assert codes_file.keep(data, tmp_path / "codes", "mine").read_bytes() == data
