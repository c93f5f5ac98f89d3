import json
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtc_core import io
from mtc_core.models import build_model

PARAMS = {"architecture": "mlp", "image_shape": [1, 16, 16], "latent_dim": 3, "hidden": 16}


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    model = build_model("beta_vae", {**PARAMS, "beta": 2.0})
    path = io.save_run(model, {"model": {"name": "beta_vae"}, "train": {"steps": 0}}, tmp_path / "run",
                       history=[{"step": 1, "loss": 2.0}], metrics={"x": 1.0})
    return model, path


def test_save_load_gives_identical_outputs(run):
    model, path = run
    loaded, config = io.load_run(path)
    assert config["model"]["name"] == "beta_vae" and config["model"]["params"]["beta"] == 2.0
    assert config["format_version"] == io.FORMAT_VERSION and "torch" in config["versions"]
    x = torch.rand(5, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(model.decode(torch.ones(2, 3)), loaded.decode(torch.ones(2, 3)))
    assert io.read_history(path) == [{"step": 1, "loss": 2.0}]


def test_half_precision_weights_load(run, tmp_path):
    model, path = run
    half = io.save_run(model, {"model": {"name": "beta_vae"}}, tmp_path / "half", weights_dtype=torch.float16)
    loaded, _ = io.load_run(half)
    for name, t in loaded.state_dict().items():
        assert t.dtype == torch.float32
        assert torch.allclose(t, model.state_dict()[name], atol=1e-2)


def _edit_config(path, **changes):
    cfg = json.loads((path / io.CONFIG).read_text())
    cfg.update(changes)
    (path / io.CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("missing", [io.CONFIG, io.WEIGHTS])
def test_missing_file_refused(run, missing):
    _, path = run
    (path / missing).unlink()
    with pytest.raises(io.CheckpointError, match="missing file"):
        io.load_run(path)


def test_wrong_format_version_refused(run):
    _, path = run
    _edit_config(path, format_version=99)
    with pytest.raises(io.CheckpointError, match="format_version 99"):
        io.load_run(path)


def test_unknown_model_key_refused(run):
    _, path = run
    _edit_config(path, model={"name": "evil_vae", "params": {}})
    with pytest.raises(io.CheckpointError, match="unknown model key 'evil_vae'"):
        io.load_run(path)


def test_bad_model_params_refused(run):
    _, path = run
    _edit_config(path, model={"name": "beta_vae", "params": {**PARAMS, "beta": -3}})
    with pytest.raises(io.CheckpointError, match="beta"):
        io.load_run(path)


def test_shape_mismatch_refused(run):
    _, path = run
    tensors = load_file(path / io.WEIGHTS)
    name = next(iter(tensors))
    tensors[name] = torch.zeros(7, 7)
    save_file(tensors, path / io.WEIGHTS)
    with pytest.raises(io.CheckpointError, match=f"tensor {name} has shape"):
        io.load_run(path)


def test_dtype_mismatch_refused(run):
    _, path = run
    tensors = load_file(path / io.WEIGHTS)
    name = next(iter(tensors))
    tensors[name] = tensors[name].to(torch.int32)
    save_file(tensors, path / io.WEIGHTS)
    with pytest.raises(io.CheckpointError, match="dtype torch.int32"):
        io.load_run(path)


def test_foreign_tensor_names_refused(run):
    _, path = run
    save_file({"something.else": torch.zeros(3)}, path / io.WEIGHTS)
    with pytest.raises(io.CheckpointError, match="tensor names do not match"):
        io.load_run(path)


@pytest.mark.parametrize("keep", [4, 100, -10])
def test_truncated_file_refused(run, keep):
    _, path = run
    data = (path / io.WEIGHTS).read_bytes()
    (path / io.WEIGHTS).write_bytes(data[:keep])
    with pytest.raises(io.CheckpointError, match="truncated|not a safetensors"):
        io.load_run(path)


def test_garbage_header_refused(run):
    _, path = run
    (path / io.WEIGHTS).write_bytes(struct.pack("<Q", 5) + b"{nope" + b"\0" * 50)
    with pytest.raises(io.CheckpointError, match="unreadable header"):
        io.load_run(path)


class _Marker:
    """Unpickling this creates a marker file: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_is_never_executed(run, tmp_path, writer):
    model, path = run
    marker = tmp_path / "PWNED"
    payload = {"state": model.state_dict(), "evil": _Marker(str(marker))}
    if writer == "pickle":
        (path / io.WEIGHTS).write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path / io.WEIGHTS)
    with pytest.raises(io.CheckpointError, match="pickle"):
        io.load_run(path)
    assert not marker.exists()
    # the same pickle disguised as config.json is only ever parsed as JSON
    shutil.copy(path / io.WEIGHTS, path / io.CONFIG)
    with pytest.raises(io.CheckpointError, match="not valid JSON"):
        io.load_run(path)
    assert not marker.exists()


def test_save_is_atomic_on_failure(run, monkeypatch):
    model, path = run
    before = (path / io.CONFIG).read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", boom)
    with pytest.raises(OSError):
        io.write_json(path / io.CONFIG, {"x": 1})
    assert (path / io.CONFIG).read_bytes() == before
    assert [p.name for p in path.iterdir() if p.name.endswith(".tmp")] == []


def test_new_run_dir_is_unique(tmp_path):
    dirs = {io.new_run_dir(tmp_path, "m") for _ in range(5)}
    assert len(dirs) == 5 and all(d.is_dir() for d in dirs)
