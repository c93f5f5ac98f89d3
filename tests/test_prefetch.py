"""A loop that never waits on the host (issue 23): prefetched and device-rendered batches are the batches the plain loop
drew, training with them gives the same weights bit for bit on the CPU, the loss check deferred to the next look
still stops a run as "diverged", and the speed options stay off unless asked for."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from mtc_core import runs
from mtc_core.data import make_dataset
from mtc_core.models import VAE
from mtc_core.training import trainer
from mtc_core.training.device_loop import LossWatch, StepLogs, accelerated
from mtc_core.training.prefetch import Batches
from mtc_core.training.trainer import Callback, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("toy", "shapes2d", "shapes3d")


def todays_batches(dataset, n: int, batch: int, seed: int) -> tuple[list[np.ndarray], dict]:
    """The batches the trainer drew before prefetching, and its generator's state after them."""
    rng = np.random.default_rng(seed)
    return [dataset.render(dataset.sample_factors(batch, rng)) for _ in range(n)], rng.bit_generator.state


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("mode", ["sync", "thread", "device"])
def test_batches_are_todays_batches(name, mode):
    dataset = make_dataset(name)
    if mode == "device" and not hasattr(dataset, "render_torch"):
        pytest.skip(f"{name} has no torch renderer: a GPU run prefetches it in a thread")
    expected, state = todays_batches(dataset, 5, 16, seed=7)
    rng = np.random.default_rng(7)
    with Batches(dataset, 16, rng, torch.device("cpu"), mode) as batches:
        got = [batches.next().numpy() for _ in range(5)]
        batches.settle()
    assert rng.bit_generator.state == state  # what a checkpoint saves: the generator after the batches consumed
    for want, have in zip(expected, got, strict=True):
        assert have.dtype == np.float32 and have.shape == want.shape
        if mode == "device" and name == "shapes3d":  # the band's float32 product done by torch: equal to rounding
            np.testing.assert_allclose(have, want, rtol=0, atol=1e-6)
        else:
            assert np.array_equal(have, want)


def test_a_thread_stays_ahead_of_the_generator_it_settles():
    dataset = make_dataset("toy")
    rng = np.random.default_rng(3)
    with Batches(dataset, 8, rng, torch.device("cpu"), "thread") as batches:
        first = batches.next()
        start = rng.bit_generator.state  # the thread draws from its own copy: the run's generator has not moved
        assert start == np.random.default_rng(3).bit_generator.state
        batches.settle()
        expected, state = todays_batches(dataset, 1, 8, seed=3)
        assert np.array_equal(first.numpy(), expected[0]) and rng.bit_generator.state == state


def test_a_render_error_in_the_thread_reaches_the_loop():
    dataset = make_dataset("toy")

    def broken(factors):
        raise RuntimeError("the renderer broke")

    dataset.render = broken
    with Batches(dataset, 8, np.random.default_rng(0), torch.device("cpu"), "thread") as batches, \
            pytest.raises(RuntimeError, match="the renderer broke"):
        batches.next()


def weights(run_dir: Path) -> bytes:
    return (run_dir / runs.WEIGHTS).read_bytes()


@pytest.mark.parametrize("mode", ["thread"])
def test_training_with_prefetch_gives_the_weights_of_the_plain_loop(tmp_path, tiny_config, monkeypatch, mode):
    config = tiny_config(model="factor_vae", steps=20, checkpoint_every=5, num_threads=1)
    monkeypatch.setattr(trainer, "BATCH_MODE", "sync")
    plain = train(config, tmp_path / "sync")
    monkeypatch.setattr(trainer, "BATCH_MODE", mode)
    ahead = train(config, tmp_path / "ahead")
    assert weights(tmp_path / "ahead") == weights(tmp_path / "sync")
    assert runs.read_history(tmp_path / "ahead") == runs.read_history(tmp_path / "sync")
    assert (tmp_path / "ahead" / "checkpoint.safetensors").read_bytes() == (tmp_path / "sync" / "checkpoint.safetensors").read_bytes()
    for name, t in plain.model.state_dict().items():
        assert torch.equal(ahead.model.state_dict()[name], t), name


def test_a_prefetched_run_cancelled_and_resumed_continues_exactly(tmp_path, tiny_config, monkeypatch):
    """The checkpoint of a run whose thread drew batches ahead holds the generator the loop consumed: the resumed run
    draws the batches the uninterrupted one drew."""
    monkeypatch.setattr(trainer, "BATCH_MODE", "thread")
    config = tiny_config(steps=20, checkpoint_every=10, num_threads=1)
    whole = train(config, tmp_path / "whole")
    cancel = threading.Event()

    class CancelAt13(Callback):
        def on_step(self, *, step, logs):
            if step == 13:
                cancel.set()

    assert train(config, tmp_path / "part", callbacks=[CancelAt13()], cancel=cancel).step == 13
    resumed = train(config, tmp_path / "part", resume=True)
    assert resumed.status == "complete" and weights(tmp_path / "part") == weights(tmp_path / "whole")
    assert runs.read_history(tmp_path / "part") == runs.read_history(tmp_path / "whole")
    del whole


def test_shapes2d_rendered_by_torch_trains_the_same_weights(tmp_path, monkeypatch):
    config = TrainConfig(model="beta_tcvae", dataset={"name": "shapes2d"}, steps=2, batch_size=8, eval_every=2, eval_size=16,
                         device="cpu", num_threads=1)
    for mode in ("sync", "device"):
        monkeypatch.setattr(trainer, "BATCH_MODE", mode)
        train(config, tmp_path / mode)
    assert weights(tmp_path / "device") == weights(tmp_path / "sync")


def test_step_logs_are_read_only_when_asked_for(tmp_path, tiny_config):
    seen = []

    class Keep(Callback):
        def on_step(self, *, step, logs):
            seen.append(logs)

    result = train(tiny_config(model="beta_tcvae", steps=10), tmp_path / "run", callbacks=[Keep()])
    assert all(isinstance(logs, StepLogs) for logs in seen) and set(seen[0]) >= {"loss", "recon", "kl", "mi", "tc", "dwkl"}
    assert isinstance(seen[-1]["loss"], float) and seen[-1]["loss"] == result.history[-1]["train_loss"]
    assert json.loads(json.dumps(dict(seen[0])))["loss"] == seen[0]["loss"]


def test_the_loss_watch_finds_the_first_bad_step_in_one_look():
    watch = LossWatch(limit=3)
    for step, value in enumerate([1.0, 2.0]):
        watch.add(step + 5, torch.tensor(value))
    assert not watch.full and watch.first_non_finite() is None
    for step, value in enumerate([3.0, float("inf"), float("nan")]):
        watch.add(step + 7, torch.tensor(value))
    assert watch.full and watch.first_non_finite() == (8, float("inf"))
    assert watch.first_non_finite() is None  # forgotten once looked at


def poison(monkeypatch, after: int, then_raise: bool = False):
    """The training reconstruction turns NaN from call `after + 1` on; with then_raise, the call after that raises, as a
    solver given NaN weights would, before the trainer has looked at the losses."""
    original, calls = VAE.reconstruction, {"n": 0}

    def poisoned(self, x, logits):
        value = original(self, x, logits)
        if not self.training:
            return value
        calls["n"] += 1
        if then_raise and calls["n"] > after + 1:
            raise torch.linalg.LinAlgError("the matrix is not positive-definite (NaN weights)")
        return value * float("nan") if calls["n"] > after else value

    monkeypatch.setattr(VAE, "reconstruction", poisoned)


@pytest.mark.parametrize("then_raise", [False, True])
def test_a_non_finite_loss_still_stops_the_run_as_diverged(tmp_path, tiny_config, monkeypatch, then_raise):
    poison(monkeypatch, 11, then_raise)  # NaN at step 11, looked at with the checkpoint of step 15 (or the error at step 12)
    result = train(tiny_config(checkpoint_every=5, eval_every=50), tmp_path / "run")
    assert (result.status, result.step) == ("diverged", 10)
    assert result.message == "loss became nan at step 11; kept the checkpoint of step 10"
    model, config = runs.load_run(tmp_path / "run")
    assert (config["status"], config["step"]) == ("diverged", 10)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_speed_options_are_off_by_default_and_absent_from_config_json(tmp_path, tiny_config):
    config = tiny_config(steps=2, eval_every=2)
    assert (config.bf16, config.compile, config.cudnn_benchmark) == (False, False, False)
    train(config, tmp_path / "run")
    written = runs.read_json(tmp_path / "run" / runs.CONFIG)["train"]
    assert not {"bf16", "compile", "cudnn_benchmark"} & set(written) and TrainConfig.from_dict(written) == config
    assert trainer.without_defaults({**written, "bf16": False, "compile": False}) == written


def test_every_shipped_config_loads_and_is_written_as_it_reads():
    for path in sorted((ROOT / "pretrained").glob("*/config.json")):
        train_settings = runs.read_json(path)["train"]
        assert TrainConfig.from_dict(train_settings).to_dict() == train_settings, path


def test_speed_options_that_cannot_help_are_refused(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="cudnn_benchmark .* needs a CUDA device"):
        tiny_config(cudnn_benchmark=True)
    with pytest.raises(ValueError, match="torch.compile does not speed up these networks on the CPU"):
        tiny_config(compile=True)
    with pytest.raises(ValueError, match="bf16 must be true or false"):
        tiny_config(bf16=1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cudnn_benchmark .* needs a CUDA device"):
            train(tiny_config(device="auto", cudnn_benchmark=True), tmp_path / "auto")
        with pytest.raises(ValueError, match="torch.compile does not speed up"):
            train(tiny_config(device="auto", compile=True), tmp_path / "auto")
        assert not (tmp_path / "auto").exists()


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no bf16 arithmetic")
def test_a_bf16_run_trains_records_it_and_resumes_only_as_bf16(tmp_path, tiny_config):
    config = tiny_config(bf16=True, steps=10, checkpoint_every=5)
    cancel = threading.Event()

    class CancelAt5(Callback):
        def on_step(self, *, step, logs):
            if step == 5:
                cancel.set()

    result = train(config, tmp_path / "run", callbacks=[CancelAt5()], cancel=cancel)
    assert result.status == "cancelled" and runs.read_json(tmp_path / "run" / runs.CONFIG)["train"]["bf16"] is True
    assert not any("forward" in vars(net) for net in result.model.children())  # the autocast is undone after the run
    with pytest.raises(runs.CheckpointError, match="bf16"):
        train(tiny_config(steps=10, checkpoint_every=5), tmp_path / "run", resume=True)
    assert train(config, tmp_path / "run", resume=True).status == "complete"
    fp32 = train(tiny_config(steps=10, checkpoint_every=5), tmp_path / "fp32")
    assert weights(tmp_path / "run") != weights(tmp_path / "fp32") and fp32.status == "complete"


def test_accelerated_wraps_the_networks_and_undoes_it():
    model = trainer.build_model("vae", {"image_shape": [1, 32, 32], "architecture": "mlp", "latent_dim": 2, "hidden": 8})
    keys = list(model.state_dict())
    with accelerated(model, bf16=True, compile=True, cudnn_benchmark=False, device=torch.device("cpu")):
        assert all("forward" in vars(net) for net in model.children()) and list(model.state_dict()) == keys
    assert not any("forward" in vars(net) for net in model.children())


def test_the_gpu_check_runs_on_the_cpu():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check

    lines = gpu_check.main(["--device", "cpu", "--steps", "3", "--speed-steps", "2", "--warmup", "1", "--datasets", "toy",
                            "--variants", "float32", "sync batches", "--models", "vae", "factor_vae"])
    assert sum(line.startswith("| toy |") for line in lines) == 2
    same = [line.split("|")[4].strip() for line in lines if line.startswith(("| vae ", "| factor_vae "))]
    assert same == ["0.0e+00 (1)"] * 2  # on the CPU both sides are one computation
