"""safetensors weights: written atomically, and read only after the header is parsed by hand and checked.

Every failure is a `CheckpointError` naming the file and the problem; nothing in a file is ever executed (no pickle).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from mtc_core.runs.files import CheckpointError, atomic_write_bytes, parse_json

# Our models have at most a few hundred tensors (a header of a few KB), checkpoints with optimiser state a few times
# more; the bound keeps a hostile header from making the loader parse a 100 MB JSON document.
MAX_HEADER_BYTES = 1_000_000


# safetensors dtypes a run may hold (torch dtype, bytes per element). float8 and complex tensors are refused by name.
DTYPES = {"F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
          "I64": (torch.int64, 8), "I32": (torch.int32, 4), "I16": (torch.int16, 2), "I8": (torch.int8, 1),
          "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1)}


TENSOR_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}


def atomic_save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """The safetensors bytes (`safetensors.torch.save`), written by `runs.files.atomic_write_bytes`: a temporary file
    in the same folder and a rename. Not `save_file`, which writes through a temporary file of its own (`.tmpXXXXXX`)
    that a kill leaves behind and whose disk-full error is not an OSError. The sizes are bounded (MAX_PARAMETERS):
    holding the bytes once in memory is fine."""
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def state_tensors(model: torch.nn.Module, dtype: torch.dtype | None = None, auxiliary: bool = True) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors (optionally floats cast, e.g. to float16; optionally without the
    training-only nets named by `model.auxiliary_prefixes`)."""
    tensors = {}
    skip = () if auxiliary else tuple(getattr(model, "auxiliary_prefixes", ()))
    for name, t in model.state_dict().items():
        if skip and name.startswith(skip):
            continue
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    return tensors


def save_weights(model: torch.nn.Module, path: str | Path, dtype: torch.dtype | None = None, auxiliary: bool = True) -> None:
    """Atomically write the model's state dict as safetensors (see `state_tensors` for dtype and auxiliary)."""
    atomic_save_file(state_tensors(model, dtype, auxiliary), path)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header, validated."""

    dtype: str  # safetensors dtype name, a key of DTYPES
    shape: tuple[int, ...]
    begin: int  # byte offsets into the data section
    end: int


def read_safetensors_header(file: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """(tensors, metadata) from a safetensors file's header, parsed by hand so that every failure gets a clear message:
    names, dtypes, shapes and byte ranges are checked against each other and the file's size; no tensor is read."""
    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"{file}: missing file")
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            (n,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
            raw = f.read(n) if n is not None and n <= min(size - 8, MAX_HEADER_BYTES) else None
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror or e})") from None
    # A pickle starts with 0x80 and its protocol, a torch.save file with a zip's "PK"; only a file that does not
    # parse as safetensors is named a pickle (a valid header length may start with byte 0x80 as well).
    pickle_hint = head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
    refusal = f"{file}: looks like a pickle / torch.save file; only safetensors weights are loaded (never pickle)"
    if n is None:
        raise CheckpointError(refusal if pickle_hint else f"{file}: truncated ({size} bytes), not a safetensors file")
    if raw is None:
        if pickle_hint:
            raise CheckpointError(refusal)
        if n > size - 8:
            raise CheckpointError(f"{file}: not a safetensors file, or truncated (header length {n} > file size {size})")
        raise CheckpointError(f"{file}: header of {n} bytes, over the limit of {MAX_HEADER_BYTES}")
    try:
        header = parse_json(raw, str(file))
    except CheckpointError as e:
        raise CheckpointError(refusal if pickle_hint else f"{file}: not a safetensors file (unreadable header: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(f"{file}: header __metadata__ must map strings to strings")
    tensors = {name: _tensor_info(file, name, entry) for name, entry in header.items()}
    data_size, position = size - 8 - n, 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin != position:
            raise CheckpointError(f"{file}: tensor {name} starts at byte {info.begin} of the data, expected {position} "
                                  f"(tensors must cover the data without gaps or overlaps)")
        position = info.end
    if position != data_size:
        problem = "truncated" if position > data_size else "corrupt"
        raise CheckpointError(f"{file}: {problem}: the header describes {8 + n + position} bytes, the file has {size}")
    return tensors, metadata


def _tensor_info(file: Path, name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{file}: header entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        kind = " (float8 weights are not supported)" if isinstance(dtype, str) and dtype.startswith("F8") else ""
        raise CheckpointError(f"{file}: tensor {name!r} has dtype {dtype!r}{kind}; supported: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise CheckpointError(f"{file}: tensor {name!r} has shape {shape!r}, not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise CheckpointError(f"{file}: tensor {name!r} has data_offsets {offsets!r}, expected [begin, end] byte offsets")
    if (offsets[1] - offsets[0]) != math.prod(shape) * DTYPES[dtype][1]:
        raise CheckpointError(f"{file}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes, its shape {shape} and "
                              f"dtype {dtype} need {math.prod(shape) * DTYPES[dtype][1]}")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def check_header(file: Path, header: dict[str, TensorInfo], expected: dict[str, torch.Tensor], what: str) -> None:
    """The header holds exactly the `expected` tensors (any tensors, e.g. on the meta device), with their shapes, and
    dtypes that cast to theirs without loss of meaning: floats as any float (half-precision weights are a legitimate
    compact format), everything else exactly."""
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{file}: tensor names do not match {what}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, want in expected.items():
        info = header[name]
        if info.shape != tuple(want.shape):
            raise CheckpointError(f"{file}: tensor {name} has shape {info.shape}, {what} needs {tuple(want.shape)}")
        got = DTYPES[info.dtype][0]
        if got != want.dtype and not (got.is_floating_point and want.dtype.is_floating_point):
            raise CheckpointError(f"{file}: tensor {name} has dtype {got}, {what} needs {want.dtype}")


def read_tensors(file: str | Path, expected: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after `read_safetensors_header` and `check_header` passed; floats cast to the
    expected dtype and refused when they hold NaN or inf."""
    file = Path(file)
    check_header(file, read_safetensors_header(file)[0], expected, what)
    try:
        tensors = load_file(file)
    except Exception as e:  # the safetensors library's own errors are not one type
        raise CheckpointError(f"{file}: unreadable safetensors file ({type(e).__name__}: {e})") from None
    for name, want in expected.items():
        got = tensors[name]
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{file}: tensor {name} holds NaN or inf")
        tensors[name] = got.to(want.dtype)
    return tensors
