"""The Train, Models and Training curves pages through streamlit.testing's AppTest: a run started on the Train page is
named by its hyperparameters, stays yours after a reload, and when it ends shows its TC report's numbers, its curves
and a button that opens it on the Models page (which plots both codes' TC); the Training curves page overlays runs and
smooths them as an EMA computed by hand; the zoo's TC against regularisation strength has one point per run."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import support
from streamlit.testing.v1 import AppTest

from mtc_core import runs
from mtc_core.evaluation import tc_report
from mtc_core.training.history import history_tc
from mtc_core.training.trainer import TrainConfig, train
from mtc_core.visualize.curves import ema
from services import training_queue
from ui.pages import PAGE_FILES

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 60


def tiny(model: str = "beta_vae", seed: int = 0, **params) -> TrainConfig:
    return TrainConfig(model=model, model_params={"latent_dim": 3, "hidden": 16, **params}, dataset={"name": "toy"}, steps=30,
                       batch_size=16, lr=1e-3, eval_every=10, eval_size=32, checkpoint_every=0, device="cpu", seed=seed,
                       num_threads=1)


def store_report(run_dir: Path, seed: int) -> dict:
    """A stored evaluation with a TC report (small sizes; what the pages read) and a reconstruction."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(300, 3)) @ np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.0]])
    report = tc_report.tc_report(mu, np.full_like(mu, -1.0), seed=0, bootstrap=20, knn_batches=2, knn_points=100,
                                 dataset_mc_samples=0)
    evaluation = runs.json_safe({"tc": report, "recon": 12.3456 + seed, "mean": {}, "sampled": {}})
    metrics = runs.read_json(run_dir / runs.METRICS) if (run_dir / runs.METRICS).is_file() else {}
    runs.write_json(run_dir / runs.METRICS, {**metrics, "evaluation": evaluation})
    return evaluation


ZOO = [("beta_tcvae", 0, {"beta": 6.0}), ("beta_tcvae", 1, {"beta": 6.0}), ("beta_vae", 0, {"beta": 2.0}),
       ("beta_vae", 0, {"beta": 8.0}), ("vae", 0, {})]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """Five tiny toy runs, each with a stored TC report: beta-TCVAE beta 6 (two seeds), beta-VAE beta 2 and 8, a VAE."""
    root = tmp_path_factory.mktemp("zoo")
    for model, seed, params in ZOO:
        name = f"{model}-{'-'.join(f'{k}{v:g}' for k, v in params.items())}-seed{seed}"
        train(tiny(model, seed, **params), root / name, command="pytest test_app_train zoo")
        store_report(root / name, seed)
    return root


@pytest.fixture
def dirs(tmp_path, monkeypatch, zoo) -> dict[str, Path]:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MTC_ZOO_DIR", str(zoo))
    return {"runs": runs_dir, "zoo": zoo}


@pytest.fixture(autouse=True)
def no_training_left_behind():
    yield
    support.end_trainings(TIMEOUT)


def settle(at: AppTest) -> AppTest:
    return support.settle(at, TIMEOUT)


def open_page(title: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    at.run()
    at.switch_page(PAGE_FILES[title])
    return settle(at)


def specs(at: AppTest) -> dict[str, dict]:
    return {chart.proto.id or str(i): json.loads(chart.proto.spec) for i, chart in enumerate(at.get("plotly_chart"))}


def traces(at: AppTest) -> list[dict]:
    return [t for spec in specs(at).values() for t in spec["data"]]


def test_a_run_is_named_stays_yours_and_shows_its_report_when_done(dirs):
    at = open_page("Train")
    at.selectbox(key="train_model").set_value("beta_vae").run()
    for key, value in (("train_steps", 100_000), ("train_batch_size", 16), ("train_seed", 2), ("train_p_latent_dim", 3),
                       ("train_p_hidden", 16), ("train_p_beta", 3.0)):
        at.number_input(key=key).set_value(value)
    next(b for b in at.get("button") if (b.key or "").startswith("train_start")).click().run()
    (job_id,) = at.session_state["train_jobs"]
    job = training_queue.find(job_id)
    owner = at.session_state["train_owner"]
    assert job.owner == owner and at.query_params["owner"] == owner  # the address keeps it: a reload finds the run

    reloaded = open_page("Train", {"owner": owner})  # a reload: a new session with the same address
    assert not job.done and any("started by you" in m.value for m in reloaded.markdown)
    assert reloaded.session_state["train_jobs"] == [job.id] and not reloaded.button(key=f"train_cancel_{job.id}").disabled
    assert any("Your trainings" in h.value for h in reloaded.subheader)
    stranger = open_page("Train")  # another browser: sees it, not as its own
    assert any("started by another session" in m.value for m in stranger.markdown)
    assert "train_jobs" not in stranger.session_state or not stranger.session_state["train_jobs"]
    deadline = time.monotonic() + TIMEOUT
    while len(job.progress().history) < 2:  # a record every 100 steps
        assert time.monotonic() < deadline and not job.done, job.message
        time.sleep(0.1)
    reloaded.button(key=f"train_cancel_{job.id}").click().run()
    deadline = time.monotonic() + TIMEOUT
    while not job.done:
        assert time.monotonic() < deadline, "training did not end"
        time.sleep(0.3)
    assert job.state == "cancelled", job.message
    assert re.fullmatch(r"beta_vae-beta=3-toy-seed=2-\d{6}", job.run_dir.name)  # model, strength, dataset, seed, time
    evaluation = store_report(job.run_dir, 0)
    settle(reloaded)  # the reloaded session announces the run: the picker moves to it
    assert reloaded.sidebar.selectbox(key="run_path").value == str(job.run_dir.resolve())
    metrics = {m.label: m.value for m in reloaded.metric}
    tc = evaluation["tc"]
    assert metrics["TC mean codes (Gaussian, nats)"] == tc_report.describe(tc, "mean", "gaussian")
    assert metrics["TC sampled codes (Gaussian, nats)"] == tc_report.describe(tc, "sampled", "gaussian")
    assert metrics["recon (nats per image)"] == "12.35"
    names = [t["name"] for t in traces(reloaded)]
    assert any(n.startswith("TC sampled codes (Gaussian, bias-corrected") for n in names)
    final = next(t for t in traces(reloaded) if t["name"].startswith("TC sampled codes, final"))
    assert final["y"] == [tc_report.value(tc, "sampled", "gaussian")]

    reloaded.button(key=f"train_open_{job.id}").click().run()  # one click: the Models page, on this run
    assert reloaded.title[0].value == "Models" and not reloaded.exception
    assert reloaded.sidebar.selectbox(key="run_path").value == str(job.run_dir.resolve())
    sampled = next(t for t in traces(reloaded) if t["name"].startswith("TC sampled codes (Gaussian"))
    history = runs.read_history(job.run_dir)
    assert sampled["y"] == [history_tc(r, "sampled") for r in history] and len(history) >= 2
    row = next(r for r in reloaded.dataframe[0].value.to_dict("records") if r["run"] == job.run_dir.name)
    assert row["recon"] == pytest.approx(12.3456) and row["recon (last training batch)"] == pytest.approx(history[-1]["recon"])


def test_curves_page_overlays_runs_and_smooths_as_an_ema(dirs):
    at = open_page("Training curves")
    zoo_paths = sorted(str(p.resolve()) for p in dirs["zoo"].iterdir() if (p / runs.CONFIG).is_file())
    picked = zoo_paths[:2]
    at.multiselect(key="curves_runs").set_value(picked)
    at.selectbox(key="curves_quantity").set_value("KL").run()
    overlay = specs(at)
    (chart,) = [s for s in overlay.values() if s["layout"]["xaxis"]["title"]["text"] == "step"]
    assert len(chart["data"]) == 2
    raw = [[r["kl"] for r in runs.read_history(p)] for p in picked]
    for trace, values in zip(chart["data"], raw, strict=True):
        assert np.allclose(trace["y"], values)
    at.slider(key="curves_smoothing").set_value(0.6).run()
    (chart,) = [s for s in specs(at).values() if s["layout"]["xaxis"]["title"]["text"] == "step"]
    for trace, values in zip(chart["data"], raw, strict=True):
        by_hand = [values[0]]
        for x in values[1:]:
            by_hand.append(0.6 * by_hand[-1] + 0.4 * x)
        assert np.allclose(trace["y"], by_hand) and np.allclose(trace["y"], ema(values, 0.6))
        assert not np.allclose(trace["y"], values)
    table = at.dataframe[0].value
    assert len(table) == len(ZOO) and set(table["strength"]) == {"beta=6.0", "beta=2.0", "beta=8.0", "-"}


def test_zoo_tc_against_strength_has_one_point_per_run(dirs):
    at = open_page("Training curves")
    (figure,) = [s for s in specs(at).values() if s["layout"]["xaxis"].get("type") == "log"]
    markers = [t for t in figure["data"] if t["mode"] == "markers"]
    swept = [(m, s, p) for m, s, p in ZOO if p]
    for axis, code in (("x", "sampled"), ("x2", "mean")):
        here = [t for t in markers if t.get("xaxis", "x") == axis]
        assert sorted(x for t in here for x in t["x"]) == sorted(p["beta"] for _, _, p in swept)
        stored = sorted(tc_report.value(runs.read_json(d / runs.METRICS)["evaluation"]["tc"], code, "gaussian")
                        for d in dirs["zoo"].iterdir() if d.is_dir() and not d.name.startswith("vae"))
        assert np.allclose(sorted(y for t in here for y in t["y"]), stored)
    assert {t["name"] for t in markers} == {"beta-TCVAE", "beta-VAE"}
    assert [t["name"] for t in figure["data"] if t["mode"] == "lines"] == ["VAE", "VAE"]  # no regulariser: a line


def test_models_table_has_one_recon_and_names_the_last_batch(dirs):
    target = dirs["runs"] / "mine"
    shutil.copytree(next(p for p in dirs["zoo"].iterdir() if p.name.startswith("vae")), target)
    (target / runs.METRICS).unlink()
    at = open_page("Models")
    rows = {r["run"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["mine"]["recon"] is None or np.isnan(rows["mine"]["recon"])  # not evaluated: no recon to compare
    assert rows["mine"]["recon (last training batch)"] == pytest.approx(runs.read_history(target)[-1]["recon"])
    zoo_row = rows["beta_tcvae-beta6-seed0"]
    assert zoo_row["recon"] == pytest.approx(12.3456)


def test_a_run_without_an_evaluation_is_evaluated_and_stored_from_its_page(dirs):
    target = dirs["runs"] / "mine"
    shutil.copytree(next(p for p in dirs["zoo"].iterdir() if p.name.startswith("vae")), target)
    (target / runs.METRICS).write_text(json.dumps({"kept": 1}))  # what else the file holds stays
    at = open_page("Models")
    at.sidebar.selectbox(key="run_path").set_value(str(target.resolve()))
    settle(at)
    assert {m.label: m.value for m in at.metric}["recon (nats per image)"] == "n/a"
    at.button(key="models_headline_store").click()
    settle(at)
    metrics = runs.read_json(target / runs.METRICS)
    stored = metrics["evaluation"]
    assert metrics["kept"] == 1 and stored["settings"]["num_train"] == 10_000 and stored["settings"]["num_test"] == 5_000
    shown = {m.label: m.value for m in at.metric}
    assert shown["recon (nats per image)"] == f"{stored['recon']:.2f}"
    assert shown["TC mean codes (Gaussian, nats)"] == tc_report.describe(stored["tc"], "mean", "gaussian")
    assert not [b for b in at.button if b.key == "models_headline_store"]  # stored: nothing left to do


def test_the_gpu_speed_options_are_offered_only_with_a_gpu_and_reach_the_config(dirs, monkeypatch):
    at = open_page("Train")
    assert not [c for c in at.checkbox if c.key in ("train_bf16", "train_compile", "train_cudnn_benchmark")]  # a CPU machine
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # what the form asks; the sidebar's GPU name too:
    monkeypatch.setattr("services.run_listing.device_label", lambda *args, **kwargs: "GPU: a test's")
    at = open_page("Train")
    assert {c.key for c in at.checkbox} >= {"train_bf16", "train_compile", "train_cudnn_benchmark"}
    at.selectbox(key="train_model").set_value("vae").run()
    for key, value in (("train_steps", 20), ("train_batch_size", 16), ("train_p_latent_dim", 3), ("train_p_hidden", 16)):
        at.number_input(key=key).set_value(value)
    at.selectbox(key="train_device").set_value("cpu")
    at.checkbox(key="train_bf16").check()
    next(b for b in at.get("button") if (b.key or "").startswith("train_start")).click().run()
    (job_id,) = at.session_state["train_jobs"]
    job = training_queue.find(job_id)
    deadline = time.monotonic() + TIMEOUT
    while not job.done:
        assert time.monotonic() < deadline, "training did not end"
        time.sleep(0.2)
    train = runs.read_json(job.run_dir / runs.CONFIG)["train"]
    assert job.state == "complete" and train["bf16"] is True and "compile" not in train  # an option on is written, one off is not


def test_tc_against_strength_shows_one_training_budget_at_a_time(dirs, tmp_path, monkeypatch):
    zoo = tmp_path / "zoo"
    shutil.copytree(dirs["zoo"], zoo)
    longer = zoo / "beta_tcvae-beta6-seed0-long"
    shutil.copytree(zoo / "beta_tcvae-beta6-seed0", longer)
    config = runs.read_json(longer / runs.CONFIG)
    config["train"]["steps"] = 120  # as if trained 4x longer
    runs.write_json(longer / runs.CONFIG, config)
    monkeypatch.setenv("MTC_ZOO_DIR", str(zoo))
    at = open_page("Training curves")

    def betas(at):
        (figure,) = [s for s in specs(at).values() if s["layout"]["xaxis"].get("type") == "log"]
        return sorted(x for t in figure["data"] if t["mode"] == "markers" and t.get("xaxis", "x") == "x" for x in t["x"])

    control = at.get("button_group")[-1] if at.get("button_group") else None
    assert betas(at) == sorted(p["beta"] for _, _, p in ZOO if p)  # the zoo's own budget first: the longer run not mixed in
    assert control is not None and any("30 steps" in m.value for m in at.caption)
    at.session_state["curves_budget"] = "120 steps"
    at.run()
    assert betas(at) == [6.0] and any("1 runs on toy trained 120 steps" in m.value for m in at.caption)
