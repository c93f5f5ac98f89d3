"""Codes files: the encodings of any VAE as one `.npz`, the input of `analyse_codes` (docs/design.md, "Codes files").

Keys (arrays are points x dims):
  mean          [N, D]  the mean codes mu(x)                                       required
  logvar        [N, D]  log sigma^2(x); or `var` (sigma^2) or `std` (sigma)       exactly one of the three
  sampled       [N, D]  sampled codes mu + sigma eps as the model drew them       optional (else drawn with the seed)
  factors       [N, K]  ground-truth factors: integer classes, or values on a grid optional
  factor_names  [K]     strings                                                    optional
  num_train     scalar  rows [0, num_train) are the training points, the rest     optional (else a seeded 2:1 split)
                        held out (how `evaluate`'s own points are laid out)

Reading never unpickles (`np.load(allow_pickle=False)`) and checks before it allocates: the archive's members are
listed and their .npy headers read (names, dtypes, shapes, sizes) before any array is loaded; then every array's
shape, dtype and finiteness. Each refusal is a ValueError naming the key and the problem.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mtc_core.data.npz import read_npy_header
from mtc_core.runs import publish_mode

MAX_BYTES = 256_000_000  # a codes file and its arrays once unpacked: 100,000 points x 100 latents x 3 float64 arrays
MAX_POINTS = 100_000  # as `evaluate --num-train`
MAX_LATENTS = 512
MAX_FACTORS = 64
# Distinct values of one factor: more are not classes but a continuous factor, to be binned first. The built-in and
# real datasets have at most 40 (dSprites' orientation, MPI3D's axes); the metrics fit a classifier per class (SAP, the
# explicitness), so hundreds would fit for minutes and then find classes missing from the held-out points.
MAX_CLASSES = 100
MAX_NAME_CHARS = 100
VARIANCE_KEYS = ("logvar", "var", "std")
KEYS = ("mean", *VARIANCE_KEYS, "sampled", "factors", "factor_names", "num_train")
HINTS = {"mu": "mean", "z_mean": "mean", "means": "mean", "log_var": "logvar", "logvars": "logvar", "z_logvar": "logvar",
         "z_log_var": "logvar", "sigma": "std", "variance": "var", "z": "sampled", "samples": "sampled",
         "latents_classes": "factors", "latents_values": "factors", "labels": "factors", "y": "factors"}
NUMERIC = "iuf"  # dtype kinds read as numbers: ints, unsigned ints, floats


@dataclass(frozen=True, eq=False)
class Codes:
    """Validated codes: float64 mean / logvar / sampled [N, D], int64 factor classes [N, K]."""

    mean: np.ndarray
    logvar: np.ndarray
    sampled: np.ndarray | None = None
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None
    num_train: int | None = None
    dropped_factors: tuple[str, ...] = ()  # constant factors left out (their entropy is 0: no metric can use them)

    @property
    def num_points(self) -> int:
        return self.mean.shape[0]

    @property
    def num_latents(self) -> int:
        return self.mean.shape[1]


def _float_codes(name: str, x, n: int | None = None, d: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in NUMERIC:
        what = "complex numbers" if x.dtype.kind == "c" else f"dtype {x.dtype}"
        raise ValueError(f"{name} must hold real numbers, got {what}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [points, latents], got shape {x.shape}")
    if n is not None and x.shape != (n, d):
        raise ValueError(f"{name} has shape {x.shape}; it must match mean's {(n, d)}")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{name} holds {int(bad.sum())} NaN or inf value(s), the first at point {row}, latent {col}")
    return x


def _logvar(key: str, x: np.ndarray) -> np.ndarray:
    """log sigma^2 from the variance key given; exp(logvar) must be a positive float64."""
    if key == "logvar":
        logvar = x
    else:
        if (x <= 0).any():
            row, col = np.argwhere(x <= 0)[0]
            raise ValueError(f"{key} must be > 0, got {x[row, col]} at point {row}, latent {col}")
        logvar = np.log(x) * (2.0 if key == "std" else 1.0)
    if (np.abs(logvar) > 700).any():  # exp would overflow to inf or underflow to 0 in float64
        raise ValueError(f"{key} implies a log-variance beyond ±700 (exp overflows); are these log-variances?")
    return logvar


def _factor_classes(factors, n: int, names: tuple[str, ...] | None) -> np.ndarray:
    """Integer classes [N, K] from integer classes or values on a grid (each distinct value one class)."""
    f = np.asarray(factors)
    if f.ndim == 1:
        f = f[:, None]
    if f.dtype.kind not in NUMERIC + "b":
        raise ValueError(f"factors must hold integer classes or numbers, got dtype {f.dtype}")
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"factors must be [points, factors] with {n} points like mean, got shape {f.shape}")
    if not 1 <= f.shape[1] <= MAX_FACTORS:
        raise ValueError(f"factors has {f.shape[1]} columns; 1..{MAX_FACTORS} are read")
    if f.dtype.kind == "f" and not np.isfinite(f).all():
        raise ValueError("factors holds NaN or inf")
    out = np.empty(f.shape, dtype=np.int64)
    for k in range(f.shape[1]):
        values, classes = np.unique(f[:, k], return_inverse=True)
        label = repr(names[k]) if names else str(k)
        if len(values) > MAX_CLASSES:
            raise ValueError(f"factor {label} (column {k}) has {len(values):,} distinct values; factors are integer classes or "
                             f"values on a grid of at most {MAX_CLASSES} levels: bin it first (np.digitize)")
        # integer classes are kept as they are: the metrics then see exactly the labels `evaluate` sees
        keep = f.dtype.kind in "iu" and int(f[:, k].max()) <= np.iinfo(np.int64).max
        out[:, k] = f[:, k] if keep else classes.reshape(-1)
    return out


def _names(value, k: int) -> tuple[str, ...]:
    names = np.asarray(value)
    if names.dtype.kind == "S":
        names = np.char.decode(names, "utf-8", errors="replace")
    if names.dtype.kind != "U" or names.ndim != 1:
        raise ValueError(f"factor_names must be a 1-D array of strings, got dtype {names.dtype} shape {names.shape}")
    out = tuple(str(s) for s in names)
    if len(out) != k:
        raise ValueError(f"factor_names has {len(out)} names for {k} factor columns")
    if any(not s.strip() or len(s) > MAX_NAME_CHARS for s in out) or len(set(out)) != len(out):
        raise ValueError(f"factor_names must be distinct, non-empty and at most {MAX_NAME_CHARS} characters, got {list(out)[:8]}")
    return out


def _num_train(value, n: int, has_factors: bool) -> int:
    v = np.asarray(value)
    if v.dtype.kind not in "iu" or v.size != 1:
        raise ValueError(f"num_train must be one integer, got dtype {v.dtype} shape {v.shape}")
    v = int(v.reshape(-1)[0])
    low, high = 2, (n - 2 if has_factors else n)  # the held-out part needs 2 points when there are factors to score
    if not low <= v <= high:
        raise ValueError(f"num_train must be in {low}..{high} for {n} points{' with factors' if has_factors else ''}, got {v}")
    return v


def validate(mean, logvar=None, *, var=None, std=None, sampled=None, factors=None, factor_names=None,
             num_train=None) -> Codes:
    """Codes from arrays (see the module docstring); ValueError naming the first problem."""
    given = {key: x for key, x in (("logvar", logvar), ("var", var), ("std", std)) if x is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one of logvar, var or std, got {sorted(given) or 'none'}")
    (key, spread), = given.items()
    mean = _float_codes("mean", mean)
    n, d = mean.shape
    if not 2 <= n <= MAX_POINTS:
        raise ValueError(f"mean has {n:,} points; 2..{MAX_POINTS:,} are read")
    if d > MAX_LATENTS:
        raise ValueError(f"mean has {d:,} latents, over the limit of {MAX_LATENTS}")
    logvar = _logvar(key, _float_codes(key, spread, n, d))
    if sampled is not None:
        sampled = _float_codes("sampled", sampled, n, d)
    names = None
    if factors is None and factor_names is not None:
        raise ValueError("factor_names given without factors")
    dropped: tuple[str, ...] = ()
    if factors is not None:
        k = np.asarray(factors).shape[1] if np.ndim(factors) == 2 else 1
        names = _names(factor_names, k) if factor_names is not None else tuple(f"factor {i}" for i in range(k))
        classes = _factor_classes(factors, n, names)
        constant = np.all(classes == classes[:1], axis=0)
        if constant.all():
            raise ValueError(f"every factor is constant ({', '.join(names)}): there is nothing to score against")
        dropped = tuple(name for name, c in zip(names, constant, strict=True) if c)
        factors, names = classes[:, ~constant], tuple(name for name, c in zip(names, constant, strict=True) if not c)
    if num_train is not None:
        num_train = _num_train(num_train, n, factors is not None)
    return Codes(mean, logvar, sampled, factors, names, num_train, dropped)


def codes_from_points(train: dict, test: dict, factor_names) -> Codes:
    """Codes of `evaluation.encoded_points`' (train, test): training rows first and `num_train` saying so, the sampled
    codes as `evaluate` drew them, so that `analyse` reproduces `evaluate`'s array metrics and TCs exactly."""
    joined = {key: np.concatenate([train[key], test[key]]) for key in ("mean", "logvar", "sampled", "factors")}
    return validate(**joined, factor_names=np.array(factor_names, dtype=str), num_train=len(train["mean"]))


def keep(data: bytes, folder: str | Path, name: str) -> Path:
    """Keep a codes file's bytes as `folder/name.npz` after validating them; an existing file is never replaced
    (the name is claimed with a hard link, which fails when it exists)."""
    load_codes(data)
    folder = Path(folder)
    target = folder / f"{name}.npz"
    if target.exists():
        raise ValueError(f"a code set named {name!r} is already kept; choose another name")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish_mode(tmp)
        os.link(tmp, target)
    except FileExistsError:
        raise ValueError(f"a code set named {name!r} is already kept; choose another name") from None
    except OSError as e:  # a full disk: the temporary file goes (finally), the message names the file
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(target)) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _kind_of(data: bytes) -> str:
    if data[:6] == b"\x93NUMPY":
        return "a single .npy array; save every array in one archive: np.savez(path, mean=..., logvar=...)"
    if data[:1] == b"\x80":
        return "a pickle; only .npz archives of numeric arrays are read (nothing is ever unpickled)"
    return "not an .npz archive (np.savez writes one)"


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from one member's .npy header, without reading its data."""
    key = info.filename[:-4]
    with archive.open(info) as f:
        try:
            shape, _, dtype = read_npy_header(f)
        except ValueError as e:
            raise ValueError(f"{key}: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{key} holds Python objects (pickled data); only numeric arrays (and strings for factor_names) are read")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise ValueError(f"{key}: truncated (its header says {shape} x {dtype}, the member holds {info.file_size} bytes)")
    return shape, dtype


def load_codes(source: str | Path | bytes | BinaryIO, max_bytes: int = MAX_BYTES) -> Codes:
    """Read and validate a codes file (a path, its bytes or an open binary file)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        if path.stat().st_size > max_bytes:
            raise ValueError(f"{path}: {path.stat().st_size:,} bytes, over the limit of {max_bytes:,}")
        data = path.read_bytes()
    elif isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"the codes file is over the limit of {max_bytes:,} bytes")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(f"the codes file is {_kind_of(data)}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise ValueError("the archive holds the same member twice")
            unknown = [n for n in names if not n.endswith(".npy") or n[:-4] not in KEYS]
            if unknown:
                hints = [f"{n!r} (did you mean {HINTS[n[:-4]]!r}?)" if n[:-4] in HINTS else repr(n) for n in unknown[:5]]
                raise ValueError(f"unknown key(s) {', '.join(hints)}; a codes file holds {', '.join(KEYS)}")
            if sum(i.file_size for i in infos) > max_bytes:
                raise ValueError(f"its arrays unpack to {sum(i.file_size for i in infos):,} bytes, over the limit of {max_bytes:,}")
            if any(i.flag_bits & 0x1 for i in infos):
                raise ValueError("the archive is encrypted")
            headers = {i.filename[:-4]: _member_header(archive, i) for i in infos}
    except zipfile.BadZipFile as e:
        raise ValueError(f"the codes file is a damaged zip archive ({e})") from None
    if "mean" not in headers:
        raise ValueError(f"no 'mean' array (the mean codes [N, D]); found {', '.join(headers) or 'none'}")
    for key, (shape, dtype) in headers.items():
        if key in ("mean", "sampled", *VARIANCE_KEYS) and (len(shape) != 2 or dtype.kind not in NUMERIC):
            raise ValueError(f"{key} must be a 2-D array of numbers [points, latents], got shape {shape} dtype {dtype}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in headers}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"the codes file could not be read ({e})") from None
    return validate(**arrays)


def save_codes(path: str | Path, codes: Codes) -> Path:
    """Write `codes` as an uncompressed .npz (logvar as the variance key), atomically: a temporary file + rename."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"mean": codes.mean, "logvar": codes.logvar}
    if codes.sampled is not None:
        arrays["sampled"] = codes.sampled
    if codes.factors is not None:
        arrays["factors"] = codes.factors
        arrays["factor_names"] = np.array(codes.factor_names, dtype=str)
    if codes.num_train is not None:
        arrays["num_train"] = np.array(codes.num_train, dtype=np.int64)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
