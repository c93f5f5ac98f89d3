import json
import math

import numpy as np
import pytest

from mtc_core.estimators import gaussian_tc
from mtc_core.theory import (
    equicorrelated_cov,
    mean_tc,
    monte_carlo_check,
    params_for_gap,
    sampled_tc,
    sampled_tc_bound,
)


@pytest.mark.parametrize("d, rho", [(2, 0.5), (3, -0.4), (5, 0.9), (10, 0.999)])
def test_closed_forms_match_the_gaussian_tc(d, rho):
    cov = equicorrelated_cov(d, rho)
    assert np.allclose(np.diag(cov), 1) and cov[0, 1] == pytest.approx(rho)
    assert mean_tc(d, rho) == pytest.approx(gaussian_tc(cov), rel=1e-10)
    for s in (0.0, 0.3, 2.0):
        assert sampled_tc(d, rho, s) == pytest.approx(gaussian_tc(cov + s * np.eye(d)), rel=1e-10)


def test_mean_tc_unbounded_sampled_tc_bounded():
    d, s = 5, 0.5
    bound = sampled_tc_bound(d, s)
    assert bound == pytest.approx(mean_tc(d, 1 / 1.5))
    rhos = [0.0, 0.5, 0.9, 0.99, 1 - 1e-6, 1 - 1e-12]
    means = [mean_tc(d, r) for r in rhos]
    sampled = [sampled_tc(d, r, s) for r in rhos]
    assert means[0] == 0.0 and bool(np.all(np.diff(means) > 0)) and means[-1] > 50
    assert all(v < bound for v in sampled)
    assert bound - sampled[-1] < 1e-9  # the bound is the rho -> 1 limit
    assert sampled_tc_bound(d, 0.0) == math.inf


@pytest.mark.parametrize("d", [2, 5, 10])
def test_params_for_gap_and_monte_carlo(d):
    rho, s = params_for_gap(d, 10.0, 0.5)
    assert mean_tc(d, rho) >= 10.0 and mean_tc(d, rho) == pytest.approx(10.0, abs=1e-6)
    assert sampled_tc(d, rho, s) < sampled_tc_bound(d, s) <= 0.5
    assert sampled_tc_bound(d, s) == pytest.approx(0.5, abs=1e-6)

    # kNN only for d >= 5 here: for d = 2 a 10-nat TC is one pair's MI, above log(10k) = 9.2, the most a
    # k-NN estimator on 10k points can resolve (it returns ~8.9); d = 2 kNN is checked at moderate TC below.
    out = monte_carlo_check(d, rho, s, n=100_000, rng=0, knn_points=10_000 if d > 2 else None)
    json.dumps(out)

    def close(estimate, exact):
        assert estimate == pytest.approx(exact, abs=max(0.05 * exact, 0.05))

    close(out["mean_tc_gaussian"], out["mean_tc"])
    close(out["sampled_tc_gaussian"], out["sampled_tc"])
    assert out["sampled_tc_gaussian"] < out["bound"] + 0.05 < out["mean_tc_gaussian"]
    if d > 2:
        close(out["mean_tc_knn"], out["mean_tc"])
        close(out["sampled_tc_knn"], out["sampled_tc"])


def test_monte_carlo_knn_at_moderate_tc_in_two_dims():
    rho, s = params_for_gap(2, 2.0, 0.3)
    out = monte_carlo_check(2, rho, s, n=20_000, rng=1)
    assert out["mean_tc_knn"] == pytest.approx(2.0, abs=0.1)
    assert out["sampled_tc_knn"] == pytest.approx(out["sampled_tc"], abs=0.05)
    assert out["knn_points"] == 10_000


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: equicorrelated_cov(1, 0.5), "d must be"),
        (lambda: equicorrelated_cov(2.5, 0.5), "d must be"),
        (lambda: mean_tc(3, 1.0), "rho must lie"),
        (lambda: mean_tc(3, -0.5), "rho must lie"),
        (lambda: mean_tc(3, float("nan")), "rho must lie"),
        (lambda: sampled_tc(3, 0.5, -0.1), "s must be"),
        (lambda: sampled_tc_bound(3, float("inf")), "s must be"),
        (lambda: params_for_gap(3, 0.0, 0.5), "target_mean_tc"),
        (lambda: params_for_gap(3, 5.0, -1.0), "max_sampled_tc"),
        (lambda: monte_carlo_check(3, 0.5, 0.1, n=1), "n must be"),
    ],
)
def test_invalid_parameters_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
