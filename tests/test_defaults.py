"""One table of training defaults per dataset, read by the command line and the Train page alike."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.training.defaults import CONV_64PX, MLP_32PX, MLP_DATASETS, dataset_defaults
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
