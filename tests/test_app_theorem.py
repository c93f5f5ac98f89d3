"""The Theorem page linked to the picked model, factor disintegration's "carried by no latent", and the per-latent
histograms of the Mean vs sampled page, through AppTest (issue 22, item 6)."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import mtc_core
from mtc_core import runs, theory
from mtc_core.data import make_dataset
from mtc_core.evaluation import tc_report
from mtc_core.metrics import disintegration
from mtc_core.training.trainer import TrainConfig, train
from services import background
from ui.pages import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 60
SMALL_EVAL = {"num_train": 300, "num_test": 150, "intervention_points": 10, "intervention_batch": 16, "variance_points": 200,
              "dataset_tc_samples": 200}


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    """A tiny beta-TCVAE on the toy with a stored evaluation (mtc_core.evaluate at small sizes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("trained") / "tiny"
    result = train(TrainConfig(model="beta_tcvae", model_params={"latent_dim": 4, "hidden": 32}, dataset={"name": "toy"}, steps=30,
                               batch_size=16, lr=1e-3, eval_every=10, eval_size=32, checkpoint_every=0, device="cpu"), path,
                   command="pytest")
    evaluation = runs.json_safe(mtc_core.evaluate(result.model, make_dataset("toy"), seed=0, **SMALL_EVAL))
    runs.write_json(path / runs.METRICS, {**runs.read_json(path / runs.METRICS), "evaluation": evaluation})
    torch.set_num_threads(threads)
    return path


@pytest.fixture
def run_dir(tmp_path, monkeypatch, evaluated_run) -> Path:
    shutil.copytree(evaluated_run, tmp_path / "runs" / "tiny")
    (tmp_path / "zoo").mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    return tmp_path / "runs" / "tiny"


def open_page(title: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(PAGE_FILES[title])
    deadline = time.monotonic() + TIMEOUT
    while True:  # rerun until no background computation is pending (what the progress fragments do in a browser)
        busy, started = bool(background.pending()), background.submitted()
        at.run()
        if not busy and background.submitted() == started and not background.pending():
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert not at.exception, [e.value for e in at.exception]
    return at


def specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_theorem_page_shows_the_picked_models_d_and_bound(run_dir):
    evaluation = runs.read_json(run_dir / runs.METRICS)["evaluation"]
    tc, activity = evaluation["tc"], evaluation["activity"]
    var_mu, sigma2 = np.array(activity["var_mu"]), np.array(activity["mean_sigma2"])
    kept = [j for j in range(len(var_mu)) if j not in tc["dropped"]]
    bound = theory.measured_sampled_tc_bound(var_mu[kept], sigma2[kept])

    at = open_page("Theorem")
    shown = {m.label: m.value for m in at.metric}
    assert shown["d of this model"] == "4"
    assert shown["Active latents"] == f"{len(tc['active'])} of 4"
    assert shown["Bound on its sampled TC"] == f"{bound:.3f} nats"
    table = next(t.value for t in at.table if "E[sigma_j^2]" in t.value.columns)
    np.testing.assert_allclose(table["E[sigma_j^2]"], sigma2[kept])
    np.testing.assert_allclose(table["Var(mu_j)"], var_mu[kept])
    # the chart: the model's two TCs as points, the bound as a line at its value
    (chart,) = [s for s in specs(at) if any(t["name"].startswith("bound on the sampled TC") for t in s["data"])]
    line = next(t for t in chart["data"] if t["name"].startswith("bound on the sampled TC"))
    assert line["x"] == [pytest.approx(bound)] * 2
    dots = {t["name"]: t["x"][0] for t in chart["data"] if t["mode"] == "markers"}
    assert dots == {"mean codes mu(x)": pytest.approx(tc_report.value(tc, "mean", "gaussian")),
                    "sampled codes z": pytest.approx(tc_report.value(tc, "sampled", "gaussian"))}
    words = next(m.value for m in at.markdown if m.value.startswith("Its sampled codes' TC"))
    assert f"{bound:.3f} nats" in words and tc_report.describe(tc, "mean", "gaussian") in words


def test_a_factor_no_latent_carries_gets_no_ratio_and_no_best_latent(run_dir):
    """Codes independent of the toy's third factor: the page says "carried by no latent" and gives no ratio or best latent."""
    evaluation = runs.read_json(run_dir / runs.METRICS)["evaluation"]
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 12, size=(3_000, 3))
    codes = np.column_stack([factors[:, 0] + 0.1 * rng.standard_normal(3_000), factors[:, 1] * 1.0, rng.standard_normal((3_000, 2))])
    for rep in ("mean", "sampled"):
        evaluation[rep]["disintegration"] = disintegration.disintegration_report(codes, factors, factor_names=["left", "right", "bar"])
    runs.write_json(run_dir / runs.METRICS, {**runs.read_json(run_dir / runs.METRICS), "evaluation": evaluation})

    at = open_page("Factor disintegration")
    table = next(d.value for d in at.dataframe if "split ratio (mean)" in d.value.columns).set_index("factor")
    assert table.loc["bar", "split ratio (mean)"] == "carried by no latent"
    assert table.loc["bar", "best latent (mean)"] == "carried by no latent"
    assert table.loc["bar", "latents (mean)"] == 0
    assert table.loc["left", "best latent (mean)"] == "z0" and float(table.loc["left", "split ratio (mean)"]) < 0.2
    assert any("Carried by no latent" in m.value and "bar" in m.value for m in at.markdown)


def test_per_latent_histograms_have_one_panel_per_latent(run_dir):
    at = open_page("Mean vs sampled TC")
    (chart,) = [s for s in specs(at) if any(t.get("name") == "posterior variance sigma_j^2" for t in s["data"])]
    mean_bars = [t for t in chart["data"] if t["name"] == "mean code mu_j"]
    noise_bars = [t for t in chart["data"] if t["name"] == "posterior variance sigma_j^2"]
    assert len(mean_bars) == len(noise_bars) == 4  # one panel (mu_j above sigma_j^2) per latent
    assert len({(t.get("xaxis", "x"), t.get("yaxis", "y")) for t in mean_bars + noise_bars}) == 8  # each on its own axes
    evaluation = runs.read_json(run_dir / runs.METRICS)["evaluation"]
    threshold = evaluation["tc"]["activity"]["threshold"]
    active = [v > threshold for v in evaluation["activity"]["var_mu"]]
    assert [t["meta"]["active"] for t in mean_bars] == active
    titles = [a["text"] for a in chart["layout"]["annotations"] if a["text"].startswith("z")]
    assert [("active" if a else "passive") in t for t, a in zip(titles, active, strict=True)] == [True] * 4
    points = len(make_dataset("toy"))  # the page encodes the toy's whole grid
    assert [array(t["y"]).sum() for t in mean_bars + noise_bars] == [points] * 8  # every histogram counts every point


def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array form {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return np.array(value, dtype=float)
