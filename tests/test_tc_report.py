import math

import numpy as np
import pytest

from mtc_core import theory
from mtc_core.estimators import gaussian_tc
from mtc_core.evaluation.tc_report import describe, gaussian_tc_split, tc_report, value
from mtc_core.theory import passive_posterior, passive_tc, synthetic_posterior, synthetic_tc


def test_split_adds_up_exactly_and_matches_the_block_formulas(rng):
    cov = theory.equicorrelated_cov(5, 0.4)
    cov[3:, :3] *= 0.5
    cov[:3, 3:] *= 0.5
    codes = rng.multivariate_normal(np.zeros(5), cov, size=4000) * [1, 2, 3, 0.01, 0.02]  # scale-invariant
    active = np.array([True, True, True, False, False])
    split = gaussian_tc_split(codes, active)
    assert split["all"] == pytest.approx(gaussian_tc(np.cov(codes.T)), rel=1e-12)
    assert split["active"] + split["passive"] + split["between"] == pytest.approx(split["all"], rel=1e-12)
    assert split["active"] == pytest.approx(gaussian_tc(np.cov(codes[:, :3].T)), rel=1e-12)
    assert split["passive"] == pytest.approx(gaussian_tc(np.cov(codes[:, 3:].T)), rel=1e-12)
    # against the population: blocks of the equicorrelated matrix, active-passive correlation halved
    r = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    between = 0.5 * (np.linalg.slogdet(r[:3, :3])[1] + np.linalg.slogdet(r[3:, 3:])[1] - np.linalg.slogdet(r)[1])
    assert split["between"] == pytest.approx(between, abs=0.02)
    assert gaussian_tc_split(codes, np.ones(5, bool))["between"] == 0.0  # an empty side shares nothing


def test_split_puts_a_passive_copy_between_active_and_passive():
    # one passive latent copies active latent 0 (corr 0.95): all the means' TC is I(A; P), the masking of
    # docs/design.md, "Why mean and sampled codes differ"
    mu, logvar = passive_posterior(6000, 5, 0.2, rng=0)
    report = tc_report(mu, logvar, seed=100, bootstrap=100, knn_batches=3, knn_points=1000, dataset_mc_samples=600)
    known = passive_tc(5, 0.2)
    assert report["active"] == [0, 1, 2, 3] and report["passive"] == [4]
    assert value(report, "mean", "gaussian", "between") == pytest.approx(known["mean"], abs=0.03)  # 1.164
    assert value(report, "mean", "gaussian", "active") < 0.01 and value(report, "mean", "gaussian", "passive") == 0.0
    assert value(report, "sampled", "gaussian") == pytest.approx(known["sampled"], abs=0.01)  # 0.0019
    # kNN sees the same copy in the means and almost nothing in the samples
    assert value(report, "mean", "knn") == pytest.approx(known["mean"], abs=0.15)
    assert value(report, "sampled", "knn") < 0.1


def test_report_on_known_answers_with_intervals_that_cover_them():
    # equicorrelated means, rho 0.5 in 6 dims, posterior variance 0.5: closed forms 1.46 (mean), 0.53 (sampled)
    known = synthetic_tc(6, 0.5, 0.5)
    covered = {"mean": 0, "sampled": 0}
    # the report's seed differs from the data's: the same seed would draw sampling noise equal to the means' normals
    for seed in range(5):
        mu, logvar = synthetic_posterior(4000, 6, 0.5, 0.5, rng=seed)
        report = tc_report(mu, logvar, seed=100 + seed, bootstrap=200, knn_batches=4, knn_points=1000, dataset_mc_samples=400)
        for code in covered:
            entry = report[code]["gaussian"]
            assert entry["n"] == 4000 and entry["ci"][0] < entry["value"] < entry["ci"][1]
            covered[code] += entry["ci"][0] <= known[code] <= entry["ci"][1]
            assert value(report, code, "knn") == pytest.approx(known[code], abs=0.15)
        assert report["mean"]["knn"]["n"] == 1000 and report["mean"]["knn"]["batches"] == 4
        assert "dataset_mc" not in report["sampled"]  # an upper estimate, kept apart from the peer estimates
        assert value(report, "mixture", "dataset_mc") == pytest.approx(known["sampled"], abs=0.1)
    assert covered["mean"] >= 4 and covered["sampled"] >= 4  # 95% intervals: at most one miss in five


def test_report_is_deterministic_and_drops_constant_latents(rng):
    mu = rng.standard_normal((500, 3))
    mu[:, 1] = 2.0
    logvar = np.full_like(mu, math.log(0.3))
    first = tc_report(mu, logvar, seed=1, knn_batches=2, knn_points=200, dataset_mc_samples=100)
    assert first == tc_report(mu, logvar, seed=1, knn_batches=2, knn_points=200, dataset_mc_samples=100)
    assert first["settings"]["active_threshold"] == 0.01  # two alike latents: no gap to cut at, the fixed cut
    assert first["dropped"] == [1] and first["active"] == [0, 2]
    with pytest.raises(ValueError, match="same shape"):
        tc_report(mu, logvar[:, :2])
    with pytest.raises(ValueError, match="NaN or inf"):
        tc_report(np.full((10, 2), np.nan), np.zeros((10, 2)))


def test_describe_says_interval_absence_and_noise():
    # a report of the first version (before the bias correction and the clipping at 0) still reads honestly
    report = {"mean": {"gaussian": {"value": 1.23456, "ci": [1.2, 1.3], "n": 10}, "knn": {"value": -0.02, "ci": [-0.05, 0.01], "n": 10}}}
    assert describe(report, "mean", "gaussian") == "1.235 [1.200, 1.300]"
    assert describe(report, "mean", "knn").startswith("-0.020 [-0.050, 0.010] (below 0: estimator noise")
    report["mean"]["knn"] = {"value": -0.0001, "ci": [-0.0003, 0.0004], "n": 10}
    assert "-0.000" not in describe(report, "mean", "knn")
    assert describe(report, "sampled", "gaussian") == "n/a" and describe(None, "mean", "gaussian") == "n/a"
    report["mean"]["gaussian"]["ci"] = [1.3, 1.4]
    assert describe(report, "mean", "gaussian").endswith("(interval above the estimate: bootstrap bias near 0)")
    assert value(report, "mean", "gaussian") == 1.23456 and value({}, "mean", "knn") is None
    # a hand-edited metrics.json: lists or strings where dicts belong read as absent, not as an error
    for broken in ({"mean": [1, 2]}, {"mean": {"gaussian": "x"}}, {"split": [0]}, {"split": {"mean": "x"}}, [1], "tc"):
        assert value(broken, "mean", "gaussian") is None and value(broken, "mean", "gaussian", "between") is None
        assert describe(broken, "mean", "gaussian") == "n/a"


def _equicorrelated_codes(n: int, d: int, rho: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ np.linalg.cholesky(theory.equicorrelated_cov(d, rho)).T


@pytest.mark.parametrize("n", [2000, 10_000])
@pytest.mark.parametrize("rho", [0.0, 0.2])
def test_gaussian_intervals_cover_the_truth_at_zero_and_above(n, rho):
    """Known answers, 40 seeds: the bias-corrected Gaussian TC's 95% intervals hold their estimate and cover the
    closed-form TC in at least 90% of cases, also where it is 0 (the plug-in estimate's bias D(D-1)/4N once excluded
    it there in every case, as would a percentile bootstrap of it). Values and lower ends never go below 0."""
    d, covered = 10, 0
    truth = theory.mean_tc(d, rho) if rho else 0.0
    for seed in range(40):
        codes = _equicorrelated_codes(n, d, rho, seed)
        report = tc_report(codes, np.zeros_like(codes), seed=1000 + seed, bootstrap=60, knn_batches=0, dataset_mc_samples=0)
        entry = report["mean"]["gaussian"]
        assert entry["ci"][0] <= entry["value"] <= entry["ci"][1]
        assert entry["value"] >= 0 and entry["ci"][0] >= 0 and entry["value"] == pytest.approx(max(entry["plugin"] - entry["bias"], 0))
        covered += entry["ci"][0] <= truth <= entry["ci"][1]
    assert covered >= 36, f"{covered} of 40 intervals cover TC = {truth:.4f}"


def test_the_bias_correction_is_the_plug_in_estimates_mean_error():
    """E[plug-in] - TC = estimators.gaussian_tc_bias(n, d), at TC = 0 and above, within the mean's standard error
    (200 seeds); without the correction the mean is off by many standard errors."""
    from mtc_core.estimators import gaussian_tc_bias

    n, d = 500, 8
    for rho in (0.0, 0.3):
        truth = theory.mean_tc(d, rho) if rho else 0.0
        plugin = [gaussian_tc(np.cov(_equicorrelated_codes(n, d, rho, seed).T)) for seed in range(200)]
        error = np.mean(plugin) - truth
        se = np.std(plugin, ddof=1) / math.sqrt(len(plugin))
        assert abs(error - gaussian_tc_bias(n, d)) < 3 * se
        assert error > 3 * se  # the bias the correction removes is there
    assert gaussian_tc_bias(10_000, 10) == pytest.approx(10 * 9 / (4 * 10_000), rel=0.01)


def test_the_split_is_corrected_part_by_part_and_still_adds_up(rng):
    codes = rng.standard_normal((3000, 6))  # independent: every part's truth is 0
    report = tc_report(codes, np.zeros_like(codes), seed=3, bootstrap=50, knn_batches=0, dataset_mc_samples=0, active_threshold=0.5)
    parts = report["split"]["mean"]
    plugin = {part: parts[part]["plugin"] for part in parts}
    assert plugin["active"] + plugin["passive"] + plugin["between"] == pytest.approx(plugin["all"], rel=1e-12)
    bias = {part: parts[part]["bias"] for part in parts}
    assert bias["active"] + bias["passive"] + bias["between"] == pytest.approx(bias["all"], rel=1e-12)
    for entry in parts.values():
        assert entry["value"] < 0.01 and entry["ci"][0] == 0.0 and entry["value"] <= entry["ci"][1]


def test_the_activity_curve_reports_the_split_over_cuts_and_where_the_active_set_is_stable(rng):
    # 3 informative latents (Var ~1), one at Var 0.02 copying latent 0, one passive at 1e-5: the "among active" TC
    # depends on whether the 0.02 latent counts as active, which the curve shows
    base = rng.standard_normal((4000, 3))
    mu = np.column_stack([base, 0.14 * base[:, 0] + 0.01 * rng.standard_normal(4000), 0.003 * rng.standard_normal(4000)])
    report = tc_report(mu, np.zeros_like(mu), seed=0, bootstrap=20, knn_batches=0, dataset_mc_samples=0)
    activity = report["activity"]
    curve, t = activity["curve"], activity["threshold"]
    assert t == report["settings"]["active_threshold"] and t in curve["thresholds"] and 1e-3 <= t <= 0.1
    assert len(activity["var_mu"]) == 5 and curve["thresholds"] == sorted(curve["thresholds"])
    low, high = curve["thresholds"].index(0.001), len(curve["thresholds"]) - 1
    assert curve["active_count"][low] == 4 and curve["active_count"][high] == 3
    assert curve["mean"]["active"][low] > 1.0 and curve["mean"]["active"][high] < 0.01  # the copy counted as active, or not
    assert curve["mean"]["between"][high] > 1.0
    lo, hi = activity["stable"]
    assert lo <= t <= hi and (lo > 0.001 or hi < 0.1)  # the set moves somewhere in the range
    i = curve["thresholds"].index(t)
    assert curve["mean"]["all"][i] == pytest.approx(report["split"]["mean"]["all"]["value"])


def test_the_mixture_estimate_is_kept_apart_and_labelled(rng):
    from mtc_core.evaluation.tc_report import mixture_note

    mu = rng.standard_normal((600, 3))
    report = tc_report(mu, np.full_like(mu, -6.0), seed=0, bootstrap=10, knn_batches=2, knn_points=200, dataset_mc_samples=100)
    assert "dataset_mc" not in report["sampled"] and report["mixture"]["dataset_mc"]["kind"].startswith("upper estimate")
    assert mixture_note(report).startswith("Upper estimate, not a peer") and mixture_note({"mean": {}}) is None
