"""evaluate() and analyse_codes at scale (issue 23): the bounded estimators give today's values where their caps are
not reached, stay within their stated tolerance above them, and the torch path of the TC report's matrix algebra
equals the numpy path. The cost and memory at 100,000 x 64 are measured by bench/evaluate_cost.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mtc_core
from mtc_core.estimators import offline
from mtc_core.estimators.minibatch import LOG_2PI
from mtc_core.estimators.sampling import sampled_codes
from mtc_core.evaluation import scoring, tc_report
from mtc_core.metrics import dci, modularity_explicitness
from mtc_core.metrics.utils import fit_rows
from mtc_core.theory import synthetic_posterior, synthetic_tc


def vae_like(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three factors read by three confident latents, a passive latent holding a shrunken copy of latent 0, noise."""
    rng = np.random.default_rng(seed)
    factors = np.column_stack([rng.integers(0, s, n) for s in (3, 6, 10)])
    mean = 0.05 * rng.standard_normal((n, d))
    logvar = np.full((n, d), -0.05) + 0.02 * rng.standard_normal((n, d))
    mean[:, :3] = factors / [2, 5, 9] + 0.1 * rng.standard_normal((n, 3))
    mean[:, 3] = 0.02 * mean[:, 0] + 0.002 * rng.standard_normal(n)
    logvar[:, :3] = -4.0
    return mean, logvar, factors


def test_below_every_cap_analyse_codes_gives_the_numbers_of_the_code_before_issue_23():
    # computed by the package at git HEAD before the change (one-slab Monte-Carlo, per-cut covariances, no caps)
    mean, logvar, factors = vae_like(1200, 6, 5)
    r = mtc_core.analyse_codes(mean, logvar, factors, dataset_tc_samples=300)
    tc = r["tc"]
    got = [tc["mean"]["gaussian"]["value"], tc["sampled"]["gaussian"]["ci"][1], tc["mixture"]["dataset_mc"]["value"],
           tc["mixture"]["dataset_mc"]["half_n"], r["mean"]["dci"]["disentanglement"], r["sampled"]["dci"]["informativeness_test"],
           r["mean"]["explicitness_score_test"], r["sampled"]["explicitness_score_train"]]
    before = [1.5138565770378138, 0.002614919817665629, 0.007918460581042838, 0.01626180959428666, 0.6674526686645539, 0.545,
              0.9489730558895971, 0.9093924338106368]
    assert got[:2] == before[:2] and got[4:] == before[4:]  # the Gaussian TCs, DCI and explicitness: bit for bit
    assert got[2:4] == pytest.approx(before[2:4], rel=1e-12)  # the mixture: its log-sum-exps merged over blocks
    assert "fit_points" not in r["mean"]["dci"] and "explicitness_fit_points" not in r["mean"]
    assert "of_points" not in tc["mixture"]["dataset_mc"]


def _one_slab_tc_dataset(mu, logvar, num_samples, seed):
    """tc_dataset as it was before issue 23: every component in one [D, chunk, N] slab."""
    rng = np.random.default_rng(seed)
    n, d = mu.shape
    idx = rng.choice(n, size=num_samples, replace=num_samples > n)
    eps = rng.standard_normal((num_samples, d))
    mu_t, logvar_t = torch.as_tensor(mu), torch.as_tensor(logvar)
    z = sampled_codes(mu_t[idx], logvar_t[idx], torch.as_tensor(eps))
    log_q = -0.5 * ((z.T[:, :, None] - mu_t.T[:, None, :]) * torch.exp(-logvar_t / 2).T[:, None, :]) ** 2
    log_q = log_q - 0.5 * (LOG_2PI + logvar_t).T[:, None, :]
    per_sample = torch.logsumexp(log_q.sum(0), 1) - torch.logsumexp(log_q, 2).sum(0) + (d - 1) * math.log(n)
    return float(per_sample.mean())


def test_tc_dataset_in_cache_sized_blocks_equals_the_one_slab_computation(monkeypatch):
    mu, logvar = synthetic_posterior(2500, 5, 0.5, 0.3, rng=1)
    expected = _one_slab_tc_dataset(mu, logvar, 400, seed=7)
    assert offline.tc_dataset(mu, logvar, num_samples=400, rng=7) == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(offline, "MC_COMPONENTS", 700)  # four blocks of components, merged with logaddexp
    assert offline.tc_dataset(mu, logvar, num_samples=400, rng=7) == pytest.approx(expected, rel=1e-12)
    assert offline.tc_dataset(mu, logvar, num_samples=400, rng=7, chunk_size=3) == pytest.approx(expected, rel=1e-12)


def test_at_or_below_the_caps_the_capped_estimators_are_the_uncapped_ones():
    mean, logvar, factors = vae_like(1500, 6, 2)
    train, test = slice(0, 1000), slice(1000, 1500)
    assert fit_rows(factors[train], 1000) is None and fit_rows(factors[train], None) is None
    args = (mean[train], factors[train], mean[test], factors[test])
    assert dci(*args, mode="fast", fit_points=1000) == dci(*args, mode="fast")
    assert modularity_explicitness(*args, fit_points=1000) == modularity_explicitness(*args)
    capped = tc_report._mixture(mean, logvar, 0, 3, 300, points=1500)
    assert capped == tc_report._mixture(mean, logvar, 0, 3, 300, points=None)
    assert scoring.FIT_POINTS == tc_report.MIXTURE_POINTS == 10_000  # evaluate's default 10,000 training points: uncapped


def _perfect_codes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Known answer: each factor read by one latent (DCI disentanglement, completeness and explicitness near 1),
    and two pure-noise latents."""
    rng = np.random.default_rng(seed)
    factors = np.column_stack([rng.integers(0, s, n) for s in (3, 6, 10, 8)])
    codes = np.column_stack([factors / [2, 5, 9, 7] + 0.02 * rng.standard_normal((n, 4)), rng.standard_normal((n, 2))])
    return codes, factors


def test_above_the_cap_dci_and_explicitness_stay_within_tolerance_of_all_points():
    codes, factors = _perfect_codes(9000, 0)
    args = (codes[:6000], factors[:6000], codes[6000:], factors[6000:])
    full, capped = dci(*args, mode="fast"), dci(*args, mode="fast", fit_points=2000)
    assert capped["fit_points"] == 2000 and "fit_points" not in full
    for key in ("disentanglement", "completeness"):
        assert full[key] > 0.95 and capped[key] == pytest.approx(full[key], abs=0.02), key
    assert capped["informativeness_test"] == pytest.approx(full["informativeness_test"], abs=0.01)
    full, capped = modularity_explicitness(*args), modularity_explicitness(*args, fit_points=2000)
    assert capped["explicitness_fit_points"] == 2000 and capped["modularity_score"] == full["modularity_score"]
    for key in ("explicitness_score_train", "explicitness_score_test"):
        assert full[key] > 0.99 and capped[key] == pytest.approx(full[key], abs=0.01), key


def test_fit_rows_is_seeded_and_keeps_a_class_the_subsample_missed():
    factors = np.column_stack([np.zeros(5000, int), np.arange(5000) % 7])
    factors[1234, 0] = 1  # one point of class 1: a uniform subsample of 100 misses it almost surely
    rows = fit_rows(factors, 100, seed=3)
    assert 1234 in rows and len(rows) in (100, 101) and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, fit_rows(factors, 100, seed=3))
    assert not np.array_equal(rows, fit_rows(factors, 100, seed=4))
    with pytest.raises(ValueError, match="fit_points"):
        fit_rows(factors, 1.5)


def test_above_the_cap_the_mixture_estimate_is_a_subsample_within_its_interval_of_all_points():
    # known answer: equicorrelated means (rho 0.5, 6 dims) with posterior variance 0.5; the sampled codes' TC is 0.523
    known = synthetic_tc(6, 0.5, 0.5)["sampled"]
    mu, logvar = synthetic_posterior(8000, 6, 0.5, 0.5, rng=0)
    full = tc_report._mixture(mu, logvar, 0, 4, 800, points=None)
    capped = tc_report._mixture(mu, logvar, 0, 4, 800, points=4000)
    assert (capped["n"], capped["of_points"], full["n"]) == (4000, 8000, 8000) and "of_points" not in full
    assert full["value"] == pytest.approx(known, abs=0.1)
    # the stated tolerance: within the two intervals' half-widths (it reads the mixture of 4,000 of the posteriors)
    half_widths = (full["ci"][1] - full["ci"][0]) / 2 + (capped["ci"][1] - capped["ci"][0]) / 2
    assert abs(capped["value"] - full["value"]) <= half_widths
    assert capped["value"] == pytest.approx(known, abs=0.15)


def _assert_close(got, want, path=""):
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for key in want:
            _assert_close(got[key], want[key], f"{path}/{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and math.isfinite(want):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), path
    else:
        assert got == want or (isinstance(want, float) and math.isnan(want) and math.isnan(got)), path


def test_the_tc_report_on_a_torch_device_equals_the_numpy_report():
    mu, logvar, _ = vae_like(1500, 6, 9)
    numpy_report = tc_report.tc_report(mu, logvar, seed=2, bootstrap=30, knn_batches=2, knn_points=300, dataset_mc_samples=100)
    torch_report = tc_report.tc_report(mu, logvar, seed=2, bootstrap=30, knn_batches=2, knn_points=300, dataset_mc_samples=100,
                                       device="cpu")
    _assert_close(torch_report, numpy_report)
    assert numpy_report["split"]["mean"]["between"]["ci"][1] > 0  # the passive copy: the bootstrap interval is compared


def test_torch_covariance_and_log_det_correlation_equal_numpy(rng):
    x = rng.standard_normal((3, 400, 5)) @ np.triu(np.ones((5, 5)))
    covs = offline.torch_covariance(torch.as_tensor(x))
    for b in range(3):
        np.testing.assert_allclose(covs[b].numpy(), np.cov(x[b], rowvar=False), rtol=1e-12)
        assert float(offline.torch_log_det_correlation(covs[b])) == pytest.approx(offline.log_det_correlation(np.cov(x[b], rowvar=False)),
                                                                                  rel=1e-10)
    assert float(offline.torch_log_det_correlation(covs[:1, :1, :1])[0]) == 0.0  # one dimension: R = 1
    singular = torch.as_tensor(np.cov(np.column_stack([x[0, :, 0], x[0, :, 0]]), rowvar=False))
    assert float(offline.torch_log_det_correlation(singular)) == -math.inf
