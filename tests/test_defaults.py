"""One home of training defaults, read by the command line and the Train page alike: the same choices through either
door make the same run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import mtc_core
from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.training import cores, defaults
from mtc_core.training.defaults import CONV_64PX, MLP_32PX, MLP_DATASETS, dataset_defaults
from services import core_share, training_queue
from ui.pages import PAGE_FILES

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_every_dataset_has_defaults_and_unknown_names_have_none():
    from mtc_core.data import DATASETS, make_dataset

    for name in DATASETS:  # the MLP's defaults for the 32x32 datasets, the conv64 networks' for the others
        if name in MLP_DATASETS:
            assert make_dataset(name).image_shape[1:] == (32, 32) and dataset_defaults(name) == MLP_32PX
        else:
            assert dataset_defaults(name) == CONV_64PX
    assert dataset_defaults("toy") == {"steps": 2000, "batch_size": 64, "lr": 2e-3}
    assert dataset_defaults("shapes2d")["lr"] == 1e-4 and dataset_defaults("nope") == {} and dataset_defaults(None) == {}


def test_the_cli_trains_with_the_datasets_defaults_unless_told(tmp_path):
    assert main(["train", "--out", str(tmp_path / "a"), "--steps", "2", "--eval-every", "1", "--eval-size", "8", "--latent-dim", "2"]) == 0
    train = runs.read_json(tmp_path / "a" / runs.CONFIG)["train"]
    assert (train["lr"], train["batch_size"], train["steps"]) == (2e-3, 64, 2)
    assert main(["train", "--out", str(tmp_path / "b"), "--steps", "2", "--lr", "0.01", "--eval-every", "1", "--eval-size", "8",
                 "--latent-dim", "2"]) == 0
    assert runs.read_json(tmp_path / "b" / runs.CONFIG)["train"]["lr"] == 0.01


def test_the_train_page_shows_the_same_defaults_for_the_picked_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE_FILES["Train"]).run()
    for dataset in ("toy", "shapes2d", "squares"):
        at.selectbox(key="train_dataset").set_value(dataset).run()
        shown = {name: at.number_input(key=f"train_{name}").value for name in ("steps", "batch_size", "lr")}
        assert shown == dataset_defaults(dataset) and not at.exception


def test_settings_not_chosen_take_one_default():
    # a history record every TrainConfig.eval_every steps (the zoo's 100) from 2,000 steps on, RECORDS in a shorter run
    assert [defaults.eval_every(n) for n in (1, 3, 40, 1_000, 2_000, 15_000, 500_000)] == [1, 1, 2, 50, 100, 100, 100]
    assert defaults.eval_every(10_000_000) == 2_000  # at most MAX_RECORDS records
    config = defaults.train_config("beta_tcvae", {"name": "shapes2d"}, {"beta": 6.0, "latent_dim": 4, "architecture": None})
    assert (config.steps, config.batch_size, config.lr, config.eval_every) == (15_000, 64, 1e-4, 100)
    assert (config.eval_size, config.checkpoint_every, config.seed, config.device) == (512, 1000, 0, "auto")  # TrainConfig's
    assert config.model_params == {"latent_dim": 4}  # the choices: a field at its default or unset is not one
    # a field filled from the dataset is a choice whenever it is made (conv64 on the 32x32 toy, not the toy's mlp)
    assert defaults.model_choices("vae", {"architecture": "conv64", "hidden": 256}) == {"architecture": "conv64"}
    assert defaults.train_config("vae", {"name": "toy"}, {}, steps=300, eval_every=7).eval_every == 7  # a given one stays
    with pytest.raises(ValueError, match="latent_dim"):
        defaults.train_config("vae", {"name": "toy"}, {"latent_dim": 0})


def test_the_train_page_and_the_cli_make_the_same_run(tmp_path, monkeypatch):
    """The same model, dataset, seed and steps from the Train page (its form, its training process) and from
    `python -m mtc_core train`: the same config.json apart from the command that made it, the same history, the same
    weights (one torch thread through both doors, so the arithmetic is the same)."""
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the app's training process starts with one thread
    monkeypatch.setattr(core_share, "TRAIN_THREADS", 1)  # and keeps it
    monkeypatch.setattr(cores, "CORES", 1)  # the CLI's choice: one thread
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE_FILES["Train"]).run()
    at.selectbox(key="train_model").set_value("beta_tcvae").run()
    at.number_input(key="train_steps").set_value(3)
    at.number_input(key="train_p_latent_dim").set_value(4)
    next(b for b in at.get("button") if (b.key or "").startswith("train_start")).click().run()
    assert not at.exception and not at.error
    (job,) = [training_queue.find(job_id) for job_id in at.session_state["train_jobs"]]
    deadline = time.monotonic() + 120
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.state == "complete", job.message
    cli = tmp_path / "cli"
    assert main(["train", "--out", str(cli), "--model", "beta_tcvae", "--dataset", "toy", "--seed", "0", "--steps", "3",
                 "--latent-dim", "4"]) == 0
    page, command = runs.read_json(job.run_dir / runs.CONFIG), runs.read_json(cli / runs.CONFIG)
    assert page.pop("command").startswith("python -m mtc_core train ") and command.pop("command").startswith("python -m mtc_core train ")
    assert page == command
    assert page["train"]["eval_every"] == 1 and page["train"]["model_params"] == {"latent_dim": 4}
    assert runs.read_history(job.run_dir) == runs.read_history(cli)
    page_model, _ = mtc_core.load_run(job.run_dir)
    cli_model, _ = mtc_core.load_run(cli)
    assert all(torch.equal(a, b) for a, b in zip(page_model.state_dict().values(), cli_model.state_dict().values(), strict=True))
