"""What every command's flags share: one-line usage errors, flags from a config dataclass, range and output checks."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from pathlib import Path

MAX_POINTS = 100_000  # evaluate --num-train / --num-test: images rendered at once (64x64: 1.6 GB at the limit)
MAX_SEED = 2**63 - 1
MAX_MESSAGE = 600  # characters of an error line
TABLE_FORMATS = (".md", ".markdown")  # reproduce --table
REPORT_FORMATS = (".html", ".htm")  # report --out


class UsageError(Exception):
    """A bad flag or value: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


def field_type(f: dataclasses.Field) -> typing.Callable[[str], typing.Any]:
    """argparse type for a config dataclass field (annotations are strings under `from __future__`)."""
    ann = str(f.type)
    if ann.startswith("tuple"):
        return lambda s: tuple(int(v) for v in s.split(","))
    if ann == "dict":
        return json.loads
    if "float" in ann:
        return lambda s: None if s.lower() == "none" else float(s)
    if ann == "int":
        return int
    return str


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=field_type(f), default=argparse.SUPPRESS,
                            help=f"(default: {default})")


def in_range(flag: str, value: int | float, low: int | float, high: int | float) -> None:
    if not low <= value <= high:  # False for NaN too
        raise UsageError(f"{flag} must be in {low:,}..{high:,}, got {value}")


def image_formats() -> tuple[str, ...]:
    """File extensions PIL can write an image to (lower case, with the dot)."""
    from PIL import Image

    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE))


def check_output(path: Path, flag: str, extensions: tuple[str, ...]) -> None:
    """Refuse an output path that cannot be written, before any work is done. The extension must be one of
    `extensions`, so that a slip of the flag cannot overwrite a data file (`--table weights.safetensors`)."""
    if path.suffix.lower() not in extensions:
        common = [e for e in (".png", ".gif", ".jpg", ".webp", ".bmp", ".tiff", *extensions) if e in extensions]
        common = list(dict.fromkeys(common))[:6]
        raise UsageError(f"{flag} {path}: unexpected file extension {path.suffix or '(none)'!r}; use "
                         f"{' or '.join(common)}{' (or another that PIL writes)' if len(extensions) > len(common) else ''}")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {parent} is not writable")
