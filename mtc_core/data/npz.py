"""Reading .npz archives without trusting them.

Every member's .npy header (shape, dtype, memory order) is read and checked before any of its data, the
sizes the zip declares are checked against the header and against what deflate can achieve, and nothing is
unpickled: `np.load` would decompress a whole member before anyone looks at its shape (a 2 MB archive once
expanded to 2 GB that way), and a header claiming shape (10^18,) made it raise MemoryError.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_MEMBERS = 256  # arrays in one archive
MAX_RATIO = 1100  # deflate cannot compress better than ~1032:1; a member declaring more is forged (a zip bomb)
MAX_HEADER = 10_000  # bytes of one .npy header (numpy's own limit)
MAX_DIMS = 8


def read_npy_header(f, max_header_size: int = MAX_HEADER) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy array that the binary file `f` starts at, leaving `f` at its data;
    nothing but the header is read. ValueError for a format other than .npy 1.0 and 2.0 (what numpy writes)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f, max_header_size=max_header_size)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f, max_header_size=max_header_size)
    raise ValueError(f".npy format version {version} (numeric arrays are written as 1.0 or 2.0)")


@dataclass(frozen=True)
class ArrayInfo:
    """One member of an archive as its .npy header describes it."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def describe_start(head: bytes) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an .npz archive"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle (never unpickled here)"
    sample = head[:64]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        text = sample.decode("ascii").split("\n")[0][:40]
        return f"a text file starting {text!r}"
    return f"not a zip archive (it starts with the bytes {head[:8].hex(' ')})"


class NpzArchive:
    """An .npz file opened for checked reading: `info[key]` from the headers, `read(key)`, `chunks(key, rows)`.

    ValueError naming the file and the problem for anything that is not a plain numeric archive. Use as a
    context manager, or call close()."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise ValueError(f"{self.path}: file not found")
        if not self.path.is_file():
            raise ValueError(f"{self.path}: not a regular file")
        with self.path.open("rb") as f:
            head = f.read(64)
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise ValueError(f"{self.path} is not a valid .npz file: it is {describe_start(head)}")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ValueError(f"{self.path} is not a valid .npz file (a broken zip archive: {e})") from None
        try:
            self._members = self._index()
            self._offsets: dict[str, int] = {}
            self.info = {key: self._header(key) for key in self._members}
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    @property
    def keys(self) -> list[str]:
        return list(self._members)

    def _index(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"{self.path}: holds {len(infos):,} members, more than {MAX_MEMBERS}; not an .npz of a few arrays")
        members = {}
        for info in infos:
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise ValueError(f"{self.path}: member {info.filename[:80]!r} is not an .npy array; an .npz holds only those")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"{self.path}: member {info.filename[:80]!r} uses compression method {info.compress_type}; "
                                 "numpy writes stored or deflated members only")
            if info.file_size > MAX_RATIO * max(info.compress_size, 1) + 4096:
                raise ValueError(f"{self.path}: member {info.filename[:80]!r} declares {info.file_size:,} bytes from "
                                 f"{info.compress_size:,} compressed, beyond what deflate achieves (a zip bomb?); refused")
            members[info.filename[: -len(".npy")]] = info
        return members

    def _header(self, key: str) -> ArrayInfo:
        member = self._members[key]
        try:
            with self._zip.open(member) as f:
                shape, fortran, dtype = read_npy_header(f)
                offset = f.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
            raise ValueError(f"{self.path}: array {key!r} has no valid .npy header ({' '.join(str(e).split())[:200]})") from None
        if len(shape) > MAX_DIMS or any(not isinstance(n, int) or n < 0 for n in shape):
            raise ValueError(f"{self.path}: array {key!r} has an invalid shape {str(shape)[:80]}")
        info = ArrayInfo(key, tuple(shape), np.dtype(dtype), bool(fortran))
        self._offsets[key] = offset
        if not info.dtype.hasobject and member.file_size != offset + info.nbytes:  # pickled members have no fixed size
            raise ValueError(f"{self.path}: array {key!r} claims shape {info.shape} of {info.dtype} ({info.nbytes:,} bytes) but "
                             f"its member holds {member.file_size - offset:,} bytes of data")
        return info

    def check(self, key: str, *, kinds: str, ndim: int, name: str | None = None) -> ArrayInfo:
        """The header of `key`, which must exist, be a C-order numeric array of a dtype kind in `kinds` (numpy's
        letters: b, i, u, f) and have `ndim` dimensions; ValueError naming the key otherwise."""
        name = name or key
        if key not in self.info:
            raise ValueError(f"{self.path} lacks the key {key!r}; it holds {self.keys}")
        info = self.info[key]
        if info.dtype.hasobject:
            raise ValueError(f"{self.path}: {name} holds Python objects, which cannot be read without pickle (refused)")
        if info.dtype.kind not in kinds or info.dtype.fields is not None:
            raise ValueError(f"{self.path}: {name} has dtype {info.dtype}; expected {_kind_names(kinds)}")
        if len(info.shape) != ndim:
            raise ValueError(f"{self.path}: {name} must have {ndim} dimensions, got shape {info.shape}")
        if info.fortran_order and ndim > 1:
            raise ValueError(f"{self.path}: {name} is stored in Fortran order; save it in C order (np.ascontiguousarray)")
        return info

    def chunks(self, key: str, rows: int) -> Iterator[np.ndarray]:
        """A C-order array in blocks of `rows` along its first axis, in native byte order; memory stays at one block."""
        info = self.info[key]
        if info.dtype.hasobject or not info.shape or (info.fortran_order and len(info.shape) > 1):
            raise ValueError(f"{self.path}: {key} is not a C-order numeric array of at least one dimension")
        row_shape = info.shape[1:]
        for start, data in zip(range(0, info.shape[0], rows), self._blocks(key, rows * math.prod(row_shape) * info.dtype.itemsize),
                               strict=False):
            count = min(rows, info.shape[0] - start)
            yield np.frombuffer(data, dtype=info.dtype).reshape(count, *row_shape).astype(info.dtype.newbyteorder("="), copy=False)

    def read(self, key: str, max_bytes: int) -> np.ndarray:
        """The whole array (C or Fortran order), if its header declares at most `max_bytes`."""
        info = self.info[key]
        if info.dtype.hasobject:
            raise ValueError(f"{self.path}: {key} holds Python objects, which cannot be read without pickle (refused)")
        if info.nbytes > max_bytes:
            raise ValueError(f"{self.path}: {key} has shape {info.shape} ({info.nbytes:,} bytes), more than the {max_bytes:,} allowed")
        data = b"".join(self._blocks(key, max(info.nbytes, 1)))
        array = np.frombuffer(data, dtype=info.dtype).reshape(info.shape, order="F" if info.fortran_order else "C")
        return array.astype(info.dtype.newbyteorder("="))

    def _blocks(self, key: str, block_bytes: int) -> Iterator[bytes]:
        """The data bytes of an array (after its header) in blocks of `block_bytes`; ValueError if it ends early."""
        left = self.info[key].nbytes
        try:
            with self._zip.open(self._members[key]) as f:
                f.read(self._offsets[key])  # the header, read and checked when the archive was opened
                while left > 0:
                    want = min(block_bytes, left)
                    parts = []
                    while want > 0:
                        part = f.read(want)
                        if not part:
                            raise EOFError(f"the data ends {left - sum(map(len, parts)):,} bytes early")
                        parts.append(part)
                        want -= len(part)
                    data = b"".join(parts)
                    left -= len(data)
                    yield data
        except (OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
            raise ValueError(f"{self.path}: cannot read array {key!r} ({' '.join(str(e).split())[:200]})") from None


def _kind_names(kinds: str) -> str:
    names = {"b": "booleans", "i": "integers", "u": "unsigned integers", "f": "floats"}
    return " or ".join(names[k] for k in kinds)
