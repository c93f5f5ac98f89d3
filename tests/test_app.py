"""The Streamlit app through streamlit.testing's AppTest: every page renders against a tiny trained model,
widgets change what is drawn, the Train page trains in the background and its run joins the picker."""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from mtc_core import estimators, io, theory
from mtc_core.data import make_dataset
from mtc_core.estimators.report import describe as report_describe
from mtc_core.train import Callback, TrainConfig, train
from mtc_core.traversal import encode_numpy
from ui import runs, training
from ui.cache import NUM_POINTS
from ui.pages import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = PAGE_FILES
NEEDS_MODEL = ("Traversals", "Mean vs sampled TC", "Factor disintegration", "Compare")
TIMEOUT = 60
TOY_FACTORS = make_dataset("toy").factor_names


def tiny_config(**overrides) -> TrainConfig:
    params = {"model": "beta_tcvae", "model_params": {"latent_dim": 4, "hidden": 32}, "dataset": {"name": "toy"}, "steps": 30,
              "batch_size": 16, "lr": 1e-3, "eval_every": 10, "eval_size": 32, "checkpoint_every": 0, "device": "cpu"}
    return TrainConfig(**{**params, **overrides})


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, one_thread) -> Path:
    path = tmp_path_factory.mktemp("trained") / "tiny"
    train(tiny_config(), path, command="pytest test_app fixture")
    return path


@pytest.fixture
def app_dirs(tmp_path, monkeypatch, tiny_model_dir) -> dict[str, Path]:
    """MTC_RUNS_DIR holding a copy of the tiny run, MTC_ZOO_DIR empty."""
    dirs = {"runs": tmp_path / "runs", "zoo": tmp_path / "zoo"}
    shutil.copytree(tiny_model_dir, dirs["runs"] / "tiny")
    dirs["zoo"].mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(dirs["runs"]))
    monkeypatch.setenv("MTC_ZOO_DIR", str(dirs["zoo"]))
    return dirs


def open_page(title: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if PAGES[title] != PAGES["Models"]:
        at.switch_page(PAGES[title]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array form {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(n) for n in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(float)
    return np.array(value, dtype=float)


def image_urls(at: AppTest) -> list[str]:
    return [url for image in at.image for url in image.value]


@pytest.mark.parametrize("title", list(PAGES))
def test_every_page_renders(app_dirs, title):
    at = open_page(title)
    assert at.title and not at.error, [e.value for e in at.error]
    picker = at.sidebar.selectbox(key="run_path")
    assert picker.value == str((app_dirs["runs"] / "tiny").resolve())
    assert at.sidebar.get("badge") or any("CPU" in m.value or "GPU" in m.value for m in at.sidebar.markdown)
    if title in ("Traversals", "Dataset"):
        assert image_urls(at)
    if title in ("Mean vs sampled TC", "Theorem", "Factor disintegration", "Compare", "Models"):
        specs = plotly_specs(at)
        assert specs and all(chart.proto.config and json.loads(chart.proto.config)["displayModeBar"] for chart in at.get("plotly_chart"))
    for button in at.get("download_button"):
        assert button.proto.label


def test_a_deep_link_runs_the_page_through_app_py(app_dirs):
    """A session whose first run asks for a page (a deep link, /Traversals) gets it inside app.py: sidebar and all."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).switch_page(PAGES["Traversals"]).run()
    assert not at.exception and at.title[0].value == "Latent traversals"
    assert at.sidebar.selectbox(key="run_path").value == str((app_dirs["runs"] / "tiny").resolve())
    assert image_urls(at)


@pytest.mark.parametrize("title", NEEDS_MODEL)
def test_without_a_model_pages_say_what_to_do(tmp_path, monkeypatch, title):
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    at = open_page(title)
    assert any("Train" in info.value for info in at.info)
    assert not at.get("plotly_chart") and not at.image


def test_traversal_sliders_change_the_image(app_dirs):
    at = open_page("Traversals")
    grid_before = image_urls(at)[1]
    at.slider(key=f"trav_factor_{TOY_FACTORS[0]}").set_value(2).run()
    assert not at.exception
    after_base = image_urls(at)[1]
    assert after_base != grid_before
    at.slider(key="trav_steps").set_value(5).run()
    assert image_urls(at)[1] not in (grid_before, after_base)
    at.radio(key="trav_range").set_value("quantile").run()
    assert not at.exception and at.slider(key="trav_quantile").value == 0.05
    at.radio(key="trav_base").set_value("random").run()
    assert not at.exception and len(image_urls(at)) == 3
    labels = {button.proto.label for button in at.get("download_button")}
    assert {"Grid as PNG", "Animated GIF"} <= labels


def test_dataset_slider_changes_the_image(app_dirs):
    at = open_page("Dataset")
    before = image_urls(at)[0]
    at.slider(key=f"dataset_factor_{TOY_FACTORS[-1]}").set_value(0).run()
    assert image_urls(at)[0] != before
    at.selectbox(key="dataset_name").set_value("shapes2d").run()
    assert not at.exception and at.slider(key="dataset_factor_orientation").value == 20


def test_heatmaps_are_the_correlations_of_the_codes(app_dirs):
    at = open_page("Mean vs sampled TC")
    heatmaps = [trace for spec in plotly_specs(at) for trace in spec["data"] if trace["type"] == "heatmap"]
    mean_z, sampled_z = array(heatmaps[0]["z"]), array(heatmaps[1]["z"])

    # The page encodes the toy's whole grid: recompute the mean codes without the app.
    model, config = io.load_run(app_dirs["runs"] / "tiny")
    dataset = make_dataset(config["dataset"])
    assert len(dataset) <= NUM_POINTS
    mu, logvar = encode_numpy(model, dataset.render(dataset.index_to_factors(np.arange(len(dataset)))))
    np.testing.assert_allclose(mean_z, np.corrcoef(mu, rowvar=False), atol=1e-6)
    assert heatmaps[0]["coloraxis"] == heatmaps[1]["coloraxis"]
    coloraxis = plotly_specs(at)[0]["layout"]["coloraxis"]
    assert (coloraxis["cmin"], coloraxis["cmax"]) == (-1, 1)

    # Sampled codes: correlations of one draw, close to those of Cov(mu) + E[diag sigma^2] (law of total covariance).
    cov = estimators.sampled_cov(mu, logvar)
    expected = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.testing.assert_allclose(np.diag(sampled_z), 1.0)
    assert np.abs(sampled_z - expected).max() < 0.15

    # The TC table: one estimator per row, the same points for both codes, each value with its 95% interval
    # (no stored evaluation here, so computed on the page's points, which the caption says).
    table = at.dataframe[0].value
    z = mu + np.exp(0.5 * logvar) * np.random.default_rng([0, 1]).standard_normal(mu.shape)  # the page's draw
    report = estimators.tc_report(mu, logvar, z, seed=0)
    gaussian = table.iloc[0]
    assert gaussian["mean codes"].startswith(f"{estimators.gaussian_tc(np.cov(mu, rowvar=False)):.3f} [")
    assert gaussian["sampled codes"].startswith(f"{estimators.gaussian_tc(np.cov(z, rowvar=False)):.3f} [")
    assert table.iloc[1]["mean codes"] == report_describe(report, "mean", "knn")
    assert any("computed here on" in c.value for c in at.caption)
    split = at.dataframe[1].value.set_index("part")
    parts = [float(split.loc[p, "mean codes"].split()[0]) for p in split.index[1:]]
    assert sum(parts) == pytest.approx(float(split.iloc[0]["mean codes"].split()[0]), abs=2e-3)  # active + passive + between


def test_latent_pair_select_changes_the_scatter(app_dirs):
    at = open_page("Mean vs sampled TC")
    at.selectbox(key="mvs_pair_i").set_value(3).run()
    at.selectbox(key="mvs_pair_j").set_value(1).run()
    scatter = plotly_specs(at)[-1]
    assert scatter["layout"]["xaxis"]["title"]["text"] == "z3" and scatter["layout"]["yaxis"]["title"]["text"] == "z1"


def test_theorem_sliders_and_monte_carlo_check(app_dirs):
    at = open_page("Theorem")
    at.slider(key="thm_d").set_value(4).run()
    at.slider(key="thm_rho").set_value(0.5).run()
    at.slider(key="thm_s").set_value(0.5).run()
    shown = {m.label: m.value for m in at.metric}
    assert shown["TC of the means"] == f"{theory.mean_tc(4, 0.5):.3f} nats"
    assert shown["TC of the samples"] == f"{theory.sampled_tc(4, 0.5, 0.5):.3f} nats"
    assert shown["Bound B(d, s)"] == f"{theory.sampled_tc_bound(4, 0.5):.3f} nats"
    curves = plotly_specs(at)[0]["data"]
    assert len(curves) == 3 and array(curves[1]["y"]).max() < theory.sampled_tc_bound(4, 0.5)

    at.select_slider(key="thm_n").set_value(5_000).run()
    assert not at.dataframe
    at.button(key="thm_check").click().run()
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["closed form"], [theory.mean_tc(4, 0.5), theory.sampled_tc(4, 0.5, 0.5)])
    np.testing.assert_allclose(table["Gaussian TC of the sample covariance"], table["closed form"], atol=0.05)


def test_disintegration_page_and_tau(app_dirs):
    at = open_page("Factor disintegration")
    table = at.dataframe[0].value
    assert tuple(table["factor"]) == TOY_FACTORS
    synthetic = at.dataframe[1].value.iloc[0]  # u split as (u // 8, u % 8): M = 0.4 and 0.6
    assert abs(float(synthetic["Gaussian TC [95% CI]"])) < 0.05 and synthetic["max latents per factor"] == 2
    at.slider(key="dis_tau").set_value(0.5).run()
    assert (at.dataframe[0].value["latents (mean)"] <= table["latents (mean)"]).all()
    assert at.dataframe[1].value.iloc[0]["max latents per factor"] == 1


def test_models_page_deletes_only_own_runs_after_confirming(app_dirs):
    zoo_run = app_dirs["zoo"] / "shipped"
    shutil.copytree(app_dirs["runs"] / "tiny", zoo_run)
    (app_dirs["zoo"] / "index.json").write_text(json.dumps({"format_version": 1, "runs": [{"path": "shipped", "label": "tiny beta-TCVAE"}]}))
    at = open_page("Models")
    picker = at.sidebar.selectbox(key="run_path")
    assert picker.options[0] == "zoo · tiny beta-TCVAE" and len(picker.options) == 2
    assert len(at.dataframe[0].value) == 2
    assert "models_delete" not in [b.key for b in at.button]
    assert any("read-only" in c.value for c in at.caption)

    picker.set_value(str((app_dirs["runs"] / "tiny").resolve())).run()
    assert at.button(key="models_delete").disabled
    at.checkbox(key="models_delete_confirm").check().run()
    at.button(key="models_delete").click().run()
    assert not (app_dirs["runs"] / "tiny").exists() and zoo_run.exists()
    assert at.sidebar.selectbox(key="run_path").options == ["zoo · tiny beta-TCVAE"]
    with pytest.raises(ValueError, match="only those can be deleted"):
        runs.delete_run(zoo_run)


def test_compare_reads_a_stored_evaluation(app_dirs):
    stored = app_dirs["runs"] / "evaluated"
    shutil.copytree(app_dirs["runs"] / "tiny", stored)
    def entry(value):
        return {"value": value, "ci": [value - 0.01, value + 0.01], "n": 1000}

    tc = {"mean": {"gaussian": entry(2.0), "knn": entry(2.5)}, "sampled": {"gaussian": entry(0.1), "knn": entry(0.2)},
          "split": {"mean": {"all": entry(2.0), "active": entry(0.5), "passive": entry(0.3), "between": entry(1.2)}},
          "settings": {"n": 1000, "seed": 0}, "active": [0], "passive": [1], "dropped": []}
    evaluation = {"tc": tc, "mean": {"mig": 0.1, "dci": {"disentanglement": 0.3}}, "sampled": {"mig": 0.05},
                  "activity": {"active_latents": 3}, "recon": 40.0}
    io.write_json(stored / io.METRICS, {**io.read_json(stored / io.METRICS), "evaluation": evaluation})
    at = open_page("Compare")
    table = at.dataframe[0].value.set_index("model")
    row = table.loc["evaluated"]
    assert row["source"] == "metrics.json" and row["gaussian_tc (mean)"] == 2.0 and row["dci.disentanglement (mean)"] == 0.3
    assert row["gaussian_tc between (mean)"] == 1.2 and row["gaussian_tc 95% CI (mean)"] == "2.000 [1.990, 2.010]"
    assert table.loc["tiny", "source"] == "computed by the app"
    scatter = plotly_specs(at)[0]["data"][1]
    assert 2.0 in array(scatter["y"]) and 0.1 in array(scatter["x"])
    at.radio(key="cmp_estimator").set_value("knn_tc").run()
    assert 2.5 in array(plotly_specs(at)[0]["data"][1]["y"])


def test_compare_shows_a_sweep_folder(app_dirs):
    folder = app_dirs["runs"] / "sweeps" / "demo"
    for beta, tc_mean in ((1.0, 0.2), (4.0, 0.9)):
        run = folder / f"beta_vae-beta={beta:g}-seed=0"
        shutil.copytree(app_dirs["runs"] / "tiny", run)
        config = io.read_json(run / io.CONFIG)
        config["model"]["params"]["beta"] = beta
        io.write_json(run / io.CONFIG, config)
        history = io.read_history(run)
        history[-1]["tc_gaussian_mean"] = tc_mean
        io.write_history(run, history)
    io.write_json(folder / "sweep.json", {"runs": []})
    at = open_page("Compare")
    assert not at.exception
    sweep_table = at.dataframe[1].value
    assert sorted(sweep_table["tc_mean"]) == [0.2, 0.9]  # one seed each: the mean is the run's own value
    assert image_urls(at)  # the TC-vs-regularisation figure
    assert any(b.proto.label == "TC vs regularisation (PNG)" for b in at.get("download_button"))


def fill_tiny_training(at: AppTest, steps: int = 20) -> None:
    at.selectbox(key="train_model").set_value("beta_vae").run()
    at.number_input(key="train_steps").set_value(steps)
    at.number_input(key="train_batch_size").set_value(16)
    at.number_input(key="train_p_latent_dim").set_value(3)
    at.number_input(key="train_p_hidden").set_value(16)


def wait_for_training(at: AppTest, timeout: float = TIMEOUT) -> AppTest:
    """Rerun the page (what the fragment's timer does in a browser) until the session's jobs are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = at.session_state["train_jobs"]
        if jobs and all(job.done for job in jobs):
            return at.run()
        time.sleep(0.3)
        at.run()
    raise AssertionError(f"training did not finish within {timeout} s")


def test_train_page_trains_and_the_run_becomes_selectable(app_dirs):
    at = open_page("Train")
    fill_tiny_training(at)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    wait_for_training(at)
    assert not at.exception
    job = at.session_state["train_jobs"][0]
    assert job.state == "complete", job.message
    assert job.run_dir.parent == app_dirs["runs"] and io.read_json(job.run_dir / io.CONFIG)["status"] == "complete"
    assert len(io.read_history(job.run_dir)) >= 2
    picker = at.sidebar.selectbox(key="run_path")
    assert picker.value == str(job.run_dir.resolve()) and len(picker.options) == 2
    assert any("Saved to" in s.value for s in at.success)
    at.switch_page(PAGES["Traversals"]).run()
    assert not at.exception and image_urls(at)


def test_training_survives_page_switches_and_can_be_cancelled(app_dirs):
    at = open_page("Train")
    fill_tiny_training(at, steps=1_000_000)
    at.button(key="train_start").click().run()
    job = at.session_state["train_jobs"][0]
    at.switch_page(PAGES["Theorem"]).run()
    assert not at.exception and not job.done
    assert any("Training beta_vae: step" in c.value for c in at.sidebar.caption)
    at.switch_page(PAGES["Train"]).run()
    assert not job.done and at.get("progress")
    at.button(key=f"train_cancel_{job.id}").click().run()
    wait_for_training(at)
    assert job.state == "cancelled" and 0 < job.step < 1_000_000
    assert io.read_json(job.run_dir / io.CONFIG)["status"] == "cancelled"
    assert at.sidebar.selectbox(key="run_path").value == str(job.run_dir.resolve())


def test_train_form_reports_values_out_of_bounds(app_dirs):
    at = open_page("Train")
    at.number_input(key="train_steps").set_value(0)
    at.button(key="train_start").click().run()
    assert any("steps must be an integer" in e.value for e in at.error)
    at.number_input(key="train_steps").set_value(10)
    at.number_input(key="train_p_beta").set_value(-1.0)
    at.button(key="train_start").click().run()
    assert any("beta must be" in e.value for e in at.error)
    assert not at.session_state["train_jobs"]


def test_two_sessions_train_at_once_into_their_own_runs(app_dirs):
    sessions = [open_page("Train"), open_page("Train")]
    for seed, at in enumerate(sessions):
        fill_tiny_training(at, steps=30)
        at.number_input(key="train_seed").set_value(seed)
        at.button(key="train_start").click().run()
    for at in sessions:
        wait_for_training(at)
    jobs = [at.session_state["train_jobs"][0] for at in sessions]
    assert jobs[0].run_dir != jobs[1].run_dir
    for seed, job in enumerate(jobs):
        assert job.state == "complete", job.message
        model, config = io.load_run(job.run_dir)
        assert config["train"]["seed"] == seed and config["step"] == 30
        assert [r["step"] for r in io.read_history(job.run_dir)] == [r["step"] for r in job.history]


def test_queue_bounds_concurrent_trainings_and_cancels(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(training, "MAX_CONCURRENT", 1)
    release = threading.Event()

    class Hold(Callback):
        def on_step(self, *, step, logs):
            release.wait(TIMEOUT)

    original = training._JobCallback
    monkeypatch.setattr(training, "_JobCallback", lambda job: _Both(original(job), Hold()))
    first = training.submit(tiny_config(steps=3), tmp_path, "first")
    second = training.submit(tiny_config(steps=3), tmp_path, "second")
    third = training.submit(tiny_config(steps=3), tmp_path, "third")
    deadline = time.monotonic() + TIMEOUT
    while first.state != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert training.server_load() == (1, 2)
    assert second.progress().queue_position == 1 and third.progress().queue_position == 2
    third.cancel.set()
    release.set()
    for job in (first, second, third):
        while not job.done and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (first.state, second.state, third.state) == ("complete", "complete", "cancelled")
    assert third.run_dir is None and first.run_dir != second.run_dir
    assert sorted(p.name.split("-", 2)[-1] for p in tmp_path.iterdir()) == ["first", "second"]
    assert training.server_load() == (0, 0)


class _Both(Callback):
    def __init__(self, *callbacks):
        self.callbacks = callbacks

    def on_step(self, **kwargs):
        for cb in self.callbacks:
            cb.on_step(**kwargs)

    def on_eval(self, **kwargs):
        for cb in self.callbacks:
            cb.on_eval(**kwargs)

    def on_end(self, **kwargs):
        for cb in self.callbacks:
            cb.on_end(**kwargs)


def test_the_stored_command_retrains_the_same_config(tmp_path):
    from mtc_core.__main__ import main

    config = TrainConfig(model="dip_vae", model_params={"latent_dim": 3, "hidden": 16, "lambda_od": 5.0, "lambda_d": None,
                                                        "dip_type": "ii"}, dataset={"name": "toy"}, steps=3, batch_size=8,
                         eval_every=3, eval_size=8, device="cpu")
    out = tmp_path / "a dir with spaces"
    command = training.cli_command(config, out)
    assert main(shlex.split(command)[3:]) == 0
    stored = io.read_json(out / io.CONFIG)
    assert stored["train"]["steps"] == 3 and stored["model"]["params"]["dip_type"] == "ii"
    assert stored["model"]["params"]["lambda_d"] == 5.0  # None: type ii's default, lambda_od
