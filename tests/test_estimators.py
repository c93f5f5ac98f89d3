import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.special import logsumexp

from mtc_core.estimators import (
    drop_constant_dims,
    gaussian_tc,
    gaussian_wasserstein_correlation,
    mean_tc_gaussian,
    mean_tc_kde,
    sampled_cov,
    tc_dataset,
    tc_knn,
    tc_mss,
    tc_mws,
)
from mtc_core.estimators.minibatch import gaussian_tc_null_mean
from mtc_core.theory import equicorrelated_cov


def random_corr(rng, d, strength=3.0):
    """A random correlation matrix; smaller `strength` means stronger dependence."""
    a = rng.standard_normal((d, d))
    cov = a @ a.T + strength * np.eye(d)
    s = np.sqrt(np.diag(cov))
    return cov / np.outer(s, s)


def gaussian_sample(rng, cov, n):
    return rng.standard_normal((n, len(cov))) @ np.linalg.cholesky(cov).T


# ------------------------------------------------------------------ gaussian_tc, Wasserstein, sampled_cov


def test_gaussian_tc_is_minus_half_log_det_corr_and_scale_invariant(rng):
    for d in (2, 4, 7):
        a = rng.standard_normal((d, d))
        cov = a @ a.T + 0.1 * np.eye(d)
        s = np.sqrt(np.diag(cov))
        expected = -0.5 * np.log(np.linalg.det(cov / np.outer(s, s)))
        assert gaussian_tc(cov) == pytest.approx(expected, abs=1e-10)
        scale = np.diag(rng.uniform(0.01, 100, d))
        assert gaussian_tc(scale @ cov @ scale) == pytest.approx(expected, abs=1e-10)
    assert gaussian_tc(np.diag([0.5, 3.0, 1e-8])) == 0.0
    assert gaussian_tc([[2.0]]) == 0.0
    assert gaussian_tc(np.ones((2, 2))) == math.inf  # an exact copy has infinite TC


def test_gaussian_tc_rejects_bad_covariances():
    with pytest.raises(ValueError, match="dimension 2 has zero variance"):
        gaussian_tc(np.diag([1.0, 2.0, 0.0]))
    for bad, message in [
        (np.ones((2, 3)), "square"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
        (np.array([[1.0, 0.5], [0.1, 1.0]]), "symmetric"),
        (np.zeros((0, 0)), "square"),
    ]:
        with pytest.raises(ValueError, match=message):
            gaussian_tc(bad)


def test_drop_constant_dims_reports_indices(rng):
    codes = rng.standard_normal((50, 4))
    codes[:, 1] = 3.0
    codes[:, 3] = 0.0
    kept, dropped = drop_constant_dims(codes)
    assert dropped == [1, 3]
    np.testing.assert_array_equal(kept, codes[:, [0, 2]])
    with pytest.raises(ValueError, match="dimension 1 has zero variance"):
        gaussian_tc(np.cov(codes, rowvar=False))
    assert gaussian_tc(np.cov(kept, rowvar=False)) == pytest.approx(gaussian_tc(np.cov(codes[:, [0, 2]], rowvar=False)))


def test_wasserstein_correlation_matches_the_symmetric_form(rng):
    # W2^2(N(0, C), N(0, D)) = tr C + tr D - 2 tr (D^1/2 C D^1/2)^1/2 with D = diag C; disentanglement_lib's
    # non-symmetric sqrtm(C * diag(C)[:, None]) = sqrtm(D C) has the same trace.
    a = rng.standard_normal((4, 4))
    cov = a @ a.T + 0.5 * np.eye(4)
    half = np.diag(np.sqrt(np.diag(cov)))
    expected = 2 * np.trace(cov) - 2 * np.sqrt(np.linalg.eigvalsh(half @ cov @ half)).sum()
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(expected, rel=1e-8)
    peer = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))).real
    assert gaussian_wasserstein_correlation(cov, normalize=True) == pytest.approx(peer / np.trace(cov), rel=1e-10)
    assert gaussian_wasserstein_correlation(np.diag([1.0, 4.0])) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="zero trace"):
        gaussian_wasserstein_correlation(np.zeros((2, 2)), normalize=True)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_wasserstein_correlation(np.full((2, 2), np.inf))


def test_sampled_cov_is_the_law_of_total_covariance(rng):
    mu = gaussian_sample(rng, equicorrelated_cov(3, 0.6), 20_000)
    logvar = rng.normal(-1.0, 0.5, mu.shape)
    cov = sampled_cov(mu, logvar)
    np.testing.assert_allclose(cov, np.cov(mu, rowvar=False) + np.diag(np.exp(logvar).mean(0)), rtol=1e-12)
    z = mu + np.exp(logvar / 2) * rng.standard_normal(mu.shape)
    np.testing.assert_allclose(cov, np.cov(z, rowvar=False), atol=0.03)
    with pytest.raises(ValueError, match="same shape"):
        sampled_cov(mu, logvar[:, :2])
    with pytest.raises(ValueError, match="at least 2 points"):
        sampled_cov(mu[:1], logvar[:1])


# ------------------------------------------------------------------ minibatch estimators (torch)


def peer_total_correlation(z, mu, logvar):
    """disentanglement_lib methods/unsupervised/vae.py `total_correlation`, in numpy."""
    log_qz_prob = -0.5 * (np.log(2 * np.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 * np.exp(-logvar[None]))
    log_qz_product = logsumexp(log_qz_prob, axis=1).sum(1)
    log_qz = logsumexp(log_qz_prob.sum(2), axis=1)
    return np.mean(log_qz - log_qz_product)


def test_mws_is_disentanglement_lib_plus_the_dropped_constant(rng):
    b, d = 64, 4
    mu, logvar = rng.standard_normal((b, d)), rng.normal(-1, 0.3, (b, d))
    z = mu + np.exp(logvar / 2) * rng.standard_normal((b, d))
    n = 10_000
    got = tc_mws(*(torch.tensor(v) for v in (z, mu, logvar)), dataset_size=n).item()
    assert got == pytest.approx(peer_total_correlation(z, mu, logvar) + (d - 1) * math.log(b * n), abs=1e-10)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_minibatch_estimators_match_the_closed_form(rng, rho):
    # Means ~ N(0, R_rho) and a constant posterior variance s: the aggregate posterior is N(0, R_rho + s I)
    # exactly, so its TC is Gaussian. With B = N = 2000 both estimators reduce (almost) to the batch
    # mixture, a kernel estimate with bandwidth sqrt(s) that counts each point's own kernel: measured bias
    # +0.012, sd 0.007 over seeds (D = 3, s = 0.25), so 0.04 is bias + 4 sd. Chen et al.'s 1 / (N B) MWS
    # weights sum to 1 / N, which puts MWS exactly (D - 1) log N above that (15 nats here).
    d, s, b = 3, 0.25, 2000
    expected = gaussian_tc(equicorrelated_cov(d, rho) + s * np.eye(d))
    mu = gaussian_sample(rng, equicorrelated_cov(d, rho), b)
    logvar = np.full_like(mu, math.log(s))
    z = mu + math.sqrt(s) * rng.standard_normal(mu.shape)
    tensors = [torch.tensor(v) for v in (z, mu, logvar)]
    assert tc_mws(*tensors, dataset_size=b).item() - (d - 1) * math.log(b) == pytest.approx(expected, abs=0.04)
    assert tc_mss(*tensors, dataset_size=b).item() == pytest.approx(expected, abs=0.04)


def test_mss_weights_put_one_over_n_on_the_diagonal():
    # One point far from the rest: q(z_0) is then its own kernel times the diagonal weight 1/N.
    b, n = 5, 1000
    mu = torch.zeros(b, 1, dtype=torch.float64)
    mu[0] = 1e3
    logvar = torch.zeros_like(mu)
    from mtc_core.estimators import minibatch_log_densities

    dens = minibatch_log_densities(mu.clone(), mu, logvar, n, "mss")
    own = -0.5 * math.log(2 * math.pi)
    assert dens["log_qz"][0].item() == pytest.approx(own - math.log(n), abs=1e-9)


def test_minibatch_estimators_reject_bad_shapes():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="shape"):
        tc_mws(z, torch.zeros(4, 3), z, 10)
    with pytest.raises(ValueError, match="dataset_size"):
        tc_mss(z, z, z, 3)
    with pytest.raises(ValueError, match="at least 3"):
        tc_mss(z[:2], z[:2], z[:2], 10)


def test_mean_tc_gaussian_known_values_and_ridge(rng):
    indep = torch.tensor(rng.standard_normal((2000, 4)))
    assert abs(mean_tc_gaussian(indep).item()) < 0.01  # E ~ D(D - 1) / (4 B) = 0.0015
    values = []
    for rho in (0.2, 0.5, 0.8):
        mu = gaussian_sample(rng, equicorrelated_cov(4, rho), 2000)
        values.append(mean_tc_gaussian(torch.tensor(mu)).item())
        corr = np.corrcoef(mu, rowvar=False)
        # the ridge changes -1/2 log det by at most D ridge / (2 lambda_min); the penalty subtracts the expected
        # TC of independent codes at this batch size (0.0015 here), so a batch's value is gaussian_tc minus that
        tol = 4 * 1e-4 / (2 * np.linalg.eigvalsh(corr).min())
        assert values[-1] == pytest.approx(gaussian_tc(corr) - gaussian_tc_null_mean(2000, 4), abs=tol)
    assert values[0] < values[1] < values[2]


def test_mean_tc_gaussian_gradient_with_a_nearly_constant_dim(rng):
    mu = gaussian_sample(rng, equicorrelated_cov(3, 0.5), 256)
    mu[:, 2] = 1e-6 * mu[:, 0] + 1e-7 * rng.standard_normal(256)  # passive latent: a tiny scaled copy
    x = torch.tensor(mu, dtype=torch.float32, requires_grad=True)
    tc = mean_tc_gaussian(x)
    tc.backward()
    assert math.isfinite(tc.item()) and tc.item() > 1.0  # scale-invariant: the copy counts at full weight
    assert torch.isfinite(x.grad).all()


def test_mean_tc_kde_independent_vs_correlated(rng):
    # 10 batches of 500 x 3: the permutation adds noise (sd ~0.02 per batch), the mean has no bias
    indep = np.mean([mean_tc_kde(torch.tensor(rng.standard_normal((500, 3))), torch.Generator().manual_seed(s)).item() for s in range(10)])
    corr = mean_tc_kde(torch.tensor(gaussian_sample(rng, equicorrelated_cov(3, 0.8), 500)), torch.Generator().manual_seed(0)).item()
    assert abs(indep) < 0.02 and corr > 0.5


def _kde_over_seeds(rho: float, seeds: int = 40, b: int = 64, d: int = 10) -> np.ndarray:
    chol = torch.linalg.cholesky(torch.as_tensor(equicorrelated_cov(d, rho)))
    values = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        values.append(mean_tc_kde(torch.randn(b, d, generator=g, dtype=torch.float64) @ chol.T, g).item())
    return np.array(values)


def test_mean_tc_kde_is_unbiased_at_the_training_batch():
    # Batch 64 x 10 latents, as RTC-VAE trains. The uncorrected KDE read -1.13 +- 0.19 here (40 seeds);
    # with the permuted-copy correction: +0.018, sd 0.30 (standard error 0.048).
    assert abs(_kde_over_seeds(0.0).mean()) < 0.05
    # and it rises monotonically with the true TC of equicorrelated codes (0.15, 0.95, 2.27, 4.42, 9.26 nats)
    means = [_kde_over_seeds(rho).mean() for rho in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)]
    assert means == sorted(means) and means[2] == pytest.approx(0.951, abs=0.3)


# ------------------------------------------------------------------ tc_dataset


def test_tc_dataset_matches_the_closed_form(rng):
    # Means ~ N(0, R) with constant posterior variance s: the aggregate posterior tends to N(0, Cov(mu) + s I).
    # Over 12 seeds (N = 3000, 10k samples) the error against the Gaussian TC of that covariance was
    # +0.003 +- 0.008 (max 0.016), against the population form +0.009 +- 0.021 (the means' sampling noise).
    d, rho, s = 3, 0.6, 0.25
    mu = gaussian_sample(rng, equicorrelated_cov(d, rho), 3000)
    logvar = np.full_like(mu, math.log(s))
    got = tc_dataset(mu, logvar, num_samples=6000, rng=0)
    assert got == pytest.approx(gaussian_tc(sampled_cov(mu, logvar)), abs=0.03)
    assert got == pytest.approx(gaussian_tc(equicorrelated_cov(d, rho) + s * np.eye(d)), abs=0.06)
    # independent means: +0.007 +- 0.0015 (the mixture's own-kernel bias)
    assert abs(tc_dataset(rng.standard_normal((3000, d)), logvar, num_samples=6000, rng=0)) < 0.02
    # near-deterministic encoders: the aggregate is N distinct points, whose TC is (D - 1) log N, not the
    # Gaussian TC of the means; this is also why the minibatch tests use a moderate posterior variance
    confident = np.full_like(mu[:500], -60.0)
    assert tc_dataset(mu[:500], confident, num_samples=500, rng=0) == pytest.approx((d - 1) * math.log(500), abs=1e-9)
    # chunking and tensors change nothing but speed
    assert tc_dataset(mu, logvar, num_samples=500, rng=1, chunk_size=7) == pytest.approx(
        tc_dataset(torch.tensor(mu), torch.tensor(logvar), num_samples=500, rng=1), abs=1e-10
    )


def test_tc_dataset_rejects_bad_input(rng):
    mu = rng.standard_normal((10, 2))
    with pytest.raises(ValueError, match="same shape"):
        tc_dataset(mu, mu[:5])
    with pytest.raises(ValueError, match="NaN"):
        tc_dataset(np.where(mu > 1, np.nan, mu), mu)
    with pytest.raises(ValueError, match="num_samples"):
        tc_dataset(mu, mu, num_samples=0)
    with pytest.raises(ValueError, match="D = 0"):
        tc_dataset(mu[:, :0], mu[:, :0])


# ------------------------------------------------------------------ tc_knn

KNN_CASES = {
    "d2_rho0.8": lambda rng: np.array([[1.0, 0.8], [0.8, 1.0]]),
    "d5_equi0.5": lambda rng: equicorrelated_cov(5, 0.5),
    "d10_random": lambda rng: random_corr(rng, 10),
}


@pytest.mark.parametrize("case", list(KNN_CASES))
def test_tc_knn_within_005_nats_of_the_closed_form(case):
    rng = np.random.default_rng(7)
    cov = KNN_CASES[case](rng)
    x = gaussian_sample(rng, cov, 10_000)
    assert tc_knn(x) == pytest.approx(gaussian_tc(cov), abs=0.05)


def test_tc_knn_invariant_to_monotone_maps_and_needs_its_correction():
    rng = np.random.default_rng(3)
    cov = random_corr(rng, 10)
    g = gaussian_sample(rng, cov, 10_000)
    warped = np.column_stack([g[:, :5] ** 3, np.exp(g[:, 5:])])  # same copula, same TC
    assert tc_knn(warped) == pytest.approx(gaussian_tc(cov), abs=0.05)
    # plain KSG underestimates strong 10-D dependence; the Gaussian reference removes that bias
    assert gaussian_tc(cov) - tc_knn(g, references=0) > 0.05


def test_tc_knn_sees_nonlinear_dependence_that_gaussian_tc_misses(rng):
    x = rng.standard_normal(10_000)
    codes = np.column_stack([x, x**2 + 0.1 * rng.standard_normal(10_000)])
    assert abs(gaussian_tc(np.cov(codes, rowvar=False))) < 0.01
    assert tc_knn(codes) > 1.0


def test_tc_knn_independent_duplicates_and_constant_dims(rng):
    indep = rng.uniform(size=(5000, 4))
    assert abs(tc_knn(indep)) < 0.03
    cov = equicorrelated_cov(3, 0.5)
    x = gaussian_sample(rng, cov, 5000)
    clean = tc_knn(x)
    messy = np.vstack([x, x[:500]])  # 10 % duplicated points
    messy = np.column_stack([messy, np.full(len(messy), 2.0)])  # and a constant latent
    got = tc_knn(messy)
    assert math.isfinite(got) and got == pytest.approx(clean, abs=0.1)
    discrete = rng.integers(0, 3, size=(3000, 3)).astype(float)  # nothing but ties
    assert abs(tc_knn(discrete)) < 0.03
    assert tc_knn(np.column_stack([x[:, 0], np.ones(5000)])) == 0.0
    assert tc_knn(x, rng=1) != tc_knn(x, rng=2) and tc_knn(x) == tc_knn(x)  # seeded, reproducible


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((10, 2), np.nan), "NaN"),
        (np.ones((1, 2)), "at least 2 points"),
        (np.ones((10, 0)), "D = 0"),
        (np.ones(10), "2-D"),
    ],
)
def test_numpy_estimators_reject_bad_points(bad, message):
    with pytest.raises(ValueError, match=message):
        tc_knn(bad)
    with pytest.raises(ValueError, match=message):
        drop_constant_dims(bad)


def test_tc_knn_rejects_bad_k(rng):
    with pytest.raises(ValueError, match="k must be"):
        tc_knn(rng.standard_normal((5, 2)), k=4)


def test_results_are_plain_floats(rng):
    cov = equicorrelated_cov(3, 0.3)
    x = gaussian_sample(rng, cov, 500)
    values = [gaussian_tc(cov), gaussian_wasserstein_correlation(cov), tc_knn(x), tc_dataset(x, x * 0 - 2, num_samples=50, rng=0)]
    assert all(type(v) is float for v in values)
    json.dumps(values)


# ---- hostile inputs (issue 12): no silent NaN, inf or complex cast


def _posterior(seed=0, n=64, d=4):
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((n, d))
    mu[:, 1] = 0.8 * mu[:, 0] + 0.6 * mu[:, 1]
    logvar = rng.standard_normal((n, d)) - 1.0
    return mu, logvar, mu + np.exp(logvar / 2) * rng.standard_normal((n, d))


def _minibatch_calls():
    return {
        "tc_mws": lambda z, mu, lv: tc_mws(z, mu, lv, 1000),
        "tc_mss": lambda z, mu, lv: tc_mss(z, mu, lv, 1000),
        "mean_tc_gaussian": lambda z, mu, lv: mean_tc_gaussian(mu),
        "mean_tc_kde": lambda z, mu, lv: mean_tc_kde(mu, generator=torch.Generator().manual_seed(0)),
    }


@pytest.mark.parametrize("name", list(_minibatch_calls()))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_minibatch_estimators_refuse_non_finite_input_outside_training(name, bad):
    mu, logvar, z = (torch.as_tensor(a) for a in _posterior())
    mu[3, 1] = bad
    with pytest.raises(ValueError, match="mu contains NaN or inf"):
        _minibatch_calls()[name](z, mu, logvar)


@pytest.mark.parametrize("name", list(_minibatch_calls()))
def test_minibatch_estimators_let_nan_reach_the_loss_inside_a_training_step(name):
    # the trainer stops a run whose loss is NaN as "diverged"; an exception here would turn that into a crash
    mu, logvar, z = (torch.as_tensor(a) for a in _posterior())
    mu[3, 1] = math.nan
    mu.requires_grad_(True)
    assert torch.isnan(_minibatch_calls()[name](z, mu, logvar))


@pytest.mark.parametrize("name", list(_minibatch_calls()))
@pytest.mark.parametrize("dtype", [torch.complex128, torch.int64, torch.bool])
def test_minibatch_estimators_refuse_complex_and_integer_tensors(name, dtype):
    mu, logvar, z = (torch.as_tensor(a) for a in _posterior())
    with pytest.raises(ValueError, match="must hold real floating-point numbers"):
        _minibatch_calls()[name](z.to(dtype), mu.to(dtype), logvar.to(dtype))
    with pytest.raises(ValueError, match="must be a torch tensor"):
        _minibatch_calls()[name](*_posterior()[::-1])


@pytest.mark.parametrize("fn", [tc_mws, tc_mss])
def test_minibatch_tc_refuses_a_posterior_variance_that_underflows(fn):
    mu, logvar, z = (torch.as_tensor(a) for a in _posterior())
    with pytest.raises(ValueError, match=r"not finite.*logvar spans \[-1e\+30"):
        fn(mu.clone(), mu, torch.full_like(logvar, -1e30), 1000)  # exp(-logvar) = inf at z = mu: inf * 0
    with pytest.raises(ValueError, match="dataset_size must be an integer"):
        fn(z, mu, logvar, 1000.5)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_mean_tc_penalties_are_scale_free_at_any_magnitude(scale):
    # the squares of 1e200 overflowed and those of 1e-200 underflowed: both gave 0.0 for strongly correlated codes
    mu = torch.as_tensor(_posterior()[0])
    expected = mean_tc_gaussian(mu).item()
    assert expected > 0.2
    assert mean_tc_gaussian(mu * scale).item() == pytest.approx(expected, rel=1e-9)
    kde = mean_tc_kde(mu, generator=torch.Generator().manual_seed(1)).item()
    assert mean_tc_kde(mu * scale, generator=torch.Generator().manual_seed(1)).item() == pytest.approx(kde, rel=1e-9)
    copy, passive = mu.clone(), mu.clone()
    copy[:, 2] = mu[:, 0] + 0.1 * mu[:, 3]
    passive[:, 2] = scale * copy[:, 2]  # a passive latent copying active ones at a tiny (or huge) scale counts in full
    assert mean_tc_gaussian(passive).item() == pytest.approx(mean_tc_gaussian(copy).item(), rel=1e-9)
    assert mean_tc_gaussian(copy).item() > expected + 1


@pytest.mark.parametrize("call", [
    lambda a: sampled_cov(a, np.zeros_like(a)),
    lambda a: tc_dataset(a, np.zeros_like(a), num_samples=20),
    lambda a: tc_knn(a),
    lambda a: gaussian_tc(a.T @ a),
    lambda a: gaussian_wasserstein_correlation(a.T @ a),
    lambda a: drop_constant_dims(a),
])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_dataset_estimators_refuse_complex_input(call, as_tensor):
    codes = _posterior()[0] + 1j
    with pytest.raises(ValueError, match="real numbers, got complex"):
        call(torch.as_tensor(codes) if as_tensor else codes)


def test_sampled_cov_refuses_overflow():
    mu, logvar, _ = _posterior()
    with pytest.raises(ValueError, match="overflows float64"):
        sampled_cov(mu * 1e300, logvar)
    with pytest.raises(ValueError, match="overflows float64"):
        sampled_cov(mu, np.full_like(logvar, 800.0))
    np.testing.assert_allclose(sampled_cov(torch.as_tensor(mu, dtype=torch.bfloat16), logvar),
                               sampled_cov(torch.as_tensor(mu, dtype=torch.bfloat16).float(), logvar))


@pytest.mark.parametrize("logvar_value", [1e30, -1e30, 1e4])
def test_tc_dataset_refuses_posterior_variances_that_overflow(logvar_value):
    mu, logvar, _ = _posterior()
    with pytest.raises(ValueError, match="Monte-Carlo TC is not finite.*logvar spans"):
        tc_dataset(mu, np.full_like(logvar, logvar_value), num_samples=50, rng=0)
    assert math.isfinite(tc_dataset(mu, np.full_like(logvar, 600.0), num_samples=50, rng=0))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_samples must be a positive integer"):
            tc_dataset(mu, logvar, num_samples=bad)


def test_wasserstein_correlation_at_extreme_scales():
    # C * diag C overflowed for variances near 1e160 and the result came back as -inf without a word
    rng = np.random.default_rng(3)
    codes = rng.standard_normal((200, 3))
    codes[:, 1] += codes[:, 0]
    cov = np.cov(codes, rowvar=False)
    value = gaussian_wasserstein_correlation(cov)
    for scale in (2.0**600, 2.0**-600, 2.0**1000):
        assert gaussian_wasserstein_correlation(cov * scale) == pytest.approx(value * scale, rel=1e-12)
        assert gaussian_wasserstein_correlation(cov * scale, normalize=True) == pytest.approx(
            gaussian_wasserstein_correlation(cov, normalize=True), rel=1e-12)
    with pytest.raises(ValueError, match="overflows float64"):
        gaussian_wasserstein_correlation(np.full((3, 3), 1.4e308) + np.eye(3) * 1e307)  # the distance itself is beyond float64


def test_tc_knn_refuses_fewer_points_than_dimensions_for_its_correction():
    # the surrogates' correlation matrix was singular: TC_G = inf, and the estimate came back as inf without a word
    x = np.random.default_rng(0).standard_normal((6, 6))
    with pytest.raises(ValueError, match="more points than varying dimensions"):
        tc_knn(x, k=1)
    assert math.isfinite(tc_knn(x, k=1, references=0))
    assert math.isfinite(tc_knn(x[:, :5], k=1))
