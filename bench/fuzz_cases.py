"""The hostile inputs bench/fuzz.py runs: a workspace of valid files to corrupt, and the seeded `Generator`.

`Workspace` trains one tiny run and writes a zoo, a dataset, a codes file and a sweep spec, with the fingerprints
that tell whether a command lost data. `Generator` draws every input from one seeded `random.Random`: command lines
(every command, flags replaced by bad numbers, paths, extensions and cluster addresses) and corrupted run folders
here; dataset and codes files, sweep specs and estimator arrays in fuzz_data.DataCases.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import random
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz_data import DataCases  # noqa: E402

from mtc_core import runs as mtc_io  # noqa: E402

TINY_TRAIN = ["--steps", "3", "--batch-size", "8", "--eval-every", "1", "--eval-size", "16", "--device", "cpu",
              "--latent-dim", "3", "--hidden", "8"]

# ---------------------------------------------------------------- fixtures


class Workspace:
    """A temporary folder with one trained run, a zoo, valid files of every kind, and their fingerprints."""

    def __init__(self, root: Path):
        from mtc_core.runs import zoo
        from mtc_core.training.trainer import TrainConfig, train

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
        self.other_sweep = root / "other_sweep"  # a sweep folder of another spec: `sweep --out` there is refused
        self.other_sweep.mkdir()
        mtc_io.write_json(self.other_sweep / "sweep.json", {"spec": {"dataset": {"name": "squares"}, "models": [{"name": "vae"}]},
                                                            "command": "bench/fuzz.py", "runs": []})
        self.imports = root / "imports"  # where zipped runs are imported
        self.protected = [self.run, self.zoo, self.dsprites, self.codes, self.spec, self.file, self.other_sweep]
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


class Generator(DataCases):
    """Seeded hostile inputs of every kind; `fresh()` names a new file or folder in the workspace's scratch folder."""

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
            if r.random() < 0.15:  # a folder holding another spec's sweep.json
                argv[argv.index("--out") + 1] = str(ws.other_sweep)
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
                "--lr": BAD_FLOATS, "--batch-size": ["0", "-1", "1", "abc", str(10**9)],
                "--latent-dim": BAD_NUMBERS + ["16", "64", "512"], "--hidden": ["0", "-1", str(10**9), "abc"],
                "--image-shape": ["1,64,64", "0,0,0", "a", "1"], "--beta": BAD_FLOATS,
                # an evaluation batch no larger than the latent size (3 here): its Gaussian TC is infinite
                "--eval-size": ["3", "2", "4", "1", "0"], "--eval-every": ["1", "0"],
                "--steps": ["0", "-1", "abc", "1e5", "2"]})
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
                         "history", "metrics", "missing_file", "run_state", "history_size"])
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
        elif what == "run_state":  # what a listing shows: a status or step of the wrong type or value
            config = json.loads(config_path.read_text())
            config[r.choice(["status", "step"])] = r.choice([5, 2.5, None, True, "finished", "", ["complete"], {"a": 1}, -3, "12"])
            config_path.write_text(json.dumps(config))
        elif what == "history_size":  # over runs.MAX_HISTORY_BYTES (sparse: no disk used)
            with open(copy / mtc_io.HISTORY, "wb") as f:
                f.truncate(mtc_io.MAX_HISTORY_BYTES + r.choice([1, 10**6]))
        elif what == "metrics":
            (copy / mtc_io.METRICS).write_text(r.choice(["[]", "null", "{", '{"evaluation": [1]}']))
        else:
            (copy / r.choice([mtc_io.CONFIG, mtc_io.WEIGHTS])).unlink()
        return copy, what

    # zipped runs -----------------------------------------------

    def run_zip(self) -> tuple[bytes, str]:
        """A zip of the victim run made hostile: members twice (the last one broken), an oversized history that
        compresses small, a status of the wrong type, or a valid archive with one member mutated."""
        import warnings
        import zipfile

        r, run = self.rng, self.ws.run
        members = {name: (run / name).read_bytes() for name in (mtc_io.CONFIG, mtc_io.WEIGHTS, mtc_io.HISTORY, mtc_io.METRICS)
                   if (run / name).is_file()}
        prefix = r.choice(["", "run/"])
        what = r.choice(["duplicate", "history_size", "status", "member", "valid"])
        entries = [(prefix + name, data) for name, data in members.items()]
        if what == "duplicate":
            name = r.choice(list(members))
            spelled = r.choice([prefix + name, f"./{prefix}{name}", prefix.replace("/", "//") + name if prefix else name])
            entries.append((spelled, r.choice([b"", b"{", b"\x80\x04", members[name][: len(members[name]) // 2]])))
        elif what == "history_size":
            record = members[mtc_io.HISTORY].splitlines()[-1] + b"\n"
            size = r.choice([mtc_io.MAX_IMPORTED_HISTORY_BYTES + 1, 20_000_000, 60_000_000])
            entries = [e for e in entries if not e[0].endswith(mtc_io.HISTORY)] + [(prefix + mtc_io.HISTORY, record * (size // len(record) + 1))]
        elif what == "status":
            config = json.loads(members[mtc_io.CONFIG])
            config[r.choice(["status", "step"])] = r.choice([5, None, "finished", ["complete"], {"a": 1}, -1, 2.5])
            entries = [(prefix + mtc_io.CONFIG, json.dumps(config).encode()) if e[0].endswith(mtc_io.CONFIG) else e for e in entries]
        elif what == "member":
            at = r.randrange(len(entries))
            data = bytearray(entries[at][1])
            for _ in range(r.randint(1, 10)):
                data[r.randrange(len(data))] = r.randint(0, 255)
            entries[at] = (entries[at][0], bytes(data))
        buffer = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            warnings.simplefilter("ignore")  # zipfile warns of a duplicate name
            for name, data in entries:
                archive.writestr(name, data)
        return buffer.getvalue(), what
