"""Hostile and careless run folders (issue 12): every kind of bad input is a clean refusal, never a traceback,
never lost data, never a large allocation.

The loader is driven over generated inputs (each config value and each header field replaced by values of the wrong
type or size, random truncations and byte flips); the CLI over the refusals the campaign found for `train`.
"""

import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.runs import checkpoint as ckpt
from mtc_core.training.trainer import TrainConfig

HOSTILE = [None, True, -1, 0, 2.5, 10**12, 1e300, "x", "", [], {}, [1, 2, 3], {"name": "toy"}, [[[[[[]]]]]]]
NOT_READ_BY_LOAD = ("train", "versions")  # inside these, load_run reads nothing (the nodes themselves are replaced too)
TINY_FLAGS = ["--steps", "6", "--batch-size", "8", "--eval-every", "3", "--eval-size", "8", "--checkpoint-every", "3",
              "--latent-dim", "2", "--hidden", "8", "--device", "cpu"]


def _paths(value, prefix=()):
    """Every key path in a JSON object, inner nodes included."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))


def _set(obj, path, value):
    obj = json.loads(json.dumps(obj))
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


def _load_or_refuse(path):
    """'loaded' or 'refused'; any other exception fails the test (that is the property under test)."""
    try:
        runs.load_run(path)
    except runs.CheckpointError as e:
        assert str(e) and "\n" not in str(e)
        return "refused"
    return "loaded"


@pytest.fixture
def run(tiny_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(tiny_run, path)
    return path


def test_every_config_value_replaced_by_a_hostile_one(run):
    config = runs.read_json(run / runs.CONFIG)
    outcomes = {}
    for path in _paths(config):
        if len(path) > 1 and path[0] in NOT_READ_BY_LOAD:
            continue
        for value in HOSTILE:
            runs.write_json(run / runs.CONFIG, _set(config, path, value))
            outcomes.setdefault(path, []).append(_load_or_refuse(run))
    # what load_run needs (format version, model spec, every size) refuses every hostile value; status, command and
    # the like are not needed to rebuild a model and may hold anything
    for path in [("format_version",), ("model",), ("model", "name"), ("model", "params"), ("model", "params", "hidden"),
                 ("model", "params", "latent_dim"), ("model", "params", "image_shape")]:
        assert set(outcomes[path]) == {"refused"}, path
    # a dataset spec may be a bare name (a string) or an object with one
    loaded = [value for value, outcome in zip(HOSTILE, outcomes[("dataset",)], strict=True) if outcome == "loaded"]
    assert loaded == ["x", {"name": "toy"}]
    assert "loaded" in outcomes[("status",)]


def test_every_header_field_replaced_by_a_hostile_value(run):
    data = (run / runs.WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    tried = 0
    for name in list(header)[:4]:
        for field in ("dtype", "shape", "data_offsets"):
            for value in [*HOSTILE, "F8_E4M3", "F8_E5M2", "I64", "F16", [0], [-1, 4], [4, 0], [0, 2**64]]:
                text = json.dumps({**header, name: {**header[name], field: value}}).encode()
                (run / runs.WEIGHTS).write_bytes(struct.pack("<Q", len(text)) + text + body)
                assert _load_or_refuse(run) == "refused", (name, field, value)
                tried += 1
    assert tried == 4 * 3 * (len(HOSTILE) + 8)


def test_random_truncations_and_byte_flips_of_the_weights(run):
    good = (run / runs.WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", good[:8])
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(150):
        data = bytearray(good)
        if trial % 3 == 0:
            data = data[: rng.integers(0, len(good))]
        elif trial % 3 == 1:  # the length field and the header
            for at in rng.integers(0, 8 + n, size=3):
                data[at] = rng.integers(0, 256)
        else:  # the tensor data: a flipped float loads, unless it became NaN or inf
            for at in rng.integers(8 + n, len(good), size=3):
                data[at] = rng.integers(0, 256)
        (run / runs.WEIGHTS).write_bytes(bytes(data))
        outcomes[_load_or_refuse(run)] += 1
    assert outcomes["refused"] >= 90 and outcomes["loaded"] > 0, outcomes


def test_a_dataset_spec_over_its_bounds_is_refused_before_any_work():
    for spec in ({"name": "toy", "size": 1_000_000}, {"name": "squares", "num_positions": 10**9}, {"name": {"a": 1}},
                 {"name": "toy", "size": "32"}, {"name": "toy", "levels": float("nan")}, ["toy"]):
        with pytest.raises(ValueError, match="dataset spec"):
            TrainConfig(dataset=spec)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A run made by the CLI (beta_vae on the toy, 6 steps), read-only for the tests below."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--model", "beta_vae", "--out", str(out), *TINY_FLAGS]) == 0
    return out


def _damage(run, how):
    if how == "truncated_checkpoint":
        data = (run / ckpt.CHECKPOINT).read_bytes()
        (run / ckpt.CHECKPOINT).write_bytes(data[: len(data) // 2])
    elif how == "pickled_checkpoint":
        torch.save({"x": torch.zeros(3)}, run / ckpt.CHECKPOINT)
    elif how == "checkpoint_without_metadata":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(3)}, run / ckpt.CHECKPOINT)
    elif how in ("pickled_legacy_state", "bad_legacy_state_json", "legacy_state_is_a_list"):
        # a run of the older format (trainer_state.*), its files written in the old order, one of them damaged
        meta = json.loads(runs.read_safetensors_header(run / ckpt.CHECKPOINT)[1]["mtc_checkpoint"])
        (run / ckpt.CHECKPOINT).unlink()
        (run / ckpt.LEGACY_TENSORS).write_bytes(pickle.dumps({"exp_avg": [0.0] * 16}))
        state = {"step": meta["step"], "param_groups": meta["param_groups"], "numpy_rng": meta["numpy_rng"]}
        (run / ckpt.LEGACY_STATE).write_text({"bad_legacy_state_json": "{step: 3", "legacy_state_is_a_list": "[3]"}.get(how, json.dumps(state)))
        for i, name in enumerate((runs.WEIGHTS, ckpt.LEGACY_TENSORS, ckpt.LEGACY_STATE, runs.CONFIG)):
            os.utime(run / name, (1_700_000_000 + i, 1_700_000_000 + i))


@pytest.mark.parametrize("case, needle", [
    (["--dataset", "{bad"], "not valid JSON"),
    (["--dataset", '{"name": "toy", "size": 1000000}'], "size"),
    (["--dataset", '{"name": ["toy"]}'], "dataset spec"),
    (["--dataset", '{"size": 32}'], "dataset spec"),
    (["--hidden", "1000000000"], "hidden"),
    (["--latent-dim", "100000"], "latent_dim"),
    (["--image-shape", "1,64,64"], "does not match the dataset"),
    (["--image-shape", "1000000,64,64"], "image_shape"),
    (["--image-shape", "0,0,0"], "image_shape"),
    (["--model", "factor_vae", "--disc-width", "100000000"], "disc_width"),
])
def test_cli_train_refuses_bad_values_in_one_line(tmp_path, capsys, case, needle):
    out = tmp_path / "out"
    assert main(["train", "--out", str(out), *TINY_FLAGS, *case]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("case, needle", [
    ("file", "not a folder"), ("dev_null", "not a folder"), ("under_a_file", "cannot write"), ("proc", "cannot write"),
    ("non_empty", "not empty"), ("resume_missing", "does not exist"), ("resume_empty", "holds no run"),
    ("resume_and_overwrite", "choose one"),
])
def test_cli_train_refuses_bad_out_folders(tmp_path, capsys, case, needle):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    out, extra = {"file": (tmp_path / "file", []), "dev_null": ("/dev/null", []), "under_a_file": (tmp_path / "file" / "run", []),
                  "proc": ("/proc/mtc-nonexistent/run", []), "non_empty": (tmp_path / "folder", []),
                  "resume_missing": (tmp_path / "nowhere", ["--resume"]), "resume_empty": (tmp_path / "empty", ["--resume"]),
                  "resume_and_overwrite": (tmp_path / "folder", ["--resume", "--overwrite"])}[case]
    before = _snapshot(tmp_path)
    assert main(["train", "--out", str(out), *TINY_FLAGS, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "folder"]


@pytest.mark.parametrize("case, needle", [
    (["--model", "vae"], "cannot resume a different run: model beta_vae"),
    (["--dataset", "squares"], "dataset"),
    (["--lr", "0.5"], "lr"),
    (["--seed", "4"], "seed"),
    (["--beta", "1.0"], "model beta_vae"),
    (["--steps", "2"], "beyond the 2 steps"),
    ("truncated_checkpoint", "truncated"),
    ("pickled_checkpoint", "pickle"),
    ("checkpoint_without_metadata", "not an mtc_core checkpoint"),
    ("pickled_legacy_state", "pickle"),
    ("bad_legacy_state_json", "not valid JSON"),
    ("legacy_state_is_a_list", "JSON object"),
])
def test_cli_resume_refuses_another_run_or_a_damaged_one(cli_run, tmp_path, capsys, case, needle):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    flags = case if isinstance(case, list) else []
    if not flags:
        _damage(run, case)
    before = _snapshot(run)
    default = dict(zip(TINY_FLAGS[::2], TINY_FLAGS[1::2], strict=True))
    default.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    argv = ["train", "--model", default.pop("--model", "beta_vae"), "--out", str(run), "--resume",
            *[item for pair in default.items() for item in pair]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert _snapshot(run) == before


def test_cli_overwrite_replaces_only_the_run(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    (run / "notes.txt").write_text("mine")
    assert main(["train", "--model", "vae", "--out", str(run), *TINY_FLAGS, "--overwrite"]) == 0
    assert runs.read_json(run / runs.CONFIG)["model"]["name"] == "vae" and (run / "notes.txt").read_text() == "mine"
    assert main(["train", "--model", "vae", "--out", str(run), *TINY_FLAGS[:1], "12", *TINY_FLAGS[2:], "--resume"]) == 0
    assert runs.read_json(run / runs.CONFIG)["step"] == 12


@pytest.mark.parametrize("field, value, reason", [
    ("status", 5, "status 5 is not one of running, complete, cancelled, diverged, failed"),
    ("status", {"a": 1}, "status {'a': 1} is not one of running, complete, cancelled, diverged, failed"),
    ("status", "finished", "status 'finished' is not one of running, complete, cancelled, diverged, failed"),
    ("step", "20", "step '20' is not an integer >= 0"),
    ("step", True, "step True is not an integer >= 0"),
])
def test_a_run_state_of_the_wrong_type_is_a_broken_run_with_its_reason(tiny_run, tmp_path, monkeypatch, field, value, reason):
    # a run listing table built a DataFrame of mixed types: a pyarrow traceback in the server log
    import pandas as pd
    import pyarrow as pa

    from services import run_listing, run_tables

    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path))
    for name in ("good", "odd"):
        shutil.copytree(tiny_run, tmp_path / name)
    config = runs.read_json(tmp_path / "odd" / runs.CONFIG)
    runs.write_json(tmp_path / "odd" / runs.CONFIG, {**config, field: value})
    [broken] = run_listing.broken_runs()
    assert broken.path == str((tmp_path / "odd").resolve()) and broken.problem == f"{tmp_path.resolve() / 'odd' / runs.CONFIG}: {reason}"
    usable = [e for e in run_listing.user_runs() if e.problem is None]
    assert [Path(e.path).name for e in usable] == ["good"]
    table = pd.DataFrame(run_tables.summaries(run_listing.user_runs()))  # the broken run's row says why, in text
    pa.Table.from_pandas(table)  # what st.dataframe does: one type per column
    assert table.set_index("run").loc["odd", "status"].startswith("unreadable: ")
    runs.load_run(tmp_path / "odd")  # the model itself still loads: only what a listing shows is refused
