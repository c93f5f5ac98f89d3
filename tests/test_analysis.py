"""analyse_codes: evaluate's report without the encoder. Codes exported from evaluate's own points reproduce its
numbers exactly; known answers for the split, the sampled codes and the bound on the sampled codes' TC."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import mtc_core
from mtc_core import estimators, runs, theory
from mtc_core.cli.commands import main
from mtc_core.data import make_dataset
from mtc_core.evaluation import tc_report
from mtc_core.evaluation.codes_analysis import analyse_codes, analyse_validated_codes, code_points, summary_table
from mtc_core.evaluation.codes_file import codes_from_points, load_codes, save_codes, validate
from mtc_core.evaluation.scoring import encoded_points
from mtc_core.evaluation.tc_report import describe
from mtc_core.metrics import disintegration

ZOO = Path(__file__).resolve().parent.parent / "pretrained"
INTERVENTIONS = ("factor_vae", "beta_vae")


def without_interventions(rep: dict) -> dict:
    return {k: v for k, v in rep.items() if k not in INTERVENTIONS}


def assert_same_as_evaluate(analysed: dict, evaluated: dict) -> None:
    assert analysed["tc"] == evaluated["tc"]
    assert analysed["activity"] == evaluated["activity"]
    for rep in ("mean", "sampled"):
        assert without_interventions(analysed[rep]) == without_interventions(evaluated[rep])
        assert all(analysed[rep][name]["needs_encoder"] for name in INTERVENTIONS)
    assert "recon" not in analysed


def test_a_codes_file_of_evaluates_points_reproduces_evaluate_exactly(tiny_run, tmp_path):
    model, config = runs.load_run(tiny_run)
    dataset = make_dataset(config["dataset"])
    sizes = {"num_train": 300, "num_test": 150, "seed": 3}
    evaluated = mtc_core.evaluate(model, dataset, **sizes, intervention_points=4, intervention_batch=8, variance_points=50,
                                  dataset_tc_samples=200)
    path = save_codes(tmp_path / "codes.npz", codes_from_points(*encoded_points(model, dataset, **sizes), dataset.factor_names))
    analysed = analyse_validated_codes(load_codes(path), seed=3, dataset_tc_samples=200)
    assert_same_as_evaluate(analysed, evaluated)
    assert (analysed["settings"]["num_train"], analysed["settings"]["num_test"], analysed["settings"]["split"]) == (300, 150, "file")


@pytest.mark.slow
def test_a_shipped_zoo_model_s_codes_reproduce_its_stored_metrics(tmp_path):
    """The promise of docs/design.md, "Codes files", on a shipped model: its own encodings, through evaluate-codes, give its stored numbers."""
    run = ZOO / "toy-vae"
    stored = runs.read_json(run / runs.METRICS)["evaluation"]
    settings = stored["settings"]
    model, config = runs.load_run(run)
    dataset = make_dataset(config["dataset"])
    points = encoded_points(model, dataset, num_train=settings["num_train"], num_test=settings["num_test"], seed=settings["seed"])
    path = save_codes(tmp_path / "toy-vae.npz", codes_from_points(*points, dataset.factor_names))
    assert main(["evaluate-codes", str(path), "--seed", str(settings["seed"])]) == 0
    analysed = runs.read_json(tmp_path / "toy-vae.analysis.json")
    # the stored numbers were computed on another machine: another CPU's float32 kernels (AVX2 there, AVX-512 here) move
    # the codes' last bits and the estimates at ~1e-4; on one machine the path is exact (the test above)
    assert_close(analysed["tc"], stored["tc"])
    assert_close(analysed["activity"], stored["activity"])
    for rep in ("mean", "sampled"):
        got, want = without_interventions(analysed[rep]), without_interventions(stored[rep])
        got_split, want_split = got.pop("disintegration"), want.pop("disintegration")
        assert_close(got, want)
        # the zoo's evaluations predate the disintegration noise floor (docs/design.md, "Factor disintegration"): the
        # MI matrix is the same, and read with tau alone it gives the stored counts, ratios and best latents
        assert_close(got_split["mi_matrix"], want_split["mi_matrix"])
        m = np.array(got_split["mi_matrix"])
        assert disintegration.latents_per_factor(m, want_split["tau"]).tolist() == want_split["latents_per_factor"]
        assert_close(disintegration.split_ratio(m).tolist(), want_split["split_ratio"])
        assert m.argmax(1).tolist() == want_split["best_latent"]
        assert len(got_split["noise_floor"]) == m.shape[0] and "noise_floor" not in want_split


def assert_close(got, want, where: str = "", rel: float = 1e-3, abs_: float = 1e-5) -> None:
    """The same nested structure, with numbers equal to `rel` (or `abs_` near 0) and everything else equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}", rel, abs_)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, got, want)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{k}]", rel, abs_)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=rel, abs=abs_, nan_ok=True), where
    else:
        assert got == want, where


def test_without_factors_every_point_is_scored_without_the_factor_metrics(rng):
    mean = rng.normal(size=(400, 3))
    result = analyse_codes(mean, np.full((400, 3), -1.0), dataset_tc_samples=100)
    assert result["tc"]["settings"]["n"] == 400 and result["settings"]["split"] == "none"
    assert "mig" not in result["mean"] and "gaussian_wasserstein_correlation" in result["mean"]
    assert result["mean"]["factor_vae"]["needs_encoder"] and result["factors"] == {"names": [], "dropped": []}


def test_the_split_and_the_sampled_codes_follow_the_seed(rng):
    n = 90
    codes = validate(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), factors=rng.integers(0, 3, (n, 1)))
    train, test = code_points(codes, seed=5)
    again, _ = code_points(codes, seed=5)
    other, _ = code_points(codes, seed=6)
    assert (len(train["mean"]), len(test["mean"])) == (60, 30)
    rows = {tuple(r) for r in np.concatenate([train["mean"], test["mean"]])}
    assert len(rows) == n  # disjoint and covering
    np.testing.assert_array_equal(train["sampled"], again["sampled"])
    assert not np.array_equal(train["mean"], other["mean"])
    row_of = {float(m): i for i, m in enumerate(codes.mean[:, 0])}
    rows = [row_of[float(m)] for m in train["mean"][:, 0]]
    eps = np.random.default_rng([5, 1]).standard_normal((n, 2))  # drawn for every point, then split
    np.testing.assert_array_equal(train["sampled"], (codes.mean + np.exp(codes.logvar / 2) * eps)[rows])


def test_a_passive_copy_has_high_mean_tc_and_sampled_tc_under_the_bound(rng):
    """A passive latent whose tiny mean copies an active one; its samples are almost pure noise (docs/design.md,
    "Why mean and sampled codes differ")."""
    n = 3000
    active = rng.normal(size=(n, 2))
    mean = np.column_stack([active, 1e-3 * active[:, 0] + 1e-5 * rng.normal(size=n)])
    logvar = np.column_stack([np.full((n, 2), np.log(0.01)), np.zeros(n)])
    result = analyse_codes(mean, logvar, dataset_tc_samples=100, seed=1)
    tc, bound = result["tc"], result["sampled_tc_bound"]
    assert tc["passive"] == [2] and tc["active"] == [0, 1]
    mean_tc = tc_report.value(tc, "mean", "gaussian")
    sampled_tc = tc_report.value(tc, "sampled", "gaussian")
    assert mean_tc > 3 and sampled_tc < 0.01
    # exact: Cov(z) = Cov(mu) + diag(E sigma^2); its Gaussian TC lies under the bound for the measured variances
    exact = estimators.gaussian_tc(estimators.sampled_cov(mean, logvar))
    assert exact <= bound["all"]["value"] and bound["passive"]["value"] == 0.0  # one passive latent has no TC
    assert bound["s"][2] == pytest.approx(1 / np.var(mean[:, 2], ddof=1), rel=1e-9)


def test_the_bound_is_reached_by_rank_one_means_with_equal_noise():
    """At common noise-to-signal s, B(d, s) is the largest Gaussian TC any correlation of the means allows (rho -> 1)."""
    d, s = 5, 0.3
    assert theory.measured_sampled_tc_bound(np.ones(d), np.full(d, s)) == theory.sampled_tc_bound(d, s)
    near_rank_one = theory.equicorrelated_cov(d, 1 - 1e-10) + s * np.eye(d)
    assert estimators.gaussian_tc(near_rank_one) == pytest.approx(theory.sampled_tc_bound(d, s), abs=1e-8)


def test_the_bound_is_reached_by_a_copy_next_to_a_precise_latent():
    """z_1 precise, z_2 a noisy copy: TC = I(z_1; z_2) -> 1/2 log(1 + 1/s_2), the chain-rule bound."""
    s = np.array([1e-9, 0.5])
    cov = np.ones((2, 2)) + np.diag(s)
    assert theory.measured_sampled_tc_bound(np.ones(2), s) == pytest.approx(0.5 * math.log(1 + 1 / 0.5), rel=1e-12)
    assert estimators.gaussian_tc(cov) == pytest.approx(0.5 * math.log(1 + 1 / 0.5), abs=1e-8)


def test_the_bound_holds_for_random_covariances(rng):
    for _ in range(300):
        d = int(rng.integers(2, 8))
        a = rng.normal(size=(d, d)) * rng.uniform(0.01, 3, size=d)
        cov_mu = a @ a.T / d + 1e-9 * np.eye(d)
        sigma2 = rng.uniform(0.001, 2, size=d)
        exact = estimators.gaussian_tc(cov_mu + np.diag(sigma2))
        assert exact <= theory.measured_sampled_tc_bound(np.diag(cov_mu), sigma2) + 1e-9


def test_bound_input_errors():
    with pytest.raises(ValueError, match="finite and > 0"):
        theory.measured_sampled_tc_bound([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="vectors of one length"):
        theory.measured_sampled_tc_bound([1.0, 1.0], [1.0])


def test_analyse_codes_refuses_mismatched_arrays(rng):
    with pytest.raises(ValueError, match="logvar has shape"):
        analyse_codes(rng.normal(size=(10, 3)), rng.normal(size=(10, 2)))


def test_summary_table_shows_the_reports_numbers(rng):
    result = analyse_codes(rng.normal(size=(300, 3)), np.full((300, 3), -2.0), factors=rng.integers(0, 4, (300, 2)),
                           dataset_tc_samples=100)
    table = summary_table(result)
    assert describe(result["tc"], "mean", "gaussian") in table
    assert f"{result['mean']['mig']:.3f}" in table and "needs the encoder" in table


def test_cli_evaluate_codes_writes_the_full_result_and_prints_a_summary(tmp_path, rng, capsys):
    n = 120
    codes = validate(rng.normal(size=(n, 3)), rng.normal(-1, 0.1, (n, 3)), factors=rng.integers(0, 3, (n, 2)))
    path = save_codes(tmp_path / "mine.npz", codes)
    out = tmp_path / "result.json"
    assert main(["evaluate-codes", str(path), "--out", str(out), "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(analyse_validated_codes(codes, seed=2) | {"seconds": result["seconds"]}))
    assert "120 points x 3 latents" in printed and "(random split)" in printed
    assert describe(result["tc"], "sampled", "gaussian") in printed


def test_cli_evaluate_codes_refuses_a_hostile_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "evil.npz"
    objects = np.empty(1, dtype=object)
    objects[0] = {"x": 1}
    np.savez(path, mean=np.zeros((4, 2)), logvar=np.zeros((4, 2)), factor_names=objects)
    assert main(["evaluate-codes", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "factor_names holds Python objects" in err and not (tmp_path / "evil.analysis.json").exists()


def test_cli_evaluate_prints_a_summary_and_stores_everything(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--num-train", "200", "--num-test", "100", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    stored = runs.read_json(run / runs.METRICS)["evaluation"]
    assert describe(stored["tc"], "mean", "gaussian") in printed and f"{stored['mean']['mig']:.3f}" in printed
    assert f"{stored['recon']:.2f}" in printed and "full results:" in printed and len(printed.splitlines()) < 20


def test_progress_reports_each_stage_with_the_results_so_far(rng):
    n = 300
    factors = np.column_stack([rng.integers(0, 3, n), rng.integers(0, 4, n)])
    mean = np.column_stack([factors + 0.1 * rng.normal(size=(n, 2)), rng.normal(size=n)])
    logvar = np.full((n, 3), -2.0)
    seen: list[tuple[str, dict]] = []
    result = analyse_codes(mean, logvar, factors, dataset_tc_samples=50, progress=lambda stage, partial: seen.append((stage, partial)))
    groups = ("unsupervised", "mig", "sap", "dci", "modularity_explicitness", "disintegration")
    # the TCs first: they are what a reader waits for, the metrics take most of the time
    assert [s for s, _ in seen] == ["tc", "activity"] + [f"{rep}: {g}" for rep in ("mean", "sampled") for g in groups]
    partial = dict(seen)
    assert partial["mean: mig"]["mean"]["mig"] == result["mean"]["mig"] and "sap" not in partial["mean: mig"]["mean"]
    assert "sampled" not in partial["mean: disintegration"] and partial["mean: disintegration"]["tc"] == result["tc"]
    assert partial["tc"]["tc"] == result["tc"] and "mean" not in partial["tc"] and partial["activity"]["activity"] == result["activity"]
    assert list(result)[:4] == ["mean", "sampled", "tc", "activity"]  # stored files keep their key order
    json.dumps(partial["activity"], allow_nan=False)  # JSON-safe copies: a page or the CLI can show them as they come
    without = analyse_codes(mean, logvar, factors, dataset_tc_samples=50)
    assert {k: v for k, v in without.items() if k != "seconds"} == {k: v for k, v in result.items() if k != "seconds"}
