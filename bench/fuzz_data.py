"""Hostile files, sweep specs and arrays for bench/fuzz.py: the `DataCases` half of its input generator.

`npz_file` corrupts a valid dSprites-format or codes .npz (flipped bytes, truncation, forged headers, zip bombs,
garbage), `spec_text` writes sweep specs (random YAML with tags, aliases, dates, deep nesting, mutated valid specs),
and `estimator_call` builds a call to an estimator or metric on hostile arrays (NaN, inf, 1e308, subnormals, complex,
wrong shapes, constant columns). Every choice is drawn from the generator's seeded `rng`, in a fixed order.
"""

from __future__ import annotations

import io
import os
import random
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtc_core import estimators, metrics  # noqa: E402


class DataCases:
    """Generators of bad files, specs and arrays; mixed into fuzz_cases.Generator, which supplies `rng` and `fresh()`."""

    rng: random.Random

    def fresh(self, suffix: str = "") -> Path:  # a new path in the scratch folder (Generator.fresh)
        raise NotImplementedError

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


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()

