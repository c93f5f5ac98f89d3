"""Fuzz the CLI, the loaders and the estimators with generated bad inputs (issue 12).

Seeded generators build hostile inputs of six kinds: command lines (every command, flags replaced by bad
numbers, paths, extensions and cluster addresses), run folders (corrupted config.json, weights, history,
metrics), dataset files (dSprites-format .npz: flipped bytes, truncation, forged headers, zip bombs, garbage),
codes files (evaluate-codes), sweep specs (random YAML with tags, aliases, dates, deep nesting, mutated valid
specs) and arrays for the estimators and metrics (NaN, inf, 1e308, subnormals, complex, wrong shapes, constant
columns). Each input runs in a forked child with a per-input timeout and a memory limit, and is classified:

  refused    a clean refusal: ValueError (CheckpointError is one) from a library call, or exit code 2 with one
             'mtc_core CMD: error: ...' line and no traceback from the CLI
  accepted   ran to the end (a library call returned finite numbers; the CLI exited 0 or 1)
  traceback  any other exception, a CLI traceback, or a library call that returned NaN/inf silently
  hang       killed at the per-input timeout
  crash      the child died (signal, out of memory) without an answer
  data lost  a pre-existing run, zoo, spec or dataset file changed or vanished after a command; not counted: a
             metrics.json (evaluate and reproduce rewrite it by design), and after an accepted command the zoo
             (zoo-add) and the files it was told to write (--table, --png, --gif, --plot, evaluate-codes --out)

A few inputs also run as real `python -m mtc_core` subprocesses. Prints counts per kind and the first examples
of every failure; exit code 1 if any traceback, hang, crash or data loss was seen.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz.py              # ~900 inputs, about 2 minutes on one core
    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz.py --scale 3    # three times as many
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtc_core import __main__ as cli  # noqa: E402
from mtc_core import estimators, metrics, sweep  # noqa: E402
from mtc_core import io as mtc_io  # noqa: E402
from mtc_core.data import DSpritesFile  # noqa: E402

FAILURES = ("traceback", "hang", "crash", "data lost")
COUNTS = {"cli": 200, "runs": 100, "datasets": 100, "codes": 50, "specs": 150, "arrays": 200}  # per --scale 1
MEMORY_LIMIT = 3 * 2**30  # bytes of address space a child may add to the parent's
TINY_TRAIN = ["--steps", "3", "--batch-size", "8", "--eval-every", "1", "--eval-size", "16", "--device", "cpu",
              "--latent-dim", "3", "--hidden", "8"]

# ---------------------------------------------------------------- running one input


def run_isolated(fn: Callable[[], dict], timeout: float) -> dict:
    """fn() in a forked child under a memory limit; its dict, or {"kind": "hang" | "crash"}."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        code = 0
        try:
            soft = _address_space() + MEMORY_LIMIT
            resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
            result = fn()
        except BaseException as e:  # everything the input raised is the finding
            result = {"kind": "traceback", "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
                      "where": traceback.format_exc().strip().splitlines()[-3:-1]}
        try:
            os.write(write_end, json.dumps(result, default=str).encode())
        except BaseException:
            code = 3
        os._exit(code)
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"kind": "hang", "error": f"no answer within {timeout:g} s"}
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"kind": "crash", "error": f"child ended with status {status} and no answer"}
    return json.loads(data)


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def call_library(fn: Callable[[], object], allow_inf: bool = False) -> Callable[[], dict]:
    """A library call: ValueError is a refusal; a result holding NaN or inf is a silent failure (`allow_inf`: +inf is
    a documented answer, e.g. gaussian_tc of a singular covariance, whose Gaussian TC is infinite)."""

    def run() -> dict:
        try:
            value = fn()
        except ValueError as e:
            return {"kind": "refused", "error": " ".join(str(e).split())[:200]}
        bad = "" if allow_inf and isinstance(value, float) and value == math.inf else _non_finite(value)
        if bad:
            return {"kind": "traceback", "error": f"returned a non-finite value silently: {bad}"}
        return {"kind": "accepted"}

    return run


def _non_finite(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    if isinstance(value, dict):
        return next((f"{k}: {b}" for k, v in value.items() if (b := _non_finite(v))), "")
    if isinstance(value, list | tuple):
        return next((b for v in value if (b := _non_finite(v))), "")
    if isinstance(value, float | int | np.ndarray | np.generic) and not isinstance(value, bool):
        array = np.asarray(value)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            return repr(value)[:80]
    return ""


def call_cli(argv: list[str]) -> Callable[[], dict]:
    """mtc_core.__main__.main(argv) in-process; exit 2 must come with exactly one error line and no traceback."""

    def run() -> dict:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse --help
                code = e.code if isinstance(e.code, int) else 0
        return classify_cli(code, err.getvalue())

    return run


def classify_cli(code: int, stderr: str) -> dict:
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    if "Traceback (most recent call last)" in stderr:
        return {"kind": "traceback", "error": stderr.strip().splitlines()[-1][:300]}
    if code == 2:
        clean = len(errors) == 1 and errors[0].startswith("mtc_core") and len(errors[0]) < 1000
        return {"kind": "refused" if clean else "traceback", "error": (errors[0] if errors else stderr.strip())[:300]}
    return {"kind": "accepted", "code": code}


# ---------------------------------------------------------------- fixtures


class Workspace:
    """A temporary folder with one trained run, a zoo, valid files of every kind, and their fingerprints."""

    def __init__(self, root: Path):
        from mtc_core import zoo
        from mtc_core.train import TrainConfig, train

        self.root = root
        self.scratch = root / "scratch"
        self.scratch.mkdir()
        self.run = root / "victim_run"
        config = TrainConfig(model="beta_tcvae", model_params={"latent_dim": 3, "hidden": 16}, dataset={"name": "toy"},
                             steps=6, batch_size=16, eval_every=3, eval_size=32, checkpoint_every=3, device="cpu")
        with contextlib.redirect_stderr(io.StringIO()):
            train(config, self.run, command="bench/fuzz.py")
        self.zoo = root / "zoo"
        zoo.add_run(self.run, self.zoo, "good", "fuzz model")
        self.dsprites = root / "tiny_dsprites.npz"
        np.savez(self.dsprites, **tiny_dsprites())
        self.codes = root / "codes.npz"
        rng = np.random.default_rng(0)
        mean = rng.standard_normal((300, 4))
        np.savez(self.codes, mean=mean, logvar=rng.standard_normal((300, 4)) - 2, factors=rng.integers(0, 4, (300, 2)))
        self.spec = root / "spec.yaml"
        self.spec.write_text("dataset: {name: toy}\ntrain: {steps: 2, batch_size: 8, eval_every: 1, eval_size: 16, device: cpu}\n"
                             "seeds: [0]\nmodels: [{name: vae, params: {latent_dim: 2, hidden: 8}}]\n")
        self.file = root / "plain_file.txt"
        self.file.write_text("a file, not a folder")
        self.protected = [self.run, self.zoo, self.dsprites, self.codes, self.spec, self.file]
        self.sources = root / "sources"  # pristine copies the file mutations start from, out of the commands' reach
        self.sources.mkdir()
        for path in (self.dsprites, self.codes):
            shutil.copy(path, self.sources / path.name)
        self.fingerprint = self.snapshot()

    def snapshot(self) -> dict[str, str]:
        """sha256 of every protected file; metrics.json is left out (evaluate and reproduce rewrite it by design)."""
        out = {}
        for item in self.protected:
            for path in [item] if item.is_file() else sorted(p for p in item.rglob("*") if p.is_file()):
                if path.name != mtc_io.METRICS:
                    out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out


def tiny_dsprites() -> dict[str, np.ndarray]:
    sizes = (3, 2, 2, 4, 4)
    classes = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=1)
    imgs = np.zeros((len(classes), 8, 8), np.uint8)
    for i, c in enumerate(classes):
        imgs[i, c[3]: c[3] + 2 + c[1], c[4]: c[4] + 2 + c[0]] = 1
    latents = np.concatenate([np.zeros((len(classes), 1), np.int64), classes], axis=1)
    return {"imgs": imgs, "latents_classes": latents, "latents_values": latents.astype(np.float64)}


# ---------------------------------------------------------------- generators

BAD_NUMBERS = ["0", "-1", "-5", "1", "2", str(2**63), str(10**12), "1e5", "1e400", "nan", "inf", "-inf", "", " ", "abc",
               "0x10", "\u0661\u0662", "1_000", "3.5", "-0", "+7", "9" * 400]
BAD_FLOATS = ["nan", "inf", "-inf", "1e308", "-1e308", "0", "-0.5", "1e-320", "abc", "", "1e400", "100000", "2"]


class Generator:
    def __init__(self, ws: Workspace, rng: random.Random):
        self.ws, self.rng = ws, rng
        self.count = 0

    def fresh(self, suffix: str = "") -> Path:
        self.count += 1
        return self.ws.scratch / f"f{self.count}{suffix}"

    def bad_path(self, kind: str = "any") -> str:
        ws, r = self.ws, self.rng
        options = [str(ws.root / "absent"), str(ws.file), str(ws.scratch), "/dev/null", "/dev/zero", "/proc/self",
                   str(ws.root / ("x" * 300)), str(ws.root / "a\nb"), str(ws.root / "no" / "such" / "dir" / "x"), "",
                   str(ws.dsprites), str(ws.codes), str(ws.spec), str(ws.run), str(ws.zoo), "/", "~", "-", "--",
                   str(ws.run / mtc_io.WEIGHTS), str(ws.root / "\udcff")]
        if kind == "out":
            options += [str(self.fresh()), str(self.fresh(".png")), str(self.fresh(".gif"))]
        return r.choice(options)

    def cli(self) -> list[str]:
        """A command line: a valid one for its command with one to three flags made hostile."""
        r, ws = self.rng, self.ws
        command = r.choice(["evaluate", "traverse", "theory", "sweep", "reproduce", "train", "zoo-add", "evaluate-codes", "bogus"])
        if command == "evaluate":
            argv = ["evaluate", str(ws.run), "--num-train", "200", "--num-test", "100", "--device", "cpu"]
            return self._mutate(argv, {"--num-train": BAD_NUMBERS, "--num-test": BAD_NUMBERS, "--seed": BAD_NUMBERS,
                                       "--device": ["cuda", "mps", "tpu", "", "cuda:99"], 1: None})
        if command == "traverse":
            argv = ["traverse", str(ws.run), "--png", str(self.fresh(".png")), "--gif", str(self.fresh(".gif"))]
            return self._mutate(argv, {"--steps": BAD_NUMBERS, "--scale": BAD_NUMBERS, "--extent": BAD_FLOATS,
                                       "--seed": BAD_NUMBERS, "--range": ["prior", "quantile", "bogus", ""],
                                       "--png": None, "--gif": None, 1: None})
        if command == "theory":
            argv = ["theory"]
            return self._mutate(argv, {"--d": BAD_NUMBERS[:12] + ["100000"], "--s": BAD_FLOATS, "--rho": BAD_FLOATS + ["0.999999", "1", "-1"]})
        if command == "sweep":
            argv = ["sweep", str(ws.spec), "--out", str(self.fresh()), "--address", "127.0.0.1:1"]
            return self._mutate(argv, {"--address": ["127.0.0.1:1", "bad address", "ray://", "host:0", "1.2.3.4:99999", "[::1]:1",
                                                     "localhost:1", "x" * 500, "ray://127.0.0.1:1"],
                                       "--only": ["zzz*", "[", "*" * 300], "--max-runs": BAD_NUMBERS, "--num-cpus": BAD_NUMBERS,
                                       "--cpus-per-run": BAD_NUMBERS, "--gpus-per-run": BAD_FLOATS, "--out": None, 1: None})
        if command == "reproduce":
            argv = ["reproduce", "--zoo", str(ws.zoo), "--table", str(self.fresh(".md")), "--figures", str(self.fresh()),
                    "--num-train", "200", "--num-test", "100"]
            return self._mutate(argv, {"--num-train": BAD_NUMBERS, "--num-test": BAD_NUMBERS, "--seed": BAD_NUMBERS,
                                       "--zoo": None, "--table": None, "--sweep": None})
        if command == "train":
            argv = ["train", "--out", str(self.fresh()), *TINY_TRAIN]
            return self._mutate(argv, {"--out": None, "--model": ["vae", "beta_tcvae", "nope", ""], "--dataset": [
                "toy", "{bad", '{"name": "toy", "size": 1000000}', '{"name": "dsprites", "path": "/nope"}', "[]", "null", "shapes2d"],
                "--steps": ["0", "-1", "abc", "1e5", "2"], "--lr": BAD_FLOATS, "--batch-size": ["0", "-1", "1", "abc", str(10**9)],
                "--latent-dim": BAD_NUMBERS, "--hidden": ["0", "-1", str(10**9), "abc"], "--image-shape": ["1,64,64", "0,0,0", "a", "1"],
                "--beta": BAD_FLOATS})
        if command == "zoo-add":
            argv = ["zoo-add", str(ws.run), "--name", "added", "--label", "fuzz", "--zoo", str(self.fresh())]
            return self._mutate(argv, {"--name": ["index.json", "..", ".hidden", "a/b", "", "x" * 300, "good"], "--label": ["", " "],
                                       "--zoo": None, 1: None})
        if command == "evaluate-codes":
            argv = ["evaluate-codes", str(ws.codes), "--out", str(self.fresh(".json"))]
            return self._mutate(argv, {"--seed": BAD_NUMBERS, "--dci-mode": ["fast", "gbt", "bogus"], "--out": None, 1: None})
        return ["bogus", "--x"]

    def _mutate(self, argv: list[str], flags: dict) -> list[str]:
        """Replace or add one to three flags (a positional by its index) with hostile values."""
        argv = list(argv)
        for _ in range(self.rng.randint(1, 3)):
            flag = self.rng.choice(list(flags))
            values = flags[flag]
            value = self.rng.choice(values) if values else self.bad_path("out" if flag in ("--png", "--gif", "--out", "--table") else "any")
            if isinstance(flag, int):
                argv[flag] = value
            elif flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        if self.rng.random() < 0.05:
            argv.append(self.rng.choice(["--help", "--bogus", "-x", "--num-train"]))
        return argv

    # run folders -------------------------------------------------

    def run_folder(self) -> tuple[Path, str]:
        """A corrupted copy of the victim run and what was done to it."""
        r = self.rng
        copy = self.fresh()
        shutil.copytree(self.ws.run, copy)
        what = r.choice(["config_value", "config_field", "config_bytes", "weights_truncate", "weights_flip", "weights_header",
                         "history", "metrics", "missing_file"])
        config_path, weights = copy / mtc_io.CONFIG, copy / mtc_io.WEIGHTS
        if what == "config_value":
            config_path.write_text(json.dumps(r.choice([[1, 2], "x", None, 3, {}, {"model": None}, [[[[[]]]]]])))
        elif what == "config_field":
            config = json.loads(config_path.read_text())
            field = r.choice([("model", "params", "hidden"), ("model", "params", "latent_dim"), ("model", "params", "image_shape"),
                              ("model", "name"), ("dataset",), ("dataset", "size"), ("dataset", "name"), ("format_version",),
                              ("train",), ("model", "params", "architecture"), ("status",)])
            value = r.choice([10**9, -1, 0, 1e308, "x", None, [1000000, 64, 64], [1, 32], {"a": 1}, [], True, "nan", 2.5])
            node = config
            for key in field[:-1]:
                node = node.setdefault(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                if r.random() < 0.2:
                    node.pop(field[-1], None)
                else:
                    node[field[-1]] = value
            config_path.write_text(json.dumps(config))
        elif what == "config_bytes":
            config_path.write_bytes(r.choice([b"\xff\xfe\x00", b"{" * 100_000, b"", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"]))
        elif what == "weights_truncate":
            data = weights.read_bytes()
            weights.write_bytes(data[: r.randint(0, len(data) - 1)])
        elif what == "weights_flip":
            data = bytearray(weights.read_bytes())
            for _ in range(r.randint(1, 20)):
                position = r.randint(0, min(len(data) - 1, 600))  # mostly the header
                data[position] = r.randint(0, 255)
            weights.write_bytes(bytes(data))
        elif what == "weights_header":
            data = weights.read_bytes()
            length = int.from_bytes(data[:8], "little")
            header = json.loads(data[8: 8 + length])
            name = r.choice([k for k in header if k != "__metadata__"])
            header[name] = r.choice([{"dtype": "F8_E4M3", "shape": header[name]["shape"], "data_offsets": header[name]["data_offsets"]},
                                     {"dtype": "F32", "shape": header[name]["shape"]},
                                     {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4 * 10**9]},
                                     {"dtype": "F32", "shape": header[name]["shape"], "data_offsets": [0, 2**62]}, "x", None])
            raw = json.dumps(header).encode()
            weights.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length:])
        elif what == "history":
            (copy / mtc_io.HISTORY).write_bytes(r.choice([b"\xff\xfe\n", b"[1,2]\n", b"{\n", b"null\n" * 10]))
        elif what == "metrics":
            (copy / mtc_io.METRICS).write_text(r.choice(["[]", "null", "{", '{"evaluation": [1]}']))
        else:
            (copy / r.choice([mtc_io.CONFIG, mtc_io.WEIGHTS])).unlink()
        return copy, what

    # dataset and codes files --------------------------------------

    def npz_file(self, valid: Path, suffix: str) -> tuple[Path, str]:
        r = self.rng
        path = self.fresh(suffix)
        data = valid.read_bytes()
        what = r.choice(["flip", "truncate", "garbage", "header", "bomb", "empty", "pickle", "directory", "member"])
        if what == "flip":
            out = bytearray(data)
            for _ in range(r.randint(1, 30)):
                out[r.randrange(len(out))] = r.randint(0, 255)
            path.write_bytes(bytes(out))
        elif what == "truncate":
            path.write_bytes(data[: r.randrange(len(data))])
        elif what == "garbage":
            path.write_bytes(r.choice([b"hello", bytes([0x80, 0x00]) * 50, os.urandom(2000), b"\x93NUMPY" + os.urandom(100), b"\x89HDF\r\n\x1a\n"]))
        elif what == "empty":
            path.write_bytes(b"")
        elif what == "pickle":
            path.write_bytes(b"\x80\x04\x95" + os.urandom(64))
        elif what == "directory":
            path.mkdir()
        else:
            members = {}
            with zipfile.ZipFile(valid) as archive:
                for name in archive.namelist():
                    members[name] = archive.read(name)
            name = r.choice(list(members))
            if what == "member":
                members[r.choice([name, "extra.npy", "readme.txt"])] = r.choice([b"", os.urandom(50), members[name][:20]])
                raw = _zip(members)
            elif what == "header":
                shape = r.choice([(10**18,), (2**31, 64, 64), (0, 8, 8), (2, 0, 8), (), (5,) * 9, (-1, 2), (1, 2, 3, 4)])
                descr = r.choice(["|u1", "<f8", "|O", "<c16", "|V8", "<U3", ">i8", "|b1", "<f2"])
                header = io.BytesIO()
                try:
                    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": r.random() < 0.2, "shape": shape})
                except (ValueError, TypeError):
                    header.write(b"\x93NUMPY\x01\x00\x10\x00{'bogus': 1}    \n")
                members[name] = header.getvalue() + os.urandom(r.randint(0, 200))
                raw = _zip(members)
            else:  # bomb: many zeros deflated, declared as the first member
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                              "shape": r.choice([(2**24,), (2**12, 64, 64), (2**23, 2)])})
                members[name] = header.getvalue() + bytes(2**24)
                raw = _zip(members, zipfile.ZIP_DEFLATED)
                if r.random() < 0.5:  # and a forged central directory size
                    raw = bytearray(raw)
                    entry = raw.index(b"PK\x01\x02")
                    raw[entry + 24: entry + 28] = (2**32 - 1).to_bytes(4, "little")
                    raw = bytes(raw)
            path.write_bytes(raw)
        return path, what

    # sweep specs ---------------------------------------------------

    def spec_text(self) -> tuple[str, str]:
        r = self.rng
        what = r.choice(["random", "mutated", "laughs", "tags", "deep"])
        if what == "random":
            return self._yaml(self._value(4)), what
        if what == "laughs":
            levels, width = r.randint(4, 9), r.randint(3, 10)
            lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
            place = r.choice(["label", "grid", "params", "seeds"])
            value = f"*a{levels - 1}" if place in ("label", "seeds") else f"{{beta: *a{levels - 1}}}"
            return "\n".join(lines) + f"\ndataset: {{name: toy}}\nmodels: [{{name: beta_vae, {place}: {value}}}]\n", what
        if what == "tags":
            tag = r.choice(["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!binary aGk=", "!!set {a}",
                            "!custom x", "!!timestamp 2001-01-01", "2001-01-01", "!!float nan", "!!int 1e3", "!!omap [a: 1]"])
            return f"dataset: {{name: toy}}\nmodels: [{{name: vae, params: {{latent_dim: {tag}}}}}]\n", what
        if what == "deep":
            depth = r.randint(40, 800)
            return "dataset: " + "[" * depth + "]" * depth + "\nmodels: []\n", what
        spec = {"dataset": {"name": "toy"}, "train": {"steps": 2, "batch_size": 8}, "seeds": [0, 1],
                "models": [{"name": "beta_tcvae", "grid": {"beta": [1, 2]}, "params": {"latent_dim": 2}}]}
        for _ in range(r.randint(1, 4)):
            node, keys = spec, []
            while isinstance(node, dict | list) and node and r.random() < 0.7:
                key = r.choice(list(node)) if isinstance(node, dict) else r.randrange(len(node))
                keys.append(key)
                if not isinstance(node[key], dict | list):
                    break
                node = node[key]
            parent = spec
            for key in keys[:-1]:
                parent = parent[key]
            if keys:
                parent[keys[-1]] = self._value(2)
        return self._yaml(spec), what

    def _value(self, depth: int):
        r = self.rng
        if depth <= 0 or r.random() < 0.4:
            return r.choice([0, -1, 10**30, 1.5, float("nan"), float("inf"), "", "x" * r.randint(1, 3000), None, True, "toy", "vae",
                             "\u202e\u0000", [], {}, "1e-3", 2**64])
        if r.random() < 0.5:
            return [self._value(depth - 1) for _ in range(r.randint(0, 5))]
        keys = ["dataset", "models", "train", "seeds", "name", "grid", "params", "label", "lr", "steps", "beta", "x", 1, None]
        return {r.choice(keys): self._value(depth - 1) for _ in range(r.randint(0, 5))}

    @staticmethod
    def _yaml(value) -> str:
        import yaml

        return yaml.safe_dump(value, allow_unicode=True)

    # arrays ---------------------------------------------------------

    def array(self) -> np.ndarray | list | torch.Tensor:
        r = self.rng
        n, d = r.choice([0, 1, 2, 3, 5, 50, 200]), r.choice([0, 1, 2, 3, 6])
        rng = np.random.default_rng(r.randrange(2**32))
        with np.errstate(over="ignore", under="ignore"):  # inf from 1e308 is one of the inputs
            x = rng.standard_normal((n, d)) * r.choice([1.0, 1e-300, 1e-200, 1e150, 1e300, 1e308, 5e-324])
        trick = r.choice(["none", "nan", "inf", "constant", "duplicate", "complex", "int", "bool", "f16", "f32", "object", "str",
                          "3d", "1d", "ragged", "tensor", "bf16", "huge_range", "negzero"])
        if trick == "nan" and x.size:
            x.flat[r.randrange(x.size)] = np.nan
        elif trick == "inf" and x.size:
            x.flat[r.randrange(x.size)] = r.choice([np.inf, -np.inf])
        elif trick == "constant" and d:
            x[:, r.randrange(d)] = r.choice([0.0, 7.0, 1e300])
        elif trick == "duplicate" and n:
            x[:] = x[:1]
        elif trick == "complex":
            x = x + 1j
        elif trick == "int":
            x = (x * 3).astype(np.int64) if np.isfinite(x).all() and np.abs(x).max(initial=0) < 1e15 else x
        elif trick == "bool":
            x = x > 0
        elif trick == "f16":
            with np.errstate(over="ignore"):
                x = x.astype(np.float16)
        elif trick == "f32":
            with np.errstate(over="ignore", under="ignore"):
                x = x.astype(np.float32)
        elif trick == "object":
            x = x.astype(object)
        elif trick == "str":
            x = x.astype(str)
        elif trick == "3d":
            x = x[None]
        elif trick == "1d":
            x = x.ravel()
        elif trick == "ragged":
            return [[1.0, 2.0], [3.0]] * max(n, 1)
        elif trick == "tensor":
            return torch.as_tensor(x)
        elif trick == "bf16":
            return torch.as_tensor(x, dtype=torch.float32).to(torch.bfloat16)
        elif trick == "huge_range" and x.size:
            x.flat[0] = 1e308
        elif trick == "negzero":
            x = -np.zeros_like(x)
        return x

    def estimator_call(self) -> tuple[Callable[[], object], str]:
        r = self.rng
        a, b = self.array(), self.array()
        rng = np.random.default_rng(r.randrange(2**32))
        factors = rng.integers(0, 3, size=(len(a) if hasattr(a, "__len__") else 0, 2))

        def tensor(x):  # the torch estimators take tensors; what torch cannot convert is passed as it is
            try:
                return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError, RuntimeError):
                return x

        def square(x):  # a matrix for the covariance estimators: x^T x when numpy can form it, else x itself
            try:
                with np.errstate(all="ignore"):
                    return np.asarray(x).T @ np.asarray(x)
            except (TypeError, ValueError):
                return x

        calls = {
            "gaussian_tc": lambda: estimators.gaussian_tc(square(a)),
            "wasserstein": lambda: estimators.gaussian_wasserstein_correlation(square(a), normalize=r.random() < 0.5),
            "sampled_cov": lambda: estimators.sampled_cov(a, b),
            "tc_dataset": lambda: estimators.tc_dataset(a, b, num_samples=r.choice([1, 10, 0, -1, 2.5]), rng=0),
            "tc_knn": lambda: estimators.tc_knn(a, k=r.choice([1, 3, 0, 10**6])),
            "tc_mws": lambda: estimators.tc_mws(tensor(a), tensor(a), tensor(b), r.choice([10**6, 1, 0, 1.5])),
            "tc_mss": lambda: estimators.tc_mss(tensor(a), tensor(a), tensor(b), r.choice([10**6, 3, 0])),
            "mean_tc_gaussian": lambda: estimators.mean_tc_gaussian(tensor(a), ridge=r.choice([1e-4, 0.0, -1.0, float("nan")])),
            "mean_tc_kde": lambda: estimators.mean_tc_kde(tensor(a)),
            "drop_constant_dims": lambda: estimators.drop_constant_dims(a)[0],
            "mig": lambda: metrics.mig(a, factors),
            "sap": lambda: metrics.sap(a, factors, a, factors, continuous=r.random() < 0.3),
            "dci": lambda: metrics.dci(a, factors, a, factors, mode="fast"),
            "modularity": lambda: metrics.modularity_explicitness(a, factors, a, factors),
            "unsupervised": lambda: metrics.unsupervised(a, num_bins=r.choice([20, 1, 0, 10**9])),
            "discretize": lambda: metrics.discretize(a, num_bins=r.choice([20, 2, 0, -1, 2.5])),
        }
        name = r.choice(list(calls))
        return calls[name], name


def output_files(argv: list[str]) -> tuple[str, ...]:
    """The files a command line names as its outputs (a folder given to train --out is a run, not an output file)."""
    flags = ("--table", "--png", "--gif", "--plot") + (("--out",) if argv[:1] == ["evaluate-codes"] else ())
    return tuple(argv[i + 1] for i, a in enumerate(argv[:-1]) if a in flags)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------- the campaign


def preload() -> None:
    """Import what the commands import lazily, once in the parent, so that each forked child starts warm."""
    import importlib

    for name in ("mtc_core.train", "mtc_core.evaluation", "mtc_core.reproduce", "mtc_core.zoo", "mtc_core.figures", "mtc_core.theory",
                 "mtc_core.codes_file", "mtc_core.analysis", "mtc_core.sweep_results", "mtc_core.disintegration", "PIL.Image", "ray",
                 "sklearn.ensemble", "sklearn.linear_model", "tqdm"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def campaign(seed: int, scale: float, timeout: float, subprocesses: int, say=print) -> dict:
    torch.set_num_threads(1)
    preload()
    rng = random.Random(seed)
    np.random.seed(seed)
    results: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list[str]] = defaultdict(list)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mtc_fuzz_") as tmp, contextlib.chdir(tmp):
        # inside the scratch folder: commands write their default outputs (RESULTS.md, traversal.png, runs/) there
        ws = Workspace(Path(tmp))
        gen = Generator(ws, rng)
        os.chdir(ws.scratch)

        def record(family: str, label: str, outcome: dict, outputs: tuple[str, ...] = ()) -> None:
            kind = outcome["kind"]
            after = ws.snapshot()
            # a protected file changed or removed; an accepted command may change the zoo (zoo-add replaces a name's
            # slot) and overwrite the file it was told to write (`outputs`)
            lost = [p for p, digest in ws.fingerprint.items() if after.get(p) != digest
                    and not (kind == "accepted" and (Path(p).is_relative_to(ws.zoo) or p in outputs))]
            if lost:
                examples["data lost"].append(f"{family}: {label[:300]} -> {lost[0]} ({kind})")
                results[family]["data lost"] += 1
            ws.fingerprint = after
            results[family][kind] += 1
            if kind in FAILURES and len(examples[kind]) < 12:
                examples[kind].append(f"{family}: {label[:300]} -> {outcome.get('error', '')[:300]} {outcome.get('where', '')}")

        plan = {family: max(1, round(count * scale)) for family, count in COUNTS.items()}
        for _ in range(plan["cli"]):
            argv = gen.cli()
            record("cli", " ".join(map(repr, argv)), run_isolated(call_cli(argv), timeout), output_files(argv))
        say(f"cli: {dict(results['cli'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["runs"]):
            folder, what = gen.run_folder()
            record("runs", f"load_run({what})", run_isolated(call_library(lambda f=folder: mtc_io.load_run(f)), timeout))
            if rng.random() < 0.5:
                argv = rng.choice([["evaluate", str(folder), "--num-train", "200", "--num-test", "100"],
                                   ["traverse", str(folder), "--png", str(gen.fresh(".png")), "--gif", str(gen.fresh(".gif"))]])
                record("runs", f"{argv[0]} on a run with {what}", run_isolated(call_cli(argv), timeout))
        say(f"runs: {dict(results['runs'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["datasets"]):
            path, what = gen.npz_file(ws.sources / ws.dsprites.name, ".npz")
            record("datasets", f"DSpritesFile({what})", run_isolated(call_library(lambda p=path: DSpritesFile(p)), timeout))
        say(f"datasets: {dict(results['datasets'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["codes"]):
            path, what = gen.npz_file(ws.sources / ws.codes.name, ".npz")
            argv = ["evaluate-codes", str(path), "--out", str(gen.fresh(".json"))]
            record("codes", f"evaluate-codes on {what}", run_isolated(call_cli(argv), timeout))
        say(f"codes: {dict(results['codes'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["specs"]):
            text, what = gen.spec_text()
            path = gen.fresh(".yaml")
            path.write_text(text)
            outcome = run_isolated(call_library(lambda p=path: sweep.expand(sweep.load_spec(p))), timeout)
            record("specs", f"spec({what}): {text[:120]!r}", outcome)
        say(f"specs: {dict(results['specs'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["arrays"]):
            call, name = gen.estimator_call()
            record("arrays", name, run_isolated(call_library(call, allow_inf=name == "gaussian_tc"), timeout))
        say(f"arrays: {dict(results['arrays'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(subprocesses):
            argv = gen.cli()
            try:
                done = subprocess.run([sys.executable, "-m", "mtc_core", *argv], capture_output=True, text=True, timeout=timeout * 3,
                                      cwd=ws.scratch, env={**os.environ, "OMP_NUM_THREADS": "1"})
                outcome = classify_cli(done.returncode, done.stderr)
            except subprocess.TimeoutExpired:
                outcome = {"kind": "hang", "error": f"no answer within {timeout * 3:g} s"}
            except ValueError as e:  # an argument with a NUL byte cannot reach a real process
                outcome = {"kind": "refused", "error": str(e)}
            record("subprocess", " ".join(map(repr, argv)), outcome, output_files(argv))
        say(f"subprocess: {dict(results['subprocess'])} ({time.monotonic() - start:.0f} s)")
    return {"results": results, "examples": examples, "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every family's input count")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per input before it counts as a hang")
    parser.add_argument("--subprocesses", type=int, default=5, help="inputs also run as real python -m mtc_core processes")
    args = parser.parse_args(argv)
    report = campaign(args.seed, args.scale, args.timeout, args.subprocesses)
    total = Counter()
    for counts in report["results"].values():
        total.update(counts)
    tried = sum(v for k, v in total.items() if k != "data lost")
    print(f"\nseed {args.seed}, scale {args.scale:g}, per-input timeout {args.timeout:g} s, {report['seconds']:.0f} s in all\n")
    print("| family | inputs | refused | accepted | traceback | hang | crash | data lost |")
    print("|---|---|---|---|---|---|---|---|")
    for family, counts in [*report["results"].items(), ("all", total)]:
        inputs = sum(v for k, v in counts.items() if k != "data lost")
        print(f"| {family} | {inputs} | " + " | ".join(str(counts.get(k, 0)) for k in ("refused", "accepted", *FAILURES)) + " |")
    for kind in FAILURES:
        for line in report["examples"].get(kind, []):
            print(f"{kind}: {line}")
    print(f"\n{tried} inputs: {total['refused']} clean refusals, {total['accepted']} accepted, {total['traceback']} tracebacks, "
          f"{total['hang']} hangs, {total['crash']} crashes, {total['data lost']} data lost")
    return 1 if any(total[k] for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
