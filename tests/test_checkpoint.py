"""A checkpoint is one atomic unit: a kill at any write leaves a run that resumes exactly or refuses (docs/design.md, "Checkpoints")."""

import json
import os
import shutil
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtc_core import runs
from mtc_core.runs import checkpoint as ckpt
from mtc_core.training.trainer import Callback, TrainConfig, train

TINY = {"latent_dim": 2, "hidden": 8}


def _config(model="beta_vae", **overrides):
    """20 steps of a tiny model, a checkpoint every 5 (a fraction of a second)."""
    params = {"model": model, "model_params": {**TINY, **({"disc_width": 16, "disc_depth": 2} if model == "factor_vae" else {})},
              "dataset": {"name": "toy"}, "steps": 20, "batch_size": 8, "lr": 1e-3, "eval_every": 5, "eval_size": 8,
              "checkpoint_every": 5, "device": "cpu"}
    return TrainConfig(**{**params, **overrides})


class Killed(BaseException):
    """What a kill looks like to the code under test: nothing after it runs (BaseException: no `except Exception`)."""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    finished = {}
    for model in ("beta_vae", "factor_vae"):
        result = train(_config(model), tmp_path_factory.mktemp("full") / model)
        finished[model] = (result.model.state_dict(), runs.read_history(result.run_dir))
    return finished


def _kill_at_write(monkeypatch, n: int, copy_to):
    """Let the run's n-th rename-into-place (the moment a file is published) find the disk as it is, copy the run
    folder as a kill at that instant would leave it (the temporary file written, not yet renamed), and die."""
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == n:
            shutil.copytree(os.path.dirname(dst), copy_to)
            raise Killed
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def _assert_same_run(result, expected):
    weights, history = expected
    assert result.status == "complete" and result.step == 20
    for name, t in weights.items():
        assert torch.equal(result.model.state_dict()[name], t), name
    assert runs.read_history(result.run_dir) == history
    loaded, config = runs.load_run(result.run_dir)
    assert config["status"] == "complete" and config["step"] == 20
    for name, t in weights.items():
        assert torch.equal(loaded.state_dict()[name], t), name


def test_every_write_of_a_run_is_counted(tmp_path, monkeypatch):
    # 5 checkpoints (steps 0, 5, 10, 15, 20) x (history, checkpoint, weights, config) + metrics: the kill points below
    calls = _kill_at_write(monkeypatch, 0, tmp_path / "never")
    train(_config(), tmp_path / "run")
    assert calls["n"] == 21


@pytest.mark.parametrize("model", ["beta_vae", "factor_vae"])
@pytest.mark.parametrize("write", [2, 3, 5, 10, 11, 12, 13, 18, 19, 21])
def test_kill_at_any_write_then_resume_is_exact(tmp_path, monkeypatch, uninterrupted, model, write):
    # writes 9-12 are the checkpoint of step 10: history, checkpoint file, weights, config; 2 and 3: the first
    # checkpoint's; 17-21: the last one's and metrics.json
    killed = tmp_path / "killed"
    _kill_at_write(monkeypatch, write, killed)
    with pytest.raises(Killed):
        train(_config(model), tmp_path / "run")
    monkeypatch.undo()
    assert [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]  # the kill left a temporary file behind
    result = train(_config(model), killed, resume=True)
    _assert_same_run(result, uninterrupted[model])
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]  # and the resume removed it


def test_kill_before_the_first_checkpoint_starts_afresh(tmp_path, monkeypatch, uninterrupted):
    killed = tmp_path / "killed"
    _kill_at_write(monkeypatch, 1, killed)  # history.jsonl of step 0 written, nothing else
    with pytest.raises(Killed):
        train(_config(), tmp_path / "run")
    monkeypatch.undo()
    _assert_same_run(train(_config(), killed, resume=True), uninterrupted["beta_vae"])


def test_resume_of_a_cancelled_run_is_exact_and_keeps_nothing_of_the_old_format(tmp_path, uninterrupted):
    cancel = threading.Event()

    class CancelAt7(Callback):
        def on_step(self, *, step, logs):
            if step == 7:
                cancel.set()

    assert train(_config(), tmp_path / "run", callbacks=[CancelAt7()], cancel=cancel).step == 7
    assert sorted(ckpt.run_files(tmp_path / "run")) == sorted([runs.WEIGHTS, runs.CONFIG, runs.METRICS, runs.HISTORY, ckpt.CHECKPOINT])
    _assert_same_run(train(_config(), tmp_path / "run", resume=True), uninterrupted["beta_vae"])


# The format before checkpoint.safetensors: the old trainer wrote model.safetensors, trainer_state.safetensors,
# trainer_state.json, history.jsonl and config.json one after the other. These helpers write that layout from a new
# checkpoint, in the old order, with the old names.
def _write_legacy(run_dir, source, *, weights_from=None):
    tensors = load_file(source / ckpt.CHECKPOINT)
    meta = json.loads(runs.read_safetensors_header(source / ckpt.CHECKPOINT)[1]["mtc_checkpoint"])
    weights = load_file((weights_from or source) / ckpt.CHECKPOINT)
    run_dir.mkdir()
    save_file({k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}, run_dir / runs.WEIGHTS)
    save_file({(k[len("optim."):] if k.startswith("optim.") else k): v for k, v in tensors.items() if not k.startswith("model.")},
              run_dir / ckpt.LEGACY_TENSORS)
    runs.write_json(run_dir / ckpt.LEGACY_STATE, {"step": meta["step"], "param_groups": meta["param_groups"], "numpy_rng": meta["numpy_rng"]})
    shutil.copy(source / runs.HISTORY, run_dir / runs.HISTORY)
    config = runs.read_json(source / runs.CONFIG)
    runs.write_json(run_dir / runs.CONFIG, {**config, "step": meta["step"]})
    _written_in_order(run_dir, [runs.WEIGHTS, ckpt.LEGACY_TENSORS, ckpt.LEGACY_STATE, runs.HISTORY, runs.CONFIG])
    return run_dir


def _written_in_order(run_dir, names, start=1_700_000_000):
    """Modification times one second apart, in the order given (what the clock shows when writes are that far apart)."""
    for i, name in enumerate(names):
        os.utime(run_dir / name, (start + i, start + i))


def _cancelled_at(tmp_path, name, step, model="beta_vae"):
    cancel = threading.Event()

    class Stop(Callback):
        def on_step(self, *, step: int, logs):
            if step == stop:
                cancel.set()

    stop = step
    train(_config(model), tmp_path / name, callbacks=[Stop()], cancel=cancel)
    return tmp_path / name


@pytest.mark.parametrize("model", ["beta_vae", "factor_vae"])
def test_a_run_of_the_old_format_resumes_exactly(tmp_path, uninterrupted, model):
    legacy = _write_legacy(tmp_path / "legacy", _cancelled_at(tmp_path, "at5", 5, model))
    result = train(_config(model), legacy, resume=True)
    _assert_same_run(result, uninterrupted[model])
    assert not (legacy / ckpt.LEGACY_STATE).exists() and not (legacy / ckpt.LEGACY_TENSORS).exists()


def test_an_old_format_run_killed_between_its_files_refuses(tmp_path):
    at5, at10 = _cancelled_at(tmp_path, "at5", 5), _cancelled_at(tmp_path, "at10", 10)
    # killed after the weights of step 10, before their trainer state: the weights are newer than the rest
    legacy = _write_legacy(tmp_path / "a", at5)
    save_file({k[len("model."):]: v for k, v in load_file(at10 / ckpt.CHECKPOINT).items() if k.startswith("model.")}, legacy / runs.WEIGHTS)
    _written_in_order(legacy, [ckpt.LEGACY_TENSORS, ckpt.LEGACY_STATE, runs.HISTORY, runs.CONFIG, runs.WEIGHTS])
    before = {p.name: p.read_bytes() for p in legacy.iterdir()}
    with pytest.raises(runs.CheckpointError, match="interrupted between two of its files.*out of order"):
        train(_config(), legacy, resume=True)
    assert {p.name: p.read_bytes() for p in legacy.iterdir()} == before  # a refusal changes nothing
    # killed after trainer_state.json of step 10, before config.json: two steps named
    legacy = _write_legacy(tmp_path / "b", at5)
    meta = runs.read_json(legacy / ckpt.LEGACY_STATE)
    runs.write_json(legacy / ckpt.LEGACY_STATE, {**meta, "step": 10})
    _written_in_order(legacy, [runs.WEIGHTS, ckpt.LEGACY_TENSORS, ckpt.LEGACY_STATE, runs.HISTORY, runs.CONFIG])  # config: step 5
    with pytest.raises(runs.CheckpointError, match=r"config.json at step 5, trainer_state.json at step 10"):
        train(_config(), legacy, resume=True)


@pytest.mark.parametrize("change, match", [
    ({"model": "vae"}, "model beta_vae"),
    ({"lr": 2e-3}, "lr 0.001 -> 0.002"),
    ({"seed": 3}, "seed 0 -> 3"),
    ({"batch_size": 9}, "batch_size 8 -> 9"),
    ({"dataset": {"name": "toy", "levels": 6}}, "dataset"),
    ({"model_params": {**TINY, "beta": 2.0}}, "model beta_vae"),
    ({"model_params": {"latent_dim": 3, "hidden": 8}}, "latent_dim"),
    ({"steps": 3}, "beyond the 3 steps"),
])
def test_resume_into_a_different_run_refuses(tmp_path, change, match):
    run = _cancelled_at(tmp_path, "run", 7)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(runs.CheckpointError, match=match):
        train(_config(**change), run, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_may_change_where_and_how_long(tmp_path):
    run = _cancelled_at(tmp_path, "run", 7)
    result = train(_config(steps=25, num_threads=1, checkpoint_every=0), run, resume=True)
    assert result.status == "complete" and result.step == 25


@pytest.mark.parametrize("damage", ["truncate", "pickle", "empty", "drop_optimizer_state", "wrong_moment_shape",
                                    "bad_metadata", "foreign_param_groups", "bad_numpy_rng", "history_cut", "nan"])
def test_a_damaged_checkpoint_refuses(tmp_path, damage):
    run = _cancelled_at(tmp_path, "run", 7)
    file = run / ckpt.CHECKPOINT
    tensors = {name: t.clone() for name, t in load_file(file).items()}  # not the file's memory map: it is rewritten below
    meta = json.loads(runs.read_safetensors_header(file)[1]["mtc_checkpoint"])
    if damage == "truncate":
        file.write_bytes(file.read_bytes()[:-100])
    elif damage == "pickle":
        torch.save(tensors, file)
    elif damage == "empty":
        file.write_bytes(b"")
    elif damage == "drop_optimizer_state":
        save_file({k: v for k, v in tensors.items() if not k.endswith(".exp_avg_sq")}, file, {"mtc_checkpoint": json.dumps(meta)})
    elif damage == "wrong_moment_shape":
        name = next(k for k in tensors if k.endswith(".exp_avg"))
        save_file({**tensors, name: torch.zeros(3, 3)}, file, {"mtc_checkpoint": json.dumps(meta)})
    elif damage == "bad_metadata":
        save_file(tensors, file, {"mtc_checkpoint": json.dumps({**meta, "step": "seven"})})
    elif damage == "foreign_param_groups":
        meta["param_groups"][0][0]["lr"] = 0.5
        save_file(tensors, file, {"mtc_checkpoint": json.dumps(meta)})
    elif damage == "bad_numpy_rng":
        save_file(tensors, file, {"mtc_checkpoint": json.dumps({**meta, "numpy_rng": {"bit_generator": "MT19937", "state": 5}})})
    elif damage == "history_cut":
        runs.write_history(run, runs.read_history(run)[:-1])
    elif damage == "nan":
        name = next(k for k in tensors if k.startswith("model."))
        save_file({**tensors, name: tensors[name] * float("nan")}, file, {"mtc_checkpoint": json.dumps(meta)})
    with pytest.raises(runs.CheckpointError):
        train(_config(), run, resume=True)


def test_a_zoo_copy_or_foreign_folder_does_not_resume(tmp_path, tiny_run):
    zoo_like = tmp_path / "zoo_like"
    zoo_like.mkdir()
    for name in (runs.WEIGHTS, runs.CONFIG):
        shutil.copy(tiny_run / name, zoo_like / name)
    with pytest.raises(runs.CheckpointError, match="without a checkpoint"):
        train(_config(), zoo_like, resume=True)
    assert sorted(p.name for p in zoo_like.iterdir()) == sorted([runs.WEIGHTS, runs.CONFIG])


def test_an_existing_run_is_never_overwritten_without_the_flag(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for files in ([runs.CONFIG], [runs.WEIGHTS], [runs.HISTORY]):
        partial = tmp_path / f"partial-{files[0]}"
        partial.mkdir()
        shutil.copy(run / files[0], partial / files[0])
        with pytest.raises(ValueError, match="already holds a run"):
            train(_config(), partial)
    with pytest.raises(ValueError, match="already holds a run"):
        train(_config(), run)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    result = train(_config(steps=5), run, overwrite=True)
    assert result.status == "complete" and runs.read_json(run / runs.CONFIG)["train"]["steps"] == 5
    assert (run / "notes.txt").read_text() == "mine"  # overwrite replaces the run's files, nothing else
    assert [r["step"] for r in runs.read_history(run)] == [5]
    with pytest.raises(ValueError, match="exclude each other"):
        train(_config(), run, resume=True, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        train(_config(), tmp_path / "file")


def _cli(argv, capsys):
    from mtc_core.cli.commands import main

    code = main(argv)
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if ": error: " in line]
    return code, err


def test_a_disk_full_mid_run_marks_it_failed_at_its_checkpoint_and_it_resumes_exactly(tmp_path, uninterrupted, disk_full):
    class FullAt12(Callback):
        def on_step(self, *, step, logs):
            if step == 12:
                disk_full()  # every write from now on: the checkpoint of step 15 fails

    with pytest.raises(OSError) as error:
        train(_config(), tmp_path / "run", callbacks=[FullAt12()])
    assert runs.error_text(error.value).endswith("No space left on device; the run stays at its last checkpoint (step 10): "
                                                 "resume it once there is space")
    disk_full.off()
    config = runs.read_json(tmp_path / "run" / runs.CONFIG)
    # the disk stayed full, so the trainer could not write "failed" either: the run says "running" (the app lists it
    # as interrupted, nothing trains it) at its checkpoint of step 10, and resumes from there
    assert config["status"] == "running" and config["step"] == 10
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporary file, no lock
    _assert_same_run(train(_config(), tmp_path / "run", resume=True), uninterrupted["beta_vae"])


def test_a_full_disk_refuses_train_in_one_line_then_resume_works(tmp_path, uninterrupted, disk_full, capsys, monkeypatch):
    flags = ["--steps", "20", "--batch-size", "8", "--lr", "1e-3", "--eval-every", "5", "--eval-size", "8", "--checkpoint-every",
             "5", "--latent-dim", "2", "--hidden", "8", "--device", "cpu", "--model", "beta_vae", "--dataset", "toy"]
    out = tmp_path / "run"
    disk_full(runs.CONFIG)  # the first config.json: the first checkpoint never completes
    code, err = _cli(["train", "--out", str(out), *flags], capsys)
    assert code == 2 and err == [f"mtc_core train: error: {out / runs.CONFIG}: No space left on device; nothing of the run "
                                 f"was kept: start it again once there is space"]
    assert not out.exists()
    # a later checkpoint's config.json (step 10) finds the disk full, the small "failed" one after it goes through
    real = runs.write_json

    def write_json(path, obj):
        if path.name == runs.CONFIG and obj.get("step") == 10 and obj.get("status") == "running":
            raise OSError(28, "No space left on device", str(path))
        return real(path, obj)

    disk_full.off()
    monkeypatch.setattr(runs, "write_json", write_json)
    code, err = _cli(["train", "--out", str(out), *flags], capsys)
    assert code == 2 and err == [f"mtc_core train: error: {out / runs.CONFIG}: No space left on device; the run stays at its "
                                 f"last checkpoint (step 5): resume it once there is space"]
    config = runs.read_json(out / runs.CONFIG)
    assert (config["status"], config["step"]) == ("failed", 5) and config["message"].endswith("No space left on device")
    monkeypatch.setattr(runs, "write_json", real)
    code, err = _cli(["train", "--out", str(out), "--resume", *flags], capsys)
    assert code == 0 and err == []
    loaded, config = runs.load_run(out)
    assert config["status"] == "complete" and runs.read_history(out) == uninterrupted["beta_vae"][1]
    for name, t in uninterrupted["beta_vae"][0].items():
        assert torch.equal(loaded.state_dict()[name], t), name


def test_a_real_full_file_system_then_space_freed(small_disk, capsys):
    """A 20 MB tmpfs: conv64 on Shapes2D writes a 3 MB checkpoint at step 0 (no Adam moments yet) and a 9 MB one later."""
    flags = ["--dataset", "shapes2d", "--steps", "2", "--eval-every", "1", "--eval-size", "16", "--batch-size", "8", "--device", "cpu"]
    out = small_disk / "run"
    small_disk.leave(4_000_000)  # the step-0 checkpoint fits, its weights do not
    code, err = _cli(["train", "--out", str(out), *flags], capsys)
    assert code == 2 and err == [f"mtc_core train: error: {out / runs.WEIGHTS}: No space left on device; nothing of the run was "
                                 f"kept: start it again once there is space"]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no run folder, no temporary file
    small_disk.leave(10_000_000)  # step 0 fits whole; the last checkpoint (9 MB beside the old one) does not
    code, err = _cli(["train", "--out", str(out), *flags], capsys)
    assert code == 2 and err == [f"mtc_core train: error: {out / ckpt.CHECKPOINT}: No space left on device; the run stays at "
                                 f"its last checkpoint (step 0): resume it once there is space"]
    config = runs.read_json(out / runs.CONFIG)
    assert (config["status"], config["step"]) == ("failed", 0)
    assert sorted(p.name for p in out.iterdir()) == sorted([ckpt.CHECKPOINT, runs.CONFIG, runs.HISTORY, runs.WEIGHTS])
    code, err = _cli(["train", "--out", str(out), "--resume", *flags], capsys)
    assert code == 2 and "No space left on device" in err[0]  # still full: refused again the same way, nothing lost
    small_disk.free()
    code, err = _cli(["train", "--out", str(out), "--resume", *flags], capsys)
    assert code == 0 and err == [] and runs.load_run(out)[1]["status"] == "complete"
