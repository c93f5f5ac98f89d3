"""The Streamlit app through streamlit.testing's AppTest: every page renders against tiny trained models, the overview
and the side-by-side view draw the stored evaluations, widgets change what is drawn, broken runs are listed and
skipped, and trainings belong to the server (any session sees and cancels them; an interrupted run resumes exactly)."""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import statistics
import struct
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import support
import torch
from streamlit.testing.v1 import AppTest

import mtc_core
from mtc_core import estimators, runs, theory
from mtc_core.data import make_dataset
from mtc_core.evaluation import tc_report
from mtc_core.evaluation.tc_report import describe as report_describe
from mtc_core.evaluation.tc_report import value as report_value
from mtc_core.metrics import disintegration
from mtc_core.training.trainer import Callback, TrainConfig, train
from mtc_core.visualize.traversal import encode_numpy
from services import background, core_share, run_listing, training_queue
from ui.cache import NUM_POINTS
from ui.pages import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = PAGE_FILES
NEEDS_MODEL = ("Traversals", "Mean vs sampled TC", "Factor disintegration", "Compare", "Side by side", "Overview")
TIMEOUT = 60
TOY_FACTORS = make_dataset("toy").factor_names
SMALL_EVAL = {"num_train": 300, "num_test": 150, "intervention_points": 10, "intervention_batch": 16, "variance_points": 200,
              "dataset_tc_samples": 200}


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
    return support.run_dirs(tmp_path, monkeypatch, tiny_model_dir)


ZOO = [  # folder, label, model, seed: two seeds of one beta-TCVAE configuration and one RTC-VAE
    ("beta_tcvae-seed0", "beta-TCVAE (beta 6), toy, seed 0", "beta_tcvae", 0),
    ("beta_tcvae-seed1", "beta-TCVAE (beta 6), toy, seed 1", "beta_tcvae", 1),
    ("rtc_vae-seed0", "RTC-VAE (ours), toy, seed 0", "rtc_vae", 0),
]


@pytest.fixture(scope="module")
def evaluated_zoo(tmp_path_factory, one_thread) -> Path:
    """A zoo of three tiny toy models, each with a stored evaluation (mtc_core.evaluate at small sizes)."""
    root = tmp_path_factory.mktemp("zoo")
    for folder, _, model, seed in ZOO:
        result = train(tiny_config(model=model, seed=seed, steps=60), root / folder, command="pytest test_app zoo")
        evaluation = runs.json_safe(mtc_core.evaluate(result.model, make_dataset("toy"), seed=0, **SMALL_EVAL))
        runs.write_json(root / folder / runs.METRICS, {**runs.read_json(root / folder / runs.METRICS), "evaluation": evaluation})
    runs.write_json(root / "index.json", {"format_version": 1, "runs": [{"path": f, "label": label} for f, label, _, _ in ZOO]})
    return root


@pytest.fixture
def zoo_dirs(tmp_path, monkeypatch, evaluated_zoo) -> dict[str, Path]:
    """MTC_ZOO_DIR: the evaluated zoo; MTC_RUNS_DIR empty."""
    dirs = {"runs": tmp_path / "runs", "zoo": evaluated_zoo}
    dirs["runs"].mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(dirs["runs"]))
    monkeypatch.setenv("MTC_ZOO_DIR", str(dirs["zoo"]))
    return dirs


@pytest.fixture(autouse=True)
def no_training_left_behind():
    yield
    support.end_trainings(TIMEOUT)


def settle(at: AppTest, timeout: float = TIMEOUT) -> AppTest:
    return support.settle(at, timeout)


def open_page(title: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if PAGES[title] != PAGES["Overview"]:
        at.switch_page(PAGES[title])
    return settle(at)


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


def frame(at: AppTest, column: str):
    """The first dataframe that has this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


@pytest.mark.parametrize("title", list(PAGES))
def test_every_page_renders(app_dirs, title):
    at = open_page(title)
    assert at.title and not at.error, [e.value for e in at.error]
    picker = at.sidebar.selectbox(key="run_path")
    assert picker.value == str((app_dirs["runs"] / "tiny").resolve())
    assert at.sidebar.get("badge") or any("CPU" in m.value or "GPU" in m.value for m in at.sidebar.markdown)
    assert [link.proto.label for link in at.sidebar.get("page_link")] == list(PAGES)  # the navigation, on every page
    if title in ("Traversals", "Dataset"):
        assert image_urls(at)
    if title in ("Mean vs sampled TC", "Theorem", "Factor disintegration", "Compare", "Models"):
        specs = plotly_specs(at)
        assert specs and all(chart.proto.config and json.loads(chart.proto.config)["displayModeBar"] for chart in at.get("plotly_chart"))
    for button in at.get("download_button"):
        assert button.proto.label


def test_a_deep_link_gets_the_page_with_the_shared_sidebar(app_dirs):
    """A session whose first run asks for a page (a deep link, /Traversals) gets it with the sidebar every page shares,
    model picker and all: Streamlit runs that page's script alone, and its `layout.page` call draws the sidebar."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).switch_page(PAGES["Traversals"])
    settle(at)
    assert at.title[0].value == "Latent traversals"
    assert at.sidebar.selectbox(key="run_path").value == str((app_dirs["runs"] / "tiny").resolve())
    assert image_urls(at)


@pytest.mark.parametrize("title", NEEDS_MODEL)
def test_without_a_model_pages_say_what_to_do(tmp_path, monkeypatch, title):
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    at = open_page(title)
    assert any("Train" in info.value for info in at.info)
    assert not at.get("plotly_chart") and not at.image


def _bars(spec: dict, name: str, axis: str = "x") -> dict[str, dict]:
    """Bar traces of one legend name on one subplot, by their row label."""
    return {t["y"][0]: t for t in spec["data"] if t["type"] == "bar" and t["name"] == name and t.get("xaxis", "x") == axis}


def story_svg(at: AppTest) -> ET.Element:
    """The Overview's static story chart (an SVG in a Markdown element)."""
    return ET.fromstring(next(m.value for m in at.markdown if m.value.startswith("<svg")))


def test_overview_tells_the_story_from_stored_evaluations(zoo_dirs):
    at = open_page("Overview")
    tcs = [runs.read_json(zoo_dirs["zoo"] / folder / runs.METRICS)["evaluation"]["tc"] for folder, *_ in ZOO]
    # first the static chart (no plotly.js in the browser): one bar per configuration and code, at the stored values
    assert not at.get("plotly_chart")
    svg_bars = {(r.get("data-row"), r.get("data-series")): float(r.get("data-value"))
                for r in story_svg(at).iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"}
    assert svg_bars["beta-TCVAE (beta 6)", "mean"] == pytest.approx(statistics.mean(report_value(tc, "mean", "gaussian") for tc in tcs[:2]))
    assert svg_bars["RTC-VAE (ours)", "sampled"] == pytest.approx(report_value(tcs[2], "sampled", "gaussian"))
    assert at.get("download_button")[0].proto.label == "Download SVG"
    # the same figure drawn by plotly, on request
    at.toggle(key="ov_interactive").set_value(True).run()
    spec = plotly_specs(at)[0]
    mean_bars, sampled_bars = _bars(spec, "mean codes mu(x)"), _bars(spec, "sampled codes z")
    assert set(mean_bars) == {"beta-TCVAE (beta 6)", "RTC-VAE (ours)"}
    # two seeds: the bar is their mean, the error bar their sd, each seed a tick
    seeds = [report_value(tc, "mean", "gaussian") for tc in tcs[:2]]
    bar = mean_bars["beta-TCVAE (beta 6)"]
    assert bar["x"][0] == pytest.approx(statistics.mean(seeds)) and bar["error_x"]["array"][0] == pytest.approx(statistics.stdev(seeds))
    ticks = [t for t in spec["data"] if t["type"] == "scatter" and t["y"][0] == "beta-TCVAE (beta 6)" and t.get("legendgroup") == "mean"]
    assert sorted(array(ticks[0]["x"])) == pytest.approx(sorted(seeds))
    # one seed: the estimate's own 95% interval
    rtc = sampled_bars["RTC-VAE (ours)"]
    ci = tcs[2]["sampled"]["gaussian"]["ci"]
    assert rtc["x"][0] == pytest.approx(report_value(tcs[2], "sampled", "gaussian"))
    assert rtc["error_x"]["array"][0] == pytest.approx(ci[1] - rtc["x"][0])
    # where it lives: the stacked parts add up to the total
    parts = sum(_bars(spec, name, "x2")["beta-TCVAE (beta 6)"]["x"][0]
                for name in ("between active and passive, I(A; P)", "among active latents", "among passive latents"))
    assert parts == pytest.approx(bar["x"][0], abs=1e-9)
    assert json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]["format"] == "svg"
    assert any("between active and passive" in m.value for m in at.markdown)
    assert len(at.main.get("page_link")) == 6  # the sidebar lists every page with page links too
    at.segmented_control(key="ov_estimator").set_value("knn").run()
    knn = _bars(plotly_specs(at)[0], "mean codes mu(x)")["beta-TCVAE (beta 6)"]
    assert knn["x"][0] == pytest.approx(statistics.mean(report_value(tc, "mean", "knn") for tc in tcs[:2]))


def test_side_by_side_shows_two_models_on_one_scale(zoo_dirs):
    at = open_page("Side by side")
    zoo = zoo_dirs["zoo"]
    assert at.selectbox(key="sbs_a").value == str(zoo / "beta_tcvae-seed0")  # defaults: same dataset and seed
    assert at.selectbox(key="sbs_b").value == str(zoo / "rtc_vae-seed0")
    table = frame(at, "quantity").set_index("quantity")
    for name, folder in (("A", "beta_tcvae-seed0"), ("B", "rtc_vae-seed0")):
        tc = runs.read_json(zoo / folder / runs.METRICS)["evaluation"]["tc"]
        column = f"{name}: {folder}"
        assert table.loc["Gaussian, mean codes", column] == report_describe(tc, "mean", "gaussian")
        assert table.loc["kNN, sampled codes", column] == report_describe(tc, "sampled", "knn")

    (row,) = [spec for spec in plotly_specs(at) if sum(t["type"] == "heatmap" for t in spec["data"]) == 4]
    assert [t["coloraxis"] for t in row["data"]] == ["coloraxis"] * 4  # A and B, mean and sampled: one colour scale
    assert (row["layout"]["coloraxis"]["cmin"], row["layout"]["coloraxis"]["cmax"]) == (-1, 1)
    for panel, folder in ((0, "beta_tcvae-seed0"), (2, "rtc_vae-seed0")):
        model, config = runs.load_run(zoo / folder)
        dataset = make_dataset(config["dataset"])
        mu, _ = encode_numpy(model, dataset.render(dataset.index_to_factors(np.arange(len(dataset)))))
        np.testing.assert_allclose(array(row["data"][panel]["z"]), np.corrcoef(mu, rowvar=False), atol=1e-6)
    assert len(image_urls(at)) == 2  # both traversals

    split = frame(at, "latents (A)")
    stored = runs.read_json(zoo / "beta_tcvae-seed0" / runs.METRICS)["evaluation"]["mean"]["disintegration"]
    m, floor = np.array(stored["mi_matrix"]), stored["noise_floor"]  # a latent counts above max(tau, the factor's floor)
    assert list(split["latents (A)"]) == disintegration.latents_per_factor(m, 0.1, floor).tolist()
    uncarried = np.flatnonzero(disintegration.latents_per_factor(m, 0.1, floor) == 0)
    assert all(split["split ratio (A)"].iloc[k] == "carried by no latent" for k in uncarried)
    at.slider(key="sbs_tau").set_value(0.5).run()
    assert list(frame(at, "latents (A)")["latents (A)"]) == disintegration.latents_per_factor(m, 0.5, floor).tolist()

    at.selectbox(key="sbs_b").set_value(str(zoo / "beta_tcvae-seed1"))
    settle(at)
    assert "B: beta_tcvae-seed1" in frame(at, "quantity").columns


def test_heatmaps_are_the_correlations_of_the_codes(app_dirs):
    at = open_page("Mean vs sampled TC")
    heatmaps = [trace for spec in plotly_specs(at) for trace in spec["data"] if trace["type"] == "heatmap"]
    mean_z, sampled_z = array(heatmaps[0]["z"]), array(heatmaps[1]["z"])

    # The page encodes the toy's whole grid: recompute the mean codes without the app.
    model, config = runs.load_run(app_dirs["runs"] / "tiny")
    dataset = make_dataset(config["dataset"])
    assert len(dataset) <= NUM_POINTS
    mu, logvar = encode_numpy(model, dataset.render(dataset.index_to_factors(np.arange(len(dataset)))))
    np.testing.assert_allclose(mean_z, np.corrcoef(mu, rowvar=False), atol=1e-6)
    assert heatmaps[0]["coloraxis"] == heatmaps[1]["coloraxis"]
    coloraxis = next(s for s in plotly_specs(at) if any(t["type"] == "heatmap" for t in s["data"]))["layout"]["coloraxis"]
    assert (coloraxis["cmin"], coloraxis["cmax"]) == (-1, 1)

    # Sampled codes: correlations of one draw, close to those of Cov(mu) + E[diag sigma^2] (law of total covariance).
    cov = estimators.sampled_cov(mu, logvar)
    expected = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.testing.assert_allclose(np.diag(sampled_z), 1.0)
    assert np.abs(sampled_z - expected).max() < 0.15

    # The TC table: one estimator per row, the same points for both codes, each value with its 95% interval
    # (no stored evaluation here, so computed in the background on the page's points, which the caption says).
    table = frame(at, "estimator")
    z = mu + np.exp(0.5 * logvar) * np.random.default_rng([0, 1]).standard_normal(mu.shape)  # the page's draw
    report = tc_report.tc_report(mu, logvar, z, seed=0)
    gaussian = table.iloc[0]
    n, d = mu.shape  # the plug-in Gaussian TC less its small-sample bias, as the report says
    for column, codes in (("mean codes", mu), ("sampled codes", z)):
        corrected = max(estimators.gaussian_tc(np.cov(codes, rowvar=False)) - estimators.gaussian_tc_bias(n, d), 0.0)
        assert gaussian[column].startswith(f"{corrected:.3f} [")
        assert gaussian[column] == report_describe(report, column.split()[0], "gaussian")
    assert table.iloc[1]["mean codes"] == report_describe(report, "mean", "knn")
    assert any("computed here on" in c.value for c in at.caption)
    split = frame(at, "part").set_index("part")
    parts = [float(split.loc[p, "mean codes"].split()[0]) for p in split.index[1:]]
    assert sum(parts) == pytest.approx(float(split.iloc[0]["mean codes"].split()[0]), abs=2e-3)  # active + passive + between


def test_a_stored_evaluation_is_read_not_recomputed(zoo_dirs):
    """The picked zoo model's page shows its stored numbers at once: no background computation for them."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(PAGES["Mean vs sampled TC"]).run()
    stored = runs.read_json(zoo_dirs["zoo"] / "beta_tcvae-seed0" / runs.METRICS)["evaluation"]
    assert frame(at, "estimator").iloc[0]["mean codes"] == report_describe(stored["tc"], "mean", "gaussian")
    bars = next(s for s in plotly_specs(at) if s["data"][0]["type"] == "bar")["data"]
    np.testing.assert_allclose(array(bars[0]["y"]), stored["activity"]["var_mu"])
    settle(at)


def evaluation_with_curve(curve: bool = True) -> dict:
    """A stored evaluation of the tiny run (4 latents) whose TC report has an activity curve (tc_report's shape): z2, with
    Var(mu) 0.02, is active at the cut chosen from the data (0.01) and passive from 0.02 on; z3 is passive throughout."""
    from mtc_core.metrics.activity import curve_thresholds, stable_range

    var_mu, chosen = [1.0, 0.8, 0.02, 1e-4], 0.01
    grid = curve_thresholds(chosen)

    def parts(count: int) -> dict:  # all = active + passive + between
        return {"mean": {"all": 0.9, **({"active": 0.6, "passive": 0.0, "between": 0.3} if count == 3 else
                                         {"active": 0.05, "passive": 0.02, "between": 0.83})},
                "sampled": {"all": 0.02, **({"active": 0.015, "passive": 0.0, "between": 0.005} if count == 3 else
                                            {"active": 0.01, "passive": 0.001, "between": 0.009})}}

    counts = [sum(v > t for v in var_mu) for t in grid]
    split = {code: {part: _entry(v) for part, v in values.items()} for code, values in parts(3).items()}
    tc = {"mean": {"gaussian": split["mean"]["all"], "knn": _entry(1.5)}, "sampled": {"gaussian": split["sampled"]["all"], "knn": _entry(0.2)},
          "split": split, "active": [0, 1, 2], "passive": [3], "dropped": [],
          "settings": {"n": 1000, "seed": 0, "bootstrap": 200, "active_threshold": chosen}}
    if curve:
        tc["activity"] = {"var_mu": var_mu, "threshold": chosen, "rule": "the widest gap in log Var(mu_j)",
                          "curve": {"thresholds": grid, "active_count": counts,
                                    **{code: {part: [parts(c)[code][part] for c in counts] for part in ("all", "active", "passive", "between")}
                                       for code in ("mean", "sampled")}},
                          "stable": stable_range(var_mu, chosen, grid)}
    return {"tc": tc, "mean": {"mig": 0.1}, "sampled": {"mig": 0.05}, "recon": 40.0,
            "activity": {"var_mu": var_mu, "mean_sigma2": [0.1, 0.2, 0.9, 1.0], "kl": [2.0, 1.5, 0.1, 0.0], "active_latents": 3}}


def test_the_activity_cut_moves_the_split(app_dirs):
    """Mean vs sampled TC: the split of the Gaussian TC, the active latents named and the activity bars' line follow the
    cut picked on the report's activity curve; the cut chosen from the data is preselected."""
    store(app_dirs["runs"] / "tiny", evaluation_with_curve())
    at = open_page("Mean vs sampled TC")
    cut = at.select_slider(key="mvs_threshold")
    assert cut.value == 0.01 and len(cut.options) == 13  # the log-spaced grid holds 0.01 already
    split = frame(at, "part").set_index("part")
    assert split.loc["among active latents", "mean codes"] == "0.600 [0.590, 0.610]"  # the report's own split, with intervals
    assert any("Var mu_j > 0.01): z0, z1, z2; passive: z3" in m.value for m in at.markdown)
    shapes = lambda: next(s for s in plotly_specs(at) if s["data"][0]["type"] == "bar")["layout"]["shapes"]  # noqa: E731
    assert shapes()[0]["y0"] == 0.01
    curve = next(s for s in plotly_specs(at) if any(t.get("name") == "mean codes, among active latents" for t in s["data"]))
    assert array(next(t for t in curve["data"] if t.get("name") == "mean codes, among active latents")["y"]).max() == 0.6

    cut.set_value(10 ** -1.5).run()  # above z2's Var(mu) = 0.02: z2 turns passive
    split = frame(at, "part").set_index("part")
    assert split.loc["among active latents", "mean codes"] == "0.050"  # the curve's point estimate at that cut
    assert split.loc["between active and passive, I(A; P)", "mean codes"] == "0.830"
    assert split.loc["among active latents", "sampled codes"] == "0.010"
    assert any("Var mu_j > 0.0316): z0, z1; passive: z2, z3" in m.value for m in at.markdown)
    assert shapes()[0]["y0"] == pytest.approx(10 ** -1.5)


def test_a_report_without_an_activity_curve_shows_its_one_split(app_dirs):
    store(app_dirs["runs"] / "tiny", evaluation_with_curve(curve=False))
    at = open_page("Mean vs sampled TC")
    assert not at.get("select_slider") and not at.exception
    assert any("no activity curve" in c.value for c in at.caption)
    assert frame(at, "part").set_index("part").loc["among active latents", "mean codes"] == "0.600 [0.590, 0.610]"


def _slow(task, release):
    task.report(0.5, "half way")
    release.wait(TIMEOUT)
    return 42


def _waiting_page(key, slow, release):
    import streamlit as st

    from services import background
    from ui import widgets

    value = widgets.wait(background.submit(key, "A slow sum", slow, release), key="w", wait_s=0.05)
    st.write(f"value {value}")


def test_waiting_for_a_computation_shows_progress_then_the_result():
    release, key = threading.Event(), ("test-wait", time.time())
    at = AppTest.from_function(_waiting_page, args=(key, _slow, release), default_timeout=TIMEOUT).run()
    assert at.get("progress") and "A slow sum: half way" in at.get("progress")[0].proto.text
    assert any("value None" in m.value for m in at.markdown)
    release.set()
    background.get(key).value(wait=TIMEOUT)
    at.run()
    assert not at.get("progress") and any("value 42" in m.value for m in at.markdown)


def test_traversal_sliders_change_the_image(app_dirs):
    at = open_page("Traversals")
    grid_before = image_urls(at)[1]
    at.slider(key=f"trav_factor_toy_{TOY_FACTORS[0]}").set_value(2).run()
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
    at.slider(key=f"dataset_factor_toy_{TOY_FACTORS[-1]}").set_value(0).run()
    assert image_urls(at)[0] != before
    at.selectbox(key="dataset_name").set_value("shapes2d").run()
    assert not at.exception and at.slider(key="dataset_factor_shapes2d_orientation").value == 20
    at.selectbox(key="dataset_name").set_value("shapes3d").run()
    shape = at.select_slider(key="dataset_factor_shapes3d_shape")  # named classes: the slider reads cube ... capsule
    assert shape.options == ["cube", "cylinder", "sphere", "capsule"] and shape.value == 2  # the middle class, sphere
    before = image_urls(at)[0]
    shape.set_value(0).run()  # cube
    assert not at.exception and image_urls(at)[0] != before


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
    knn = [float(v.split()[0]) for v in table["kNN on 5000 samples"]]  # shown as text, never below 0
    assert min(knn) >= 0 and knn[0] == pytest.approx(theory.mean_tc(4, 0.5), abs=0.1)


def test_disintegration_page_and_tau(app_dirs):
    at = open_page("Factor disintegration")
    table = frame(at, "latents (mean)")
    assert tuple(table["factor"]) == TOY_FACTORS
    synthetic = frame(at, "max latents per factor").iloc[0]  # u split as (u // 8, u % 8): M = 0.4 and 0.6
    assert abs(float(synthetic["Gaussian TC [95% CI]"])) < 0.05 and synthetic["max latents per factor"] == 2
    at.slider(key="dis_tau").set_value(0.5).run()
    assert (frame(at, "latents (mean)")["latents (mean)"] <= table["latents (mean)"]).all()
    assert frame(at, "max latents per factor").iloc[0]["max latents per factor"] == 1


def test_a_factor_with_few_classes_gets_discrete_colours(app_dirs):
    at = open_page("Factor disintegration")
    at.selectbox(key="dis_factor").set_value(0)
    settle(at)
    scatter = plotly_specs(at)[1]
    size = make_dataset("toy").factor_sizes[0]
    named = [t for t in scatter["data"] if t.get("showlegend")]
    if size <= 8:  # one legend entry per class, no colour bar
        assert len(named) == size and not any(t["marker"].get("showscale") for t in scatter["data"])
    else:
        assert any(t["marker"].get("showscale") for t in scatter["data"])


def test_models_page_deletes_only_own_runs_after_confirming(app_dirs):
    zoo_run = app_dirs["zoo"] / "shipped"
    shutil.copytree(app_dirs["runs"] / "tiny", zoo_run)
    (app_dirs["zoo"] / "index.json").write_text(json.dumps({"format_version": 1, "runs": [{"path": "shipped", "label": "tiny beta-TCVAE"}]}))
    at = open_page("Models")
    picker = at.sidebar.selectbox(key="run_path")
    assert picker.options[0] == "tiny beta-TCVAE" and len(picker.options) == 2
    assert len(at.dataframe[0].value) == 2
    assert "models_delete" not in [b.key for b in at.button]
    assert any("read-only" in c.value for c in at.caption)

    picker.set_value(str((app_dirs["runs"] / "tiny").resolve())).run()
    assert at.button(key="models_delete").disabled
    at.checkbox(key="models_delete_confirm").check().run()
    at.button(key="models_delete").click().run()
    assert not (app_dirs["runs"] / "tiny").exists() and zoo_run.exists()
    assert at.sidebar.selectbox(key="run_path").options == ["tiny beta-TCVAE"]
    with pytest.raises(ValueError, match="only those can be deleted"):
        run_listing.delete_run(zoo_run)


def test_models_page_greys_delete_for_a_run_that_a_process_is_training(app_dirs):
    # the lock a trainer holds (mtc_core.runs.lock); held here by this process, as a terminal's `mtc train` would
    run = (app_dirs["runs"] / "tiny").resolve()
    with runs.hold_run_lock(run, create=False, doing="trained"):
        at = open_page("Models")
        at.sidebar.selectbox(key="run_path").set_value(str(run)).run()
        assert at.checkbox(key="models_delete_confirm").disabled and at.button(key="models_delete").disabled
        assert any("is being trained" in c.value for c in at.caption)
    at.run()  # released: deletable again
    assert not at.checkbox(key="models_delete_confirm").disabled


def _entry(value):
    return {"value": value, "ci": [value - 0.01, value + 0.01], "n": 1000}


def fake_evaluation(mean_tc: float, sampled_tc: float) -> dict:
    tc = {"mean": {"gaussian": _entry(mean_tc), "knn": _entry(mean_tc + 0.5)}, "sampled": {"gaussian": _entry(sampled_tc), "knn": _entry(0.2)},
          "split": {"mean": {"all": _entry(mean_tc), "active": _entry(0.5), "passive": _entry(0.3), "between": _entry(mean_tc - 0.8)}},
          "settings": {"n": 1000, "seed": 0}, "active": [0], "passive": [1], "dropped": []}
    return {"tc": tc, "mean": {"mig": 0.1, "dci": {"disentanglement": 0.3}}, "sampled": {"mig": 0.05},
            "activity": {"active_latents": 3}, "recon": 40.0}


def store(run: Path, evaluation: dict, **config_changes) -> None:
    runs.write_json(run / runs.METRICS, {**runs.read_json(run / runs.METRICS), "evaluation": evaluation})
    if config_changes:
        runs.write_json(run / runs.CONFIG, {**runs.read_json(run / runs.CONFIG), **config_changes})


def test_compare_reads_a_stored_evaluation(app_dirs):
    stored = app_dirs["runs"] / "evaluated"
    shutil.copytree(app_dirs["runs"] / "tiny", stored)
    model = runs.read_json(stored / runs.CONFIG)["model"]
    store(stored, fake_evaluation(2.0, 0.1), model={**model, "params": {**model["params"], "beta": 7.0}})  # its own configuration
    at = open_page("Compare")
    table = frame(at, "from").set_index("model")
    row = table.loc["evaluated"]
    assert row["from"] == "metrics.json" and row["gaussian_tc (mean)"] == 2.0 and row["dci.disentanglement (mean)"] == 0.3
    assert row["gaussian_tc between (mean)"] == pytest.approx(1.2) and row["gaussian_tc 95% CI (mean)"] == "2.000 [1.990, 2.010]"
    assert table.loc["tiny", "from"] == "computed by the app"  # evaluated in the background, then joined the table
    points = [t for t in plotly_specs(at)[0]["data"] if t["mode"] == "markers"]
    assert any(2.0 in array(t["y"]) and 0.1 in array(t["x"]) for t in points)
    at.segmented_control(key="cmp_estimator").set_value("knn").run()
    assert any(2.5 in array(t["y"]) for t in plotly_specs(at)[0]["data"] if t["mode"] == "markers")


def test_compare_aggregates_seeds_and_leaves_out_unfinished_runs(zoo_dirs, tiny_model_dir):
    cancelled = zoo_dirs["runs"] / "cancelled"
    shutil.copytree(tiny_model_dir, cancelled)
    store(cancelled, fake_evaluation(13.0, 0.1), status="cancelled")
    at = open_page("Compare")
    spec = plotly_specs(at)[0]
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"]["format"] == "svg" and config["displayModeBar"]
    points = [t for t in spec["data"] if t["mode"] == "markers"]
    assert {t["name"] for t in points} == {"beta-TCVAE (beta 6)", "RTC-VAE (ours)"}  # one point and legend entry per configuration
    assert all("text" not in t["mode"] for t in spec["data"])  # labels on hover, never on the plot
    seeds = [report_value(runs.read_json(zoo_dirs["zoo"] / f / runs.METRICS)["evaluation"]["tc"], "mean", "gaussian") for f, *_ in ZOO[:2]]
    beta = next(t for t in points if t["name"] == "beta-TCVAE (beta 6)")
    assert array(beta["y"])[0] == pytest.approx(statistics.mean(seeds))
    assert beta["error_y"]["array"][0] == pytest.approx(statistics.stdev(seeds))
    assert 13.0 not in np.concatenate([array(t["y"]) for t in points])  # the cancelled run is left out

    summary = frame(at, "seeds").set_index("family")
    assert summary.loc["beta-TCVAE", "seeds"] == "2 (0, 1)"
    at.checkbox(key="cmp_per_seed").check().run()
    per_seed = [t for t in plotly_specs(at)[0]["data"] if t["mode"] == "markers" and t["marker"].get("symbol") == "circle-open"]
    assert sorted(array(per_seed[0]["y"])) == pytest.approx(sorted(seeds))

    at.multiselect(key="cmp_extra").set_value(["cancelled"])
    settle(at)
    assert 13.0 in np.concatenate([array(t["y"]) for t in plotly_specs(at)[0]["data"] if t["mode"] == "markers"])


def test_compare_shows_a_sweep_folder(app_dirs):
    folder = app_dirs["runs"] / "sweeps" / "demo"
    for beta, tc_mean in ((1.0, 0.2), (4.0, 0.9)):
        run = folder / f"beta_vae-beta={beta:g}-seed=0"
        shutil.copytree(app_dirs["runs"] / "tiny", run)
        config = runs.read_json(run / runs.CONFIG)
        config["model"]["params"]["beta"] = beta
        runs.write_json(run / runs.CONFIG, config)
        history = runs.read_history(run)
        history[-1]["tc_gaussian_mean"] = tc_mean
        runs.write_history(run, history)
    runs.write_json(folder / "sweep.json", {"runs": []})
    at = open_page("Compare")
    sweep_table = frame(at, "tc_mean")
    assert sorted(sweep_table["tc_mean"]) == [0.2, 0.9]  # one seed each: the mean is the run's own value
    assert image_urls(at)  # the TC-vs-regularisation figure
    assert any(b.proto.label == "TC vs regularisation (PNG)" for b in at.get("download_button"))


def _weights_header(run: Path, change) -> None:
    """Rewrite model.safetensors' JSON header text through `change(header_text)` (the data bytes stay)."""
    file = run / runs.WEIGHTS
    data = file.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    text = change(data[8:8 + n].decode()).encode()
    file.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


def _first_tensor(change):
    def edit(text: str) -> str:
        header = json.loads(text)
        change(header[next(k for k in header if k != "__metadata__")])
        return json.dumps(header)
    return edit


def _config(run: Path, change) -> None:
    config = runs.read_json(run / runs.CONFIG)
    change(config)
    runs.write_json(run / runs.CONFIG, config)


BREAKAGES = {  # what the hostile-input campaign (issue 12) put into one run folder
    "config is a list": lambda run: (run / runs.CONFIG).write_text("[1, 2]"),
    "config is a string": lambda run: (run / runs.CONFIG).write_text('"x"'),
    "config is null": lambda run: (run / runs.CONFIG).write_text("null"),
    "float8 weights": lambda run: _weights_header(run, _first_tensor(lambda t: t.update(dtype="F8_E4M3"))),
    "header entry without data_offsets": lambda run: _weights_header(run, _first_tensor(lambda t: t.pop("data_offsets"))),
    "deeply nested header": lambda run: _weights_header(run, lambda text: text[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "hidden 1e9": lambda run: _config(run, lambda c: c["model"]["params"].update(hidden=10**9)),
    "no dataset": lambda run: _config(run, lambda c: c.pop("dataset")),
    "64x64 dataset, 32x32 model": lambda run: _config(run, lambda c: c.update(dataset={"name": "shapes2d"})),
    "malformed metrics.json": lambda run: (run / runs.METRICS).write_text('{"evaluation": {"tc": 5, "recon": "x"'),
    "metrics.json evaluation of the wrong types": lambda run: runs.write_json(run / runs.METRICS, {"evaluation": {"tc": {"mean": [1], "split": 3},
                                                                                                              "mean": 7, "activity": "x"}}),
    "invalid UTF-8 history": lambda run: (run / runs.HISTORY).write_bytes(b'{"step": 1}\n\xff\xfe{"step"\n'),
}


@pytest.mark.parametrize("kind", list(BREAKAGES))
def test_a_broken_run_is_listed_and_skipped(app_dirs, kind):
    bad = app_dirs["runs"] / "bad"
    shutil.copytree(app_dirs["runs"] / "tiny", bad)
    BREAKAGES[kind](bad)
    good = str((app_dirs["runs"] / "tiny").resolve())
    broken = {Path(e.path).name: e.problem for e in run_listing.broken_runs()}
    if "bad" in broken:  # unusable: named with the reason, offered nowhere
        assert broken["bad"]
        assert str(bad.resolve()) not in at_options(open_page("Models"))
    for title in ("Overview", "Models", "Compare", "Side by side", "Mean vs sampled TC"):
        at = open_page(title)
        assert not at.exception, (title, [e.value for e in at.exception])
        assert at.sidebar.selectbox(key="run_path").value in (good, str(bad.resolve()))
        if "bad" in broken:
            assert any("cannot be opened" in e.label for e in at.sidebar.expander)


def at_options(at: AppTest) -> list[str]:
    return list(at.sidebar.selectbox(key="run_path").options)


def fill_tiny_training(at: AppTest, steps: int = 20) -> None:
    at.selectbox(key="train_model").set_value("beta_vae").run()
    at.number_input(key="train_steps").set_value(steps)
    at.number_input(key="train_batch_size").set_value(16)
    at.number_input(key="train_p_latent_dim").set_value(3)
    at.number_input(key="train_p_hidden").set_value(16)


def start_button(at: AppTest):
    return next(b for b in at.get("button") if (b.key or "").startswith("train_start"))


def wait_for_jobs(at: AppTest, jobs: list[training_queue.TrainingJob], timeout: float = TIMEOUT) -> AppTest:
    """Rerun the page (what the fragment's timer does in a browser) until the jobs are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(job.done for job in jobs):
            return settle(at)
        time.sleep(0.3)
        at.run()
    raise AssertionError(f"training did not finish within {timeout} s")


def my_jobs(at: AppTest) -> list[training_queue.TrainingJob]:
    return [training_queue.find(job_id) for job_id in at.session_state["train_jobs"]]


def test_train_page_trains_and_the_run_becomes_selectable(app_dirs):
    at = open_page("Train")
    fill_tiny_training(at)
    start_button(at).click().run()
    assert not at.exception and not at.error
    (job,) = my_jobs(at)
    wait_for_jobs(at, [job])
    assert job.state == "complete", job.message
    assert job.config.num_threads == 0  # the cores shared by the trainings running at once (core_share.share)
    assert job.run_dir.parent == app_dirs["runs"] and runs.read_json(job.run_dir / runs.CONFIG)["status"] == "complete"
    assert len(runs.read_history(job.run_dir)) >= 2
    picker = at.sidebar.selectbox(key="run_path")
    assert picker.value == str(job.run_dir.resolve()) and len(picker.options) == 2
    assert any("Saved to" in s.value for s in at.success)
    at.switch_page(PAGES["Traversals"])
    settle(at)
    assert image_urls(at)


def test_a_form_submits_once(app_dirs):
    at = open_page("Train")
    assert not at.get("form")[0].proto.form.enter_to_submit  # Enter in a field does not start a run
    fill_tiny_training(at, steps=1_000_000)
    first = start_button(at)
    first.click().run()
    jobs = my_jobs(at)
    assert len(jobs) == 1
    # a double click's second trigger names the first button, which is gone: the fresh form's button is another widget
    assert start_button(at).key != first.key and first.key not in [b.key for b in at.get("button")]
    assert at.number_input(key="train_steps").value == 1_000_000  # the fresh form keeps what was typed
    for job in jobs:
        job.cancel.set()
    wait_for_jobs(at, jobs)


def test_a_training_belongs_to_the_server_not_the_session(app_dirs):
    at = open_page("Train")
    fill_tiny_training(at, steps=1_000_000)
    start_button(at).click().run()
    (job,) = my_jobs(at)
    at.switch_page(PAGES["Theorem"]).run()
    assert not at.exception and not job.done
    assert any("Training beta_vae on toy: step" in c.value for c in at.sidebar.caption)

    other = open_page("Train")  # a reload or a second tab: a new session
    assert "train_jobs" not in other.session_state or job.id not in other.session_state["train_jobs"]
    assert any("started by another session" in m.value for m in other.markdown) and other.get("progress")
    other.button(key=f"train_cancel_{job.id}").click().run()
    wait_for_jobs(other, [job])
    assert job.state == "cancelled" and 0 < job.step < 1_000_000
    assert runs.read_json(job.run_dir / runs.CONFIG)["status"] == "cancelled"
    wait_for_jobs(at.switch_page(PAGES["Train"]), [job])
    assert at.sidebar.selectbox(key="run_path").value == str(job.run_dir.resolve())  # its own session picks it


class Crash(Callback):
    """Kills the training at a step, as a dying process would: no status is written after the last checkpoint."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step(self, *, step, logs):
        if step == self.at_step:
            raise KeyboardInterrupt


def test_an_interrupted_run_is_resumed_exactly(app_dirs, one_thread):
    config = tiny_config(steps=40, checkpoint_every=10, num_threads=1)
    died = app_dirs["runs"] / "died"
    with pytest.raises(KeyboardInterrupt):
        train(config, died, callbacks=[Crash(25)], command="pytest: a run whose process dies")
    assert runs.read_json(died / runs.CONFIG)["status"] == "running"
    whole = train(config, app_dirs["runs"].parent / "whole", command="pytest: the same run without a kill")

    at = open_page("Train")
    assert "(interrupted)" in " ".join(at_options(at))
    resume_and_compare(at, "train_resume_died", died, whole)
    assert not at.get("button") or not any((b.key or "").startswith("train_resume") for b in at.get("button"))


def resume_and_compare(at: AppTest, button: str, run_dir: Path, whole) -> None:
    """Click the page's Resume for `run_dir`; the one job it queues completes and its weights equal `whole`'s, the same
    training without the interruption, bit for bit."""
    at.button(key=button).click().run()
    jobs = my_jobs(at)
    assert len(jobs) == 1 and jobs[0].resume_dir == run_dir
    wait_for_jobs(at, jobs)
    assert jobs[0].state == "complete", jobs[0].message
    resumed, config_json = runs.load_run(run_dir)
    assert config_json["status"] == "complete"
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)


class Fails(Callback):
    """An error inside the training (a full disk, a bug) at a step: the trainer marks the run "failed"."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step(self, *, step, logs):
        if step == self.at_step:
            raise OSError(28, "No space left on device", "history.jsonl")


def test_a_failed_run_is_listed_as_failed_and_resumed_exactly(app_dirs, one_thread):
    config = tiny_config(steps=40, checkpoint_every=10, num_threads=1)
    failed = app_dirs["runs"] / "failed"
    with pytest.raises(OSError, match="No space left on device; the run stays at its last checkpoint"):
        train(config, failed, callbacks=[Fails(25)], command="pytest: a run whose disk filled up")
    assert runs.read_json(failed / runs.CONFIG)["status"] == "failed"
    whole = train(config, app_dirs["runs"].parent / "whole", command="pytest: the same run on a disk with space")

    at = open_page("Train")
    assert "(failed)" in " ".join(at_options(at))
    assert any("*failed* at the checkpoint of step 20 / 40: history.jsonl: No space left on device" in m.value for m in at.markdown)
    resume_and_compare(at, "train_resume_failed", failed, whole)


def test_train_form_reports_values_out_of_bounds(app_dirs):
    at = open_page("Train")
    at.number_input(key="train_steps").set_value(0)
    start_button(at).click().run()
    assert any("steps must be an integer" in e.value for e in at.error)
    at.number_input(key="train_steps").set_value(10)
    at.number_input(key="train_p_beta").set_value(-1.0)
    start_button(at).click().run()
    assert any("beta must be" in e.value for e in at.error)
    assert "train_jobs" not in at.session_state or not at.session_state["train_jobs"]


def test_two_sessions_train_at_once_into_their_own_runs(app_dirs):
    sessions = [open_page("Train"), open_page("Train")]
    for seed, at in enumerate(sessions):
        fill_tiny_training(at, steps=30)
        at.number_input(key="train_seed").set_value(seed)
        start_button(at).click().run()
    jobs = [my_jobs(at)[0] for at in sessions]
    for at in sessions:
        wait_for_jobs(at, jobs)
    assert jobs[0].run_dir != jobs[1].run_dir
    for seed, job in enumerate(jobs):
        assert job.state == "complete", job.message
        model, config = runs.load_run(job.run_dir)
        assert config["train"]["seed"] == seed and config["step"] == 30
        assert [r["step"] for r in runs.read_history(job.run_dir)] == [r["step"] for r in job.history]


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_trainings_share_the_cores(tmp_path, monkeypatch):
    """Alone a training uses every core (as the CLI does); two running at once get half each, and the first goes back
    to all of them when the second ends. The process reports the threads torch actually uses."""
    monkeypatch.setattr(core_share, "CORES", 4)  # the share, whatever this machine has
    monkeypatch.setattr(core_share, "other_load", lambda: 0.0)  # and whatever else runs on it
    threads = torch.get_num_threads()
    first = training_queue.submit(tiny_config(steps=1_000_000), tmp_path, "first")
    _until(lambda: first.threads == 4 and first.step > 0, f"alone: {first.threads} threads")
    second = training_queue.submit(tiny_config(steps=1_000_000), tmp_path, "second")
    _until(lambda: first.threads == 2 and second.threads == 2, f"two: {first.threads}, {second.threads} threads")
    second.cancel.set()
    _until(lambda: second.done and first.threads == 4, f"alone again: {first.threads} threads")
    release = threading.Event()
    background.submit(("test", "busy server", tmp_path), "A page's computation", lambda task: release.wait(TIMEOUT))
    _until(lambda: first.threads == 3, f"while the server computes: {first.threads} threads")  # a core for the page
    release.set()
    _until(lambda: first.threads == 4, f"after the computation: {first.threads} threads")
    fixed = training_queue.submit(tiny_config(steps=1_000_000, num_threads=1), tmp_path, "fixed")
    _until(lambda: fixed.threads == 1 and first.threads == 2 and fixed.step > 0, "a config's own threads are kept")
    for job in (first, fixed):
        job.cancel.set()
    _until(lambda: first.done and fixed.done, "cancelled")
    assert (first.state, fixed.state, second.state) == ("cancelled",) * 3
    assert torch.get_num_threads() == threads  # the server's own threads are untouched
    assert core_share.share(1, computing=False) == 4 and core_share.share(3, computing=False) == 1
    assert core_share.share(1, computing=True) == 3 and core_share.share(4, computing=True) == 1
    # cores other programs keep busy are not free: a sweep of 2 runs beside one training leaves it 2 of 4 cores
    assert core_share.share(1, computing=False, others=2.2) == 2 and core_share.share(1, computing=True, others=3.0) == 1


def test_cpu_time_is_read_from_proc():
    # the server's and its trainings' time (the reading of /proc's text: tests/test_cores.py)
    if Path("/proc/stat").is_file():  # this machine's: busy time only grows, and this process's is part of it
        first = core_share._ticks()
        sum(i * i for i in range(300_000))
        second = core_share._ticks()
        assert second[0] >= first[0] and second[1] >= first[1] and second[1] <= second[0]


def test_queue_bounds_concurrent_trainings_and_cancels(tmp_path, monkeypatch):
    monkeypatch.setattr(training_queue, "MAX_CONCURRENT", 1)
    first = training_queue.submit(tiny_config(steps=1_000_000), tmp_path, "first")
    second = training_queue.submit(tiny_config(steps=3), tmp_path, "second")
    third = training_queue.submit(tiny_config(steps=3), tmp_path, "third")
    deadline = time.monotonic() + TIMEOUT
    while first.step == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.state == "running" and training_queue.server_load() == (1, 2)
    assert second.progress().queue_position == 1 and third.progress().queue_position == 2
    third.cancel.set()
    first.cancel.set()
    for job in (first, second, third):
        while not job.done and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (first.state, second.state, third.state) == ("cancelled", "complete", "cancelled")
    assert third.run_dir is None and first.run_dir != second.run_dir
    assert sorted(p.name.split("-", 2)[-1] for p in tmp_path.iterdir()) == ["first", "second"]
    assert training_queue.server_load() == (0, 0)


def test_the_stored_command_retrains_the_same_config(tmp_path):
    from mtc_core.cli.commands import main

    config = TrainConfig(model="dip_vae", model_params={"latent_dim": 3, "hidden": 16, "lambda_od": 5.0, "lambda_d": None,
                                                        "dip_type": "ii"}, dataset={"name": "toy"}, steps=3, batch_size=8,
                         eval_every=3, eval_size=8, device="cpu")
    out = tmp_path / "a dir with spaces"
    command = training_queue.cli_command(config, out)
    assert "--bf16" not in command  # the speed options are named only when on, in the CLI's spelling
    assert "--bf16 true" in training_queue.cli_command(replace(config, bf16=True), out)
    assert main(shlex.split(command)[3:]) == 0
    stored = runs.read_json(out / runs.CONFIG)
    assert stored["train"]["steps"] == 3 and stored["model"]["params"]["dip_type"] == "ii"
    assert stored["model"]["params"]["lambda_d"] == 5.0  # None: type ii's default, lambda_od
