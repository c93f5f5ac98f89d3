import json
import os
import pickle
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtc_core import runs
from mtc_core.models import VAE, build_model

PARAMS = {"architecture": "mlp", "image_shape": [1, 16, 16], "latent_dim": 3, "hidden": 16}


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    model = build_model("beta_vae", {**PARAMS, "beta": 2.0})
    path = runs.save_run(model, {"model": {"name": "beta_vae"}, "train": {"steps": 0}}, tmp_path / "run",
                       history=[{"step": 1, "loss": 2.0}], metrics={"x": 1.0})
    return model, path


def test_save_load_gives_identical_outputs(run):
    model, path = run
    loaded, config = runs.load_run(path)
    assert config["model"]["name"] == "beta_vae" and config["model"]["params"]["beta"] == 2.0
    assert config["format_version"] == runs.FORMAT_VERSION and "torch" in config["versions"]
    x = torch.rand(5, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(model.decode(torch.ones(2, 3)), loaded.decode(torch.ones(2, 3)))
    assert runs.read_history(path) == [{"step": 1, "loss": 2.0}]


def test_half_precision_weights_load(run, tmp_path):
    model, path = run
    half = runs.save_run(model, {"model": {"name": "beta_vae"}}, tmp_path / "half", weights_dtype=torch.float16)
    loaded, _ = runs.load_run(half)
    for name, t in loaded.state_dict().items():
        assert t.dtype == torch.float32
        assert torch.allclose(t, model.state_dict()[name], atol=1e-2)


def _edit_config(path, **changes):
    cfg = json.loads((path / runs.CONFIG).read_text())
    cfg.update(changes)
    (path / runs.CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("missing", [runs.CONFIG, runs.WEIGHTS])
def test_missing_file_refused(run, missing):
    _, path = run
    (path / missing).unlink()
    with pytest.raises(runs.CheckpointError, match="missing file"):
        runs.load_run(path)


def test_wrong_format_version_refused(run):
    _, path = run
    _edit_config(path, format_version=99)
    with pytest.raises(runs.CheckpointError, match="format_version 99"):
        runs.load_run(path)


def test_unknown_model_key_refused(run):
    _, path = run
    _edit_config(path, model={"name": "evil_vae", "params": {}})
    with pytest.raises(runs.CheckpointError, match="unknown model key 'evil_vae'"):
        runs.load_run(path)


def test_bad_model_params_refused(run):
    _, path = run
    _edit_config(path, model={"name": "beta_vae", "params": {**PARAMS, "beta": -3}})
    with pytest.raises(runs.CheckpointError, match="beta"):
        runs.load_run(path)


def test_shape_mismatch_refused(run):
    _, path = run
    tensors = load_file(path / runs.WEIGHTS)
    name = next(iter(tensors))
    tensors[name] = torch.zeros(7, 7)
    save_file(tensors, path / runs.WEIGHTS)
    with pytest.raises(runs.CheckpointError, match=f"tensor {name} has shape"):
        runs.load_run(path)


def test_dtype_mismatch_refused(run):
    _, path = run
    tensors = load_file(path / runs.WEIGHTS)
    name = next(iter(tensors))
    tensors[name] = tensors[name].to(torch.int32)
    save_file(tensors, path / runs.WEIGHTS)
    with pytest.raises(runs.CheckpointError, match="dtype torch.int32"):
        runs.load_run(path)


def test_foreign_tensor_names_refused(run):
    _, path = run
    save_file({"something.else": torch.zeros(3)}, path / runs.WEIGHTS)
    with pytest.raises(runs.CheckpointError, match="tensor names do not match"):
        runs.load_run(path)


@pytest.mark.parametrize("keep", [4, 100, -10])
def test_truncated_file_refused(run, keep):
    _, path = run
    data = (path / runs.WEIGHTS).read_bytes()
    (path / runs.WEIGHTS).write_bytes(data[:keep])
    with pytest.raises(runs.CheckpointError, match="truncated|not a safetensors"):
        runs.load_run(path)


def test_garbage_header_refused(run):
    _, path = run
    (path / runs.WEIGHTS).write_bytes(struct.pack("<Q", 5) + b"{nope" + b"\0" * 50)
    with pytest.raises(runs.CheckpointError, match="unreadable header"):
        runs.load_run(path)


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
        (path / runs.WEIGHTS).write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path / runs.WEIGHTS)
    with pytest.raises(runs.CheckpointError, match="pickle"):
        runs.load_run(path)
    assert not marker.exists()
    # the same pickle disguised as config.json is only ever parsed as JSON
    shutil.copy(path / runs.WEIGHTS, path / runs.CONFIG)
    with pytest.raises(runs.CheckpointError, match="not valid JSON"):
        runs.load_run(path)
    assert not marker.exists()


def test_save_is_atomic_on_failure(run, monkeypatch):
    model, path = run
    before = (path / runs.CONFIG).read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        runs.write_json(path / runs.CONFIG, {"x": 1})
    assert (path / runs.CONFIG).read_bytes() == before
    assert [p.name for p in path.iterdir() if p.name.endswith(".tmp")] == []


def test_new_run_dir_is_unique(tmp_path):
    dirs = {runs.new_run_dir(tmp_path, "m") for _ in range(5)}
    assert len(dirs) == 5 and all(d.is_dir() for d in dirs)
    (tmp_path / "taken").mkdir()  # a folder of the same name is never reused: the next free suffix is made
    assert [runs.unique_dir(tmp_path, "taken").name for _ in range(2)] == ["taken-2", "taken-3"]


def _raw_safetensors(path, header, data=b""):
    """A safetensors file written by hand: 8-byte little-endian header length, JSON header, data."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _weights_header(path):
    data = (path / runs.WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


@pytest.mark.parametrize("mutate, match", [
    (lambda h, n: h[n].pop("data_offsets"), "data_offsets"),
    (lambda h, n: h[n].update(data_offsets="0-10"), "data_offsets"),
    (lambda h, n: h[n].update(data_offsets=[-4, 0]), "data_offsets"),
    (lambda h, n: h[n].update(data_offsets=[0, 2**70]), "spans|data_offsets"),
    (lambda h, n: h[n].update(dtype="F8_E4M3"), "float8"),
    (lambda h, n: h[n].update(dtype="F8_E5M2"), "float8"),
    (lambda h, n: h[n].update(dtype="C64"), "dtype 'C64'"),
    (lambda h, n: h[n].update(dtype=None), "dtype None"),
    (lambda h, n: h[n].update(shape="16x256"), "shape"),
    (lambda h, n: h[n].update(shape=[-1, 16]), "shape"),
    (lambda h, n: h[n].update(shape=[10**9, 10**9]), "spans"),
    (lambda h, n: h.update({n: [1, 2]}), "not an object"),
    (lambda h, n: h.update({"__metadata__": {"a": 1}}), "__metadata__"),
    (lambda h, n: h.update({"extra": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}), "gaps or overlaps"),
])
def test_every_header_problem_is_a_checkpoint_error(run, mutate, match):
    _, path = run
    header, data = _weights_header(path)
    mutate(header, next(k for k in header if k != "__metadata__"))
    _raw_safetensors(path / runs.WEIGHTS, header, data)
    with pytest.raises(runs.CheckpointError, match=match):
        runs.load_run(path)


def test_a_deeply_nested_or_huge_header_is_a_checkpoint_error(run):
    _, path = run
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    (path / runs.WEIGHTS).write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(runs.CheckpointError, match="nested too deeply"):
        runs.load_run(path)
    huge = b" " * (runs.MAX_HEADER_BYTES + 8)
    (path / runs.WEIGHTS).write_bytes(struct.pack("<Q", len(huge)) + huge)
    with pytest.raises(runs.CheckpointError, match="over the limit"):
        runs.load_run(path)


def test_a_header_length_starting_with_byte_0x80_is_not_taken_for_a_pickle(run):
    model, path = run
    header, data = _weights_header(path)
    text = json.dumps(header).encode()
    text += b" " * (0x0480 - len(text))  # length 0x480: the file starts with 0x80 0x04, like a protocol-4 pickle
    assert len(text) == 0x0480
    (path / runs.WEIGHTS).write_bytes(struct.pack("<Q", len(text)) + text + data)
    assert (path / runs.WEIGHTS).read_bytes()[:2] == b"\x80\x04"
    loaded, _ = runs.load_run(path)
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t)


@pytest.mark.parametrize("edit, match", [
    ({"model": {"name": "beta_vae", "params": [1, 2]}}, "params must be an object"),
    ({"model": "beta_vae"}, "must be an object"),
    ({"model": {"name": ["beta_vae"]}}, "unknown model key"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "hidden": 10**9}}}, "hidden"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "hidden": 1e3}}}, "hidden"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "latent_dim": True}}}, "latent_dim"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "latent_dim": "3"}}}, "latent_dim"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "image_shape": [1_000_000, 64, 64]}}}, "image_shape"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "image_shape": [1, 100_000, 100_000]}}}, "image_shape"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "image_shape": None}}}, "image_shape"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "image_shape": [1, 16]}}}, "image_shape"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "image_shape": [1, 256, 256], "hidden": 4096}}}, "parameters"),
    ({"model": {"name": "beta_vae", "params": {**PARAMS, "bogus": 1}}}, "bogus"),
    ({"model": {"name": "factor_vae", "params": {**PARAMS, "disc_width": 10**7}}}, "disc_width"),
    ({"model": {"name": "beta_tcvae", "params": {**PARAMS, "dataset_size": 1e300}}}, "dataset_size"),
    ({"dataset": {"name": "toy", "size": 1_000_000}}, "size"),
    ({"dataset": {"name": "toy", "levels": 10**9}}, "levels"),
    ({"dataset": {"name": {"nested": 1}}}, "dataset spec"),
    ({"dataset": {"name": "toy", "size": [32]}}, "size"),
    ({"dataset": {"name": "dsprites", "path": "x" * 10_000}}, "over the limit"),
    ({"dataset": ["toy"]}, "dataset spec"),
    ({"auxiliary_weights": "no"}, "auxiliary_weights"),
    ({"format_version": None}, "format_version"),
])
def test_every_config_problem_is_a_checkpoint_error(run, edit, match):
    _, path = run
    _edit_config(path, **edit)
    with pytest.raises(runs.CheckpointError, match=match):
        runs.load_run(path)


@pytest.mark.parametrize("text, match", [("[1, 2]", "JSON object"), ('"x"', "JSON object"), ("null", "JSON object"),
                                         ("[" * 100_000, "nested too deeply"), ('{"format_version": NaN}', "NaN"),
                                         (b"\xff\xfe{}", "not valid JSON")])
def test_a_config_that_is_not_an_object_is_a_checkpoint_error(run, text, match):
    _, path = run
    (path / runs.CONFIG).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(runs.CheckpointError, match=match):
        runs.load_run(path)


def test_the_weights_header_is_checked_before_the_model_is_built(run, monkeypatch):
    # hidden 2048 on 16x16 images is within every bound (4.7 M parameters), but the weights hold hidden 16:
    # the refusal must come from the header, before a model of that size is allocated.
    _, path = run
    _edit_config(path, model={"name": "beta_vae", "params": {**PARAMS, "hidden": 2048}})
    built = []
    original = VAE.__init__

    def spy(self, config):
        if torch.get_default_device().type != "meta":
            built.append(config)
        original(self, config)

    monkeypatch.setattr(VAE, "__init__", spy)
    with pytest.raises(runs.CheckpointError, match=r"shape \(16, 256\), beta_vae needs \(2048, 256\)"):
        runs.load_run(path)
    assert built == []


def test_orphaned_temporary_files_are_removed_on_load(run):
    _, path = run
    stale, fresh = path / ".config.json.abc123.tmp", path / ".model.safetensors.def456.tmp"
    stale_dir = path / ".checkpoint.safetensors.x.tmp"
    for p in (stale, fresh):
        p.write_bytes(b"half a file")
    stale_dir.mkdir()
    old = time.time() - runs.STALE_TMP_SECONDS - 60
    for p in (stale, stale_dir):
        os.utime(p, (old, old))
    runs.load_run(path)
    assert not stale.exists() and not stale_dir.exists()
    assert fresh.exists()  # young: it may belong to a writer at work right now


@pytest.mark.parametrize("content, match", [(b'{"step": 1}\n\xff\xfe\n', "UTF-8"), (b"[1, 2]\n", "JSON object"),
                                            (b'{"step": 1}\n{"step": \n', "line 2"), (b"[" * 100_000, "nested too deeply")])
def test_a_broken_history_is_a_checkpoint_error(run, content, match):
    _, path = run
    (path / runs.HISTORY).write_bytes(content)
    with pytest.raises(runs.CheckpointError, match=match):
        runs.read_history(path)


def test_safetensors_leftovers_are_removed_when_stale_and_young_ones_kept(run, tmp_path, tiny_run):
    # safetensors' own save_file wrote through Rust's tempfile (`.tmp` + 6 letters), as large as the file; a writer
    # killed then left it (22.7 MB seen after a sweep resume)
    _, path = run
    stale, young = path / ".tmpAb3xZ9", path / ".tmpQq81mk"
    for p in (stale, young):
        p.write_bytes(b"\0" * 1000)
    old = time.time() - runs.STALE_TMP_SECONDS - 60
    os.utime(stale, (old, old))
    (path / ".tmpnotours.txt").write_text("not a temporary name")
    runs.load_run(path)
    assert not stale.exists() and young.exists() and (path / ".tmpnotours.txt").exists()
    # a resume owns the folder (its lock is held): whatever temporary file it finds is a dead writer's
    from mtc_core.training.trainer import TrainConfig, train

    resumable = tmp_path / "resumable"
    shutil.copytree(tiny_run, resumable)
    (resumable / ".tmpZZ12ab").write_bytes(b"\0" * 1000)
    config = TrainConfig.from_dict(runs.read_json(resumable / runs.CONFIG)["train"])
    train(config, resumable, resume=True)
    assert not (resumable / ".tmpZZ12ab").exists()


def test_weights_are_written_through_our_own_temporary_file_only(run, monkeypatch):
    model, path = run
    seen = []
    real = os.replace

    def replace(src, dst):
        seen.append(sorted(p.name for p in path.iterdir() if p.name.startswith(".")))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    runs.save_weights(model, path / runs.WEIGHTS)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(".model.safetensors.") and seen[0][0].endswith(".tmp")
    monkeypatch.undo()
    loaded, _ = runs.load_run(path)
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name


def test_a_full_disk_names_the_file_and_leaves_the_old_one(run, disk_full):
    model, path = run
    before = {name: (path / name).read_bytes() for name in (runs.CONFIG, runs.WEIGHTS, runs.HISTORY)}
    disk_full()
    for write, name in ((lambda: runs.write_json(path / runs.CONFIG, {"x": 1}), runs.CONFIG),
                        (lambda: runs.save_weights(model, path / runs.WEIGHTS), runs.WEIGHTS),
                        (lambda: runs.write_history(path, [{"step": 2}]), runs.HISTORY)):
        with pytest.raises(OSError) as error:
            write()
        assert runs.is_disk_full(error.value) and runs.error_text(error.value) == f"{path / name}: No space left on device"
    assert {name: (path / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in path.iterdir()) == sorted([runs.CONFIG, runs.WEIGHTS, runs.HISTORY, runs.METRICS])


def test_history_is_read_line_by_line_within_its_bound(run, monkeypatch):
    _, path = run
    records = [{"step": i, "recon": 1.5 * i} for i in range(1, 2001)]
    runs.write_history(path, records)
    assert runs.read_history(path) == records and next(runs.iter_history(path)) == records[0]
    assert runs.last_history_record(path) == records[-1]
    assert runs.last_history_record(path, chunk=7) == records[-1]  # a last line longer than a chunk
    (path / runs.HISTORY).write_bytes(b'{"step": 1}\n\n{"step": 2}\n\n  \n')
    assert runs.last_history_record(path) == {"step": 2}
    (path / runs.HISTORY).write_bytes(b"")
    assert runs.last_history_record(path) is None and runs.read_history(path) == []
    (path / runs.HISTORY).write_bytes(b'{"step": 1}\n[2]\n')
    with pytest.raises(runs.CheckpointError, match="last line: expected a JSON object"):
        runs.last_history_record(path)
    monkeypatch.setattr(runs.files, "MAX_HISTORY_BYTES", 100)
    runs.write_history(path, records[:10])
    for read in (runs.read_history, runs.last_history_record):
        with pytest.raises(runs.CheckpointError, match=r"history.jsonl: \d+ bytes, over the limit of 100 for a run's history"):
            read(path)
