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

    from mtc_core.estimators import gaussian_tc, gaussian_tc_bias
    from mtc_core.training.history import batch_gaussian_tc, history_tc

    codes = np.random.default_rng(0).standard_normal((200, 3))
    codes[:, 2] += codes[:, 0]
    # the TC report's estimate at the batch's size: the plug-in Gaussian TC less its small-sample bias
    assert batch_gaussian_tc(codes) == gaussian_tc(np.cov(codes, rowvar=False)) - gaussian_tc_bias(200, 3)
    codes[:, 1] = 4.0  # a constant latent is left out: the TC of the other two
    assert batch_gaussian_tc(codes) == gaussian_tc(np.cov(codes[:, [0, 2]], rowvar=False)) - gaussian_tc_bias(200, 2)
    assert batch_gaussian_tc(np.random.default_rng(1).standard_normal((300, 4))) >= 0.0  # clipped at 0, never negative
    assert batch_gaussian_tc(codes[:, :2]) is None  # one latent varies: no TC
    assert batch_gaussian_tc(np.full((10, 3), np.nan)) is None  # a diverging run: no value, not an error
    # an old history record's tc_mean is the same Gaussian TC of the means; its tc_sampled (minibatch MSS) is not read
    assert history_tc({"tc_mean": 0.5, "tc_sampled": -2.0}, "mean") == 0.5
    assert history_tc({"tc_mean": 0.5, "tc_sampled": -2.0}, "sampled") is None
    assert history_tc({"tc_gaussian_mean": 0.4, "tc_gaussian_sampled": 0.1}, "sampled") == 0.1


def test_an_eval_batch_no_larger_than_the_latent_size_is_refused_up_front(tmp_path, tiny_config, capsys):
    from mtc_core.cli.commands import main

    # its covariance is singular: the Gaussian TC infinite, history.jsonl unwritable (the run died "running")
    with pytest.raises(ValueError, match=r"^eval_size 8 must exceed latent_dim 10 \(") as refused:
        tiny_config(eval_size=8, model_params={"latent_dim": 10, "hidden": 8})
    assert "\n" not in str(refused.value)
    assert tiny_config(eval_size=11, model_params={"latent_dim": 10, "hidden": 8}).eval_size == 11
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--eval-size", "8", "--steps", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("mtc_core train: error: eval_size 8 must exceed latent_dim 10 (the Gaussian TC of a batch no larger than "
                   "the latent size is infinite): raise eval_size above 10 or lower latent_dim")
    assert not out.exists()  # nothing was started


def test_a_non_finite_logged_value_is_stored_as_null_with_a_note(tmp_path, tiny_config, monkeypatch):
    from mtc_core.training import history

    real = history.batch_gaussian_tc
    monkeypatch.setattr(history, "batch_gaussian_tc", lambda codes: float("inf") if codes is not None and len(codes) else real(codes))
    result = train(tiny_config(), tmp_path / "run")
    assert result.status == "complete"
    records = runs.read_history(tmp_path / "run")
    assert len(records) == 2
    for record in records:
        assert record["tc_gaussian_mean"] is None and record["tc_gaussian_sampled"] is None
        assert record["tc_note"] == ("Gaussian TC of the mean and sampled codes not finite (their covariance over 32 points is "
                                     "singular), stored as null")
    # any other value JSON cannot hold: null, named in the record's note
    runs.write_history(tmp_path / "run", [{"step": 1, "recon": float("nan"), "kl_per_dim": [1.0, float("inf")], "kl": 2.0}])
    assert runs.read_history(tmp_path / "run") == [{"step": 1, "recon": None, "kl_per_dim": [1.0, None], "kl": 2.0,
                                                    "note": "not finite, stored as null: kl_per_dim, recon"}]


class _Boom(RuntimeError):
    pass


def test_a_trainer_that_dies_of_an_error_marks_its_run_failed_and_it_resumes(tmp_path, tiny_config, monkeypatch):
    from mtc_core.training import device_loop
    from services import run_listing

    real, calls = device_loop.eval_record, {"n": 0}

    def eval_record(model, x):
        calls["n"] += 1
        if calls["n"] == 2:  # step 20, after the checkpoint of step 10
            raise _Boom("the evaluation broke")
        return real(model, x)

    monkeypatch.setattr(device_loop, "eval_record", eval_record)  # the trainer's steps (train_steps) live there
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path))
    with pytest.raises(_Boom):
        train(tiny_config(), tmp_path / "run")
    config = runs.read_json(tmp_path / "run" / runs.CONFIG)
    assert (config["status"], config["step"], config["message"]) == ("failed", 10, "_Boom: the evaluation broke")
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no lock, no temporary file
    [entry] = run_listing.user_runs()
    assert entry.status == "failed" and entry.label == "run · run (failed)" and entry.problem is None
    assert [e.path for e in run_listing.interrupted_runs()] == [entry.path]  # offered to resume
    monkeypatch.undo()
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path))
    resumed = train(tiny_config(), tmp_path / "run", resume=True)
    uninterrupted = train(tiny_config(), tmp_path / "whole")
    assert resumed.status == "complete" and runs.read_history(tmp_path / "run") == runs.read_history(tmp_path / "whole")
    for name, t in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], t), name
    assert run_listing.interrupted_runs() == []


def test_a_full_disk_at_the_first_checkpoint_leaves_nothing(tmp_path, tiny_config, disk_full):
    disk_full("model.safetensors")  # the first checkpoint's history and checkpoint files are written, its weights not
    with pytest.raises(OSError) as error:
        train(tiny_config(), tmp_path / "run")
    assert error.value.errno == 28 and runs.error_text(error.value) == (
        f"{tmp_path / 'run' / runs.WEIGHTS}: No space left on device; nothing of the run was kept: start it again once there is space")
    assert not (tmp_path / "run").exists()  # the folder the trainer made, removed with everything in it
    disk_full.off()
    assert train(tiny_config(), tmp_path / "run").status == "complete"  # the same call, once there is space
