"""Training curves without the app: TensorBoard's smoothing against a hand computation, a history's TCs read by one
estimator (old histories' minibatch "tc_sampled" never), the one-run figure with both codes' TC on one panel, the
overlay of several runs, TC against regularisation strength with one point per run, and run names that say what the
run is."""

from __future__ import annotations

import re

import pytest

from mtc_core.training.history import history_tc, history_tc_estimator
from mtc_core.training.trainer import TrainConfig
from mtc_core.visualize import curves
from services import training_queue

NEW = [{"step": s, "recon": 10.0 - s, "kl": 1.0 + s, "train_loss": 20.0 - s, "tc_gaussian_mean": m, "tc_gaussian_sampled": z,
        "tc_n": 64, "tc_estimator": "gaussian, bias-corrected, clipped at 0"}
       for s, m, z in ((1, 0.9, 0.1), (2, 0.5, 0.3), (3, 0.7, 0.0))]
OLD = [{"step": s, "recon": 5.0, "kl": 2.0, "train_loss": 7.0, "tc_mean": 1.2, "tc_sampled": -1.6} for s in (1, 2)]


def test_ema_is_tensorboards_recurrence_by_hand():
    assert curves.ema([1.0, 3.0, None, 2.0], 0.5) == [1.0, 2.0, None, 2.0]  # 1; .5*1+.5*3; gap; .5*2+.5*2
    assert curves.ema([4.0, 0.0, 8.0], 0.75) == [4.0, 3.0, 4.25]  # .75*4; .75*3 + .25*8
    assert curves.ema([None, 2.0, 4.0], 0.0) == [None, 2.0, 4.0]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        curves.ema([1.0], 1.0)


def test_history_tcs_by_one_estimator_and_old_sampled_never():
    assert [history_tc(r, "sampled") for r in NEW] == [0.1, 0.3, 0.0]
    assert [history_tc(r, "sampled") for r in OLD] == [None, None]  # the minibatch MSS of an old history
    assert [history_tc(r, "mean") for r in OLD] == [1.2, 1.2]
    # a history that names its estimator beside "tc_mean" / "tc_sampled" is read as that estimator's
    assert history_tc({"tc_mean": 0.4, "tc_sampled": 0.2, "tc_estimator": "gaussian"}, "sampled") == 0.2
    assert history_tc({"tc_gaussian_sampled": True, "tc_estimator": "x"}, "sampled") is None
    assert history_tc_estimator(NEW) == "Gaussian, bias-corrected, held-out batch of 64"
    assert "plug-in" in history_tc_estimator(OLD) and "older history" in history_tc_estimator(OLD)


def test_one_run_figure_has_both_codes_on_one_panel_and_the_reports_final_values():
    fig = curves.run_figure(NEW, {"mean": (0.65, "TC report"), "sampled": (0.05, "TC report")}).to_plotly_json()
    by_name = {t["name"]: t for t in fig["data"]}
    mean, sampled = by_name["TC mean codes (Gaussian, bias-corrected, held-out batch of 64)"], by_name[
        "TC sampled codes (Gaussian, bias-corrected, held-out batch of 64)"]
    assert list(mean["y"]) == [0.9, 0.5, 0.7] and list(sampled["y"]) == [0.1, 0.3, 0.0]
    assert mean.get("yaxis", "y") == sampled.get("yaxis", "y") == "y"  # one panel, one axis
    assert list(by_name["TC sampled codes, final (TC report)"]["y"]) == [0.05] and list(by_name["TC sampled codes, final (TC report)"]["x"]) == [3]
    assert not fig["layout"].get("annotations")  # no subplot titles to overlap: the axes are titled
    old = curves.run_figure(OLD).to_plotly_json()
    assert not any(t["name"].startswith("TC sampled") for t in old["data"]) and not curves.has_sampled_tc(OLD)
    assert all(v is None or v >= 0 for t in old["data"] if t["name"].startswith("TC") for v in t["y"])


def test_overlay_draws_one_trace_per_run_smoothed():
    runs = [{"label": "a", "history": NEW}, {"label": "b", "history": OLD}]
    fig = curves.overlay(runs, "TC mean codes", smoothing=0.5).to_plotly_json()
    assert [t["name"] for t in fig["data"]] == ["a", "b"]
    assert list(fig["data"][0]["y"]) == [0.9, 0.7, 0.7] and list(fig["data"][0]["customdata"]) == [0.9, 0.5, 0.7]
    both = curves.overlay(runs, curves.BOTH_TCS).to_plotly_json()
    assert [t["name"] for t in both["data"]] == ["a, mean codes", "a, sampled codes", "b, mean codes"]  # b: no sampled TC
    assert both["data"][1]["line"]["dash"] == "dot"
    assert curves.overlay(runs, "KL", log_y=True).to_plotly_json()["layout"]["yaxis"]["type"] == "log"
    with pytest.raises(ValueError, match="unknown quantity"):
        curves.overlay(runs, "elbo")


def test_strength_figure_has_one_point_per_run():
    points = [{"family": "beta-TCVAE", "field": "beta", "strength": b, "seed": s, "run": f"t{b}-{s}", "tc_mean": 1.0 + s, "tc_sampled": 0.1}
              for b in (2, 6) for s in (0, 1)]
    points += [{"family": "VAE", "field": None, "strength": None, "seed": 0, "run": "vae", "tc_mean": 0.5, "tc_sampled": 0.4},
               {"family": "RTC-VAE", "field": "lambda_t", "strength": 0.0, "seed": 0, "run": "rtc0", "tc_mean": 0.1, "tc_sampled": 0.1}]
    fig = curves.strength_figure(points).to_plotly_json()
    markers = [t for t in fig["data"] if t["mode"] == "markers"]
    for axis, code in (("x", "tc_sampled"), ("x2", "tc_mean")):
        here = [t for t in markers if t.get("xaxis", "x") == axis]
        assert sorted(x for t in here for x in t["x"]) == [2, 2, 6, 6]  # lambda_t 0 has no place on a log axis
        assert sorted(y for t in here for y in t["y"]) == sorted(p[code] for p in points[:4])
    vae = [t for t in fig["data"] if t["mode"] == "lines"]
    assert [list(t["y"]) for t in vae] == [[0.4, 0.4], [0.5, 0.5]] and fig["layout"]["xaxis"]["type"] == "log"


def test_run_names_carry_model_strength_dataset_and_seed(tmp_path):
    config = TrainConfig(model="beta_tcvae", model_params={"beta": 6.0}, dataset={"name": "toy"}, seed=3, steps=1)
    assert training_queue.run_name(config) == "beta_tcvae-beta=6-toy-seed=3"
    default = TrainConfig(model="factor_vae", model_params={}, dataset={"name": "squares"}, seed=0, steps=1)
    assert re.fullmatch(r"factor_vae-gamma=\d+(\.\d+)?-squares-seed=0", training_queue.run_name(default))
    assert training_queue.run_name(TrainConfig(model="vae", dataset={"name": "toy"}, steps=1)) == "vae-toy-seed=0"
    first, second = (training_queue.named_run_dir(tmp_path, "vae-toy-seed=0") for _ in range(2))
    assert first != second and first.is_dir() and second.is_dir()
    assert re.fullmatch(r"vae-toy-seed=0-\d{6}", first.name) and second.name.startswith(first.name[:-6])
