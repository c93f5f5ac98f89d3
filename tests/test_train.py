import threading

import pytest
import torch

from mtc_core import runs
from mtc_core.models.base import VAE
from mtc_core.training.trainer import Callback, TrainConfig, resolve_device, train


def test_same_seed_same_history(tmp_path, tiny_config):
    a = train(tiny_config(model="beta_tcvae"), tmp_path / "a")
    b = train(tiny_config(model="beta_tcvae"), tmp_path / "b")
    assert a.status == b.status == "complete"
    assert len(a.history) == 2
    assert runs.read_history(tmp_path / "a") == runs.read_history(tmp_path / "b")
    train(tiny_config(model="beta_tcvae", seed=1), tmp_path / "c")
    assert runs.read_history(tmp_path / "c") != runs.read_history(tmp_path / "a")


def test_history_records_the_documented_fields(tiny_run):
    record = runs.read_history(tiny_run)[-1]
    for key in ("step", "train_loss", "recon", "kl", "tc_gaussian_sampled", "tc_gaussian_mean", "tc_n", "active_dims", "kl_per_dim"):
        assert key in record
    assert record["step"] == 30 and len(record["kl_per_dim"]) == 4
    config = runs.read_json(tiny_run / runs.CONFIG)
    assert config["status"] == "complete" and config["command"] == "pytest fixture"
    assert config["dataset"]["name"] == "toy"


def test_cancel_keeps_a_loadable_checkpoint(tmp_path, tiny_config):
    cancel = threading.Event()

    class CancelAt7(Callback):
        def on_step(self, *, step, logs):
            if step == 7:
                cancel.set()

    result = train(tiny_config(), tmp_path / "run", callbacks=[CancelAt7()], cancel=cancel)
    assert result.status == "cancelled" and result.step == 7
    model, config = runs.load_run(tmp_path / "run")
    assert config["status"] == "cancelled" and config["step"] == 7
    for name, t in model.state_dict().items():
        assert torch.equal(t, result.model.state_dict()[name])


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, tiny_config):
    original = VAE.reconstruction
    calls = {"n": 0}

    def poisoned(self, x, logits):
        calls["n"] += 1
        value = original(self, x, logits)
        return value * float("nan") if self.training and calls["n"] > 14 else value

    monkeypatch.setattr(VAE, "reconstruction", poisoned)
    result = train(tiny_config(checkpoint_every=5), tmp_path / "run")
    assert result.status == "diverged"
    assert "nan" in result.message and "step 10" in result.message
    model, config = runs.load_run(tmp_path / "run")
    assert config["status"] == "diverged" and config["step"] == 10
    for t in model.state_dict().values():
        assert torch.isfinite(t).all()


def test_resume_continues_exactly(tmp_path, tiny_config):
    full = train(tiny_config(model="factor_vae", steps=20, checkpoint_every=10), tmp_path / "full")
    cancel = threading.Event()

    class StopAt10(Callback):
        def on_step(self, *, step, logs):
            if step == 10:
                cancel.set()

    part = train(tiny_config(model="factor_vae", steps=20, checkpoint_every=10), tmp_path / "part",
                 callbacks=[StopAt10()], cancel=cancel)
    assert part.status == "cancelled"
    resumed = train(tiny_config(model="factor_vae", steps=20, checkpoint_every=10), tmp_path / "part", resume=True)
    assert resumed.status == "complete" and resumed.step == 20
    assert runs.read_history(tmp_path / "part") == runs.read_history(tmp_path / "full")
    for name, t in resumed.model.state_dict().items():
        assert torch.equal(t, full.model.state_dict()[name]), name
    speed = runs.read_json(tmp_path / "part" / runs.METRICS)["training"]["steps_per_s"]
    assert speed > 0
    again = train(tiny_config(model="factor_vae", steps=20, checkpoint_every=10), tmp_path / "part", resume=True)
    assert again.status == "complete" and again.step == 20  # a finished run: nothing trained, nothing lost
    assert runs.read_history(tmp_path / "part") == runs.read_history(tmp_path / "full")
    assert runs.read_json(tmp_path / "part" / runs.METRICS)["training"]["steps_per_s"] == speed
    for name, t in again.model.state_dict().items():
        assert torch.equal(t, full.model.state_dict()[name]), name


def test_device_auto_picks_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("bad, match", [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"), ({"batch_size": 2}, "batch_size"),
                                        ({"model": "nope"}, "unknown model"), ({"device": "tpu"}, "device"),
                                        ({"steps": 1.5}, "steps")])
def test_bad_train_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_train_config_from_dict_refuses_unknown():
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_trainings_in_parallel_threads_stay_reproducible(tmp_path, tiny_config):
    # Two trainings in threads of one process; each run's noise comes from its own generator. Each sets its torch
    # threads: OpenMP's thread count belongs to the thread that sets it, and another count sums in another order.
    configs = [tiny_config(model="beta_tcvae", seed=0, num_threads=1), tiny_config(model="factor_vae", seed=1, num_threads=1)]
    threads = [threading.Thread(target=train, args=(c, tmp_path / f"par{i}")) for i, c in enumerate(configs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, c in enumerate(configs):
        train(c, tmp_path / f"seq{i}")
        assert runs.read_history(tmp_path / f"par{i}") == runs.read_history(tmp_path / f"seq{i}")


def test_batch_gaussian_tc_of_the_history_record():
    import numpy as np

    from mtc_core.estimators import gaussian_tc
    from mtc_core.training.history import batch_gaussian_tc, history_tc

    codes = np.random.default_rng(0).standard_normal((200, 3))
    codes[:, 2] += codes[:, 0]
    assert batch_gaussian_tc(codes) == gaussian_tc(np.cov(codes, rowvar=False))
    codes[:, 1] = 4.0  # a constant latent is left out: the TC of the other two
    assert batch_gaussian_tc(codes) == gaussian_tc(np.cov(codes[:, [0, 2]], rowvar=False))
    assert batch_gaussian_tc(codes[:, :2]) is None  # one latent varies: no TC
    assert batch_gaussian_tc(np.full((10, 3), np.nan)) is None  # a diverging run: no value, not an error
    # an old history record's tc_mean is the same Gaussian TC of the means; its tc_sampled (minibatch MSS) is not read
    assert history_tc({"tc_mean": 0.5, "tc_sampled": -2.0}, "mean") == 0.5
    assert history_tc({"tc_mean": 0.5, "tc_sampled": -2.0}, "sampled") is None
    assert history_tc({"tc_gaussian_mean": 0.4, "tc_gaussian_sampled": 0.1}, "sampled") == 0.1
