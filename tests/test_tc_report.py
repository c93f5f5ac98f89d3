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
        assert value(report, "sampled", "dataset_mc") == pytest.approx(known["sampled"], abs=0.1)
    assert covered["mean"] >= 4 and covered["sampled"] >= 4  # 95% intervals: at most one miss in five


def test_report_is_deterministic_and_drops_constant_latents(rng):
    mu = rng.standard_normal((500, 3))
    mu[:, 1] = 2.0
    logvar = np.full_like(mu, math.log(0.3))
    first = tc_report(mu, logvar, seed=1, knn_batches=2, knn_points=200, dataset_mc_samples=100)
    assert first == tc_report(mu, logvar, seed=1, knn_batches=2, knn_points=200, dataset_mc_samples=100)
    assert first["dropped"] == [1] and first["active"] == [0, 2]
    with pytest.raises(ValueError, match="same shape"):
        tc_report(mu, logvar[:, :2])
    with pytest.raises(ValueError, match="NaN or inf"):
        tc_report(np.full((10, 2), np.nan), np.zeros((10, 2)))


def test_describe_says_interval_absence_and_noise():
    report = {"mean": {"gaussian": {"value": 1.23456, "ci": [1.2, 1.3], "n": 10}, "knn": {"value": -0.02, "ci": [-0.05, 0.01], "n": 10}}}
    assert describe(report, "mean", "gaussian") == "1.235 [1.200, 1.300]"
    assert describe(report, "mean", "knn").startswith("-0.020 [-0.050, 0.010] (below 0: estimator noise")
    assert describe(report, "sampled", "gaussian") == "n/a" and describe(None, "mean", "gaussian") == "n/a"
    report["mean"]["gaussian"]["ci"] = [1.3, 1.4]
    assert describe(report, "mean", "gaussian").endswith("(interval above the estimate: bootstrap bias near 0)")
    assert value(report, "mean", "gaussian") == 1.23456 and value({}, "mean", "knn") is None
    # a hand-edited metrics.json: lists or strings where dicts belong read as absent, not as an error
    for broken in ({"mean": [1, 2]}, {"mean": {"gaussian": "x"}}, {"split": [0]}, {"split": {"mean": "x"}}, [1], "tc"):
        assert value(broken, "mean", "gaussian") is None and value(broken, "mean", "gaussian", "between") is None
        assert describe(broken, "mean", "gaussian") == "n/a"
