"""Closed forms and Monte-Carlo checks for "mean TC high, sampled TC bounded" (docs/design.md, "The theorem").

Mean codes mu ~ N(0, R_rho), R_rho = (1 - rho) I + rho 11^T in d dimensions, and
sampled codes z = mu + sqrt(s) eps. By the law of total covariance Cov(z) = R_rho + s I,
again equicorrelated, with rho' = rho / (1 + s) <= 1 / (1 + s). TC(mu) grows without
bound as rho -> 1 while TC(z) stays below B(d, s) = TC at rho' = 1 / (1 + s).
"""

from __future__ import annotations

import math

import numpy as np

from mtc_core.estimators import gaussian_tc, tc_knn


def _check_d(d: int) -> None:
    if int(d) != d or d < 2:
        raise ValueError(f"d must be an integer >= 2, got {d}")


def _check_rho(d: int, rho: float) -> None:
    _check_d(d)
    if not -1 / (d - 1) < rho < 1:
        raise ValueError(f"rho must lie in (-1/(d-1), 1) = ({-1 / (d - 1):.4g}, 1) for d = {d}, got {rho}")


def _check_s(s: float) -> None:
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"posterior variance s must be finite and >= 0, got {s}")


def equicorrelated_cov(d: int, rho: float) -> np.ndarray:
    """`equicorrelated_cov(d, rho) -> [d, d]`: (1 - rho) I + rho 11^T, positive definite on the valid range."""
    _check_rho(d, rho)
    return (1 - rho) * np.eye(d) + rho * np.ones((d, d))


def mean_tc(d: int, rho: float) -> float:
    """TC of N(0, R_rho) = -1/2 [(d - 1) log(1 - rho) + log(1 + (d - 1) rho)] (eigenvalues 1 - rho and 1 + (d - 1) rho)."""
    _check_rho(d, rho)
    return -0.5 * ((d - 1) * math.log1p(-rho) + math.log1p((d - 1) * rho))


def sampled_tc(d: int, rho: float, s: float) -> float:
    """TC of the sampled codes z = mu + sqrt(s) eps: `mean_tc` at rho' = rho / (1 + s)."""
    _check_rho(d, rho)
    _check_s(s)
    return mean_tc(d, rho / (1 + s))


def sampled_tc_bound(d: int, s: float) -> float:
    """B(d, s) = TC at rho' = 1 / (1 + s): above `sampled_tc(d, rho, s)` for every rho >= 0; inf at s = 0."""
    _check_d(d)
    _check_s(s)
    return math.inf if s == 0 else mean_tc(d, 1 / (1 + s))


def measured_sampled_tc_bound(var_mu, mean_sigma2) -> float:
    """Upper bound on the Gaussian TC of the sampled codes, Cov(z) = Cov(mu) + diag E[sigma^2], that holds whatever
    the correlations of the means: the bound of docs/design.md, "The theorem" for measured variances. `var_mu[D]`, `mean_sigma2[D]` > 0.

    Scaling latent j by 1 / sd(mu_j) leaves TC unchanged and gives Cov = R + diag(s), s_j = E[sigma_j^2] / Var(mu_j)
    the latent's noise-to-signal ratio. Two bounds, the smaller returned:
    - B(d, min_j s_j): adding independent noise to a latent never raises TC, so TC <= TC(R + s_min I), and over all
      correlation matrices R the latter peaks at the rank-1 limit rho -> 1 of the equicorrelated case, B(d, s).
    - 1/2 (sum_j log(1 + 1/s_j) - max_j log(1 + 1/s_j)): by the chain rule TC = sum_j I(z_j; z_<j) over any order
      of the latents, and z_<j -> mu_j -> z_j gives I(z_j; z_<j) <= I(z_j; mu_j) = 1/2 log(1 + 1/s_j); the latent
      with the largest term goes first, where its term is 0.
    """
    var_mu, mean_sigma2 = np.asarray(var_mu, dtype=np.float64), np.asarray(mean_sigma2, dtype=np.float64)
    if var_mu.shape != mean_sigma2.shape or var_mu.ndim != 1:
        raise ValueError(f"var_mu and mean_sigma2 must be vectors of one length, got {var_mu.shape} and {mean_sigma2.shape}")
    if not (np.isfinite(var_mu).all() and np.isfinite(mean_sigma2).all() and (var_mu > 0).all() and (mean_sigma2 > 0).all()):
        raise ValueError("var_mu and mean_sigma2 must be finite and > 0 (leave constant latents out)")
    if len(var_mu) < 2:
        return 0.0
    s = mean_sigma2 / var_mu
    terms = 0.5 * np.log1p(1 / s)
    return float(min(sampled_tc_bound(len(s), float(s.min())), terms.sum() - terms.max()))


def _bisect_increasing(f, target: float, lo: float, hi: float, iters: int = 200) -> float:
    """Smallest x in [lo, hi] (to float precision) with f(x) >= target, f increasing, f(hi) >= target."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if f(mid) >= target else (mid, hi)
    return hi


def params_for_gap(d: int, target_mean_tc: float, max_sampled_tc: float) -> tuple[float, float]:
    """`params_for_gap(d, target_mean_tc, max_sampled_tc) -> (rho, s)` with mean TC >= target and sampled TC <= max.

    s solves B(d, s) = max_sampled_tc (B decreases in s), so the sampled TC stays
    below max for every rho; rho solves mean_tc(d, rho) = target (increasing on [0, 1)).
    Both by bisection, rounded towards the safe side.
    """
    _check_d(d)
    if not (math.isfinite(target_mean_tc) and target_mean_tc > 0):
        raise ValueError(f"target_mean_tc must be positive and finite, got {target_mean_tc}")
    if not (math.isfinite(max_sampled_tc) and max_sampled_tc > 0):
        raise ValueError(f"max_sampled_tc must be positive and finite, got {max_sampled_tc}")
    s_hi = 1.0
    while sampled_tc_bound(d, s_hi) > max_sampled_tc:
        s_hi *= 2
    s = _bisect_increasing(lambda t: -sampled_tc_bound(d, t), -max_sampled_tc, 0.0, s_hi)
    # 1 - rho can be ~1e-9 for d = 2 and 10 nats; bisect on log(1 - rho) for resolution there
    log_gap = _bisect_increasing(lambda t: mean_tc(d, -math.expm1(-t)), target_mean_tc, 0.0, 2 * target_mean_tc + 50.0)
    return -math.expm1(-log_gap), s


def monte_carlo_check(d: int, rho: float, s: float, n: int = 100_000, rng=None, knn_points: int | None = 10_000) -> dict:
    """Sample mu[n, d] ~ N(0, R_rho) and z = mu + sqrt(s) eps; estimate both TCs next to the closed forms.

    Returns a JSON-serialisable dict: closed forms (`mean_tc`, `sampled_tc`, `bound`),
    Gaussian TC of the sample covariances (`mean_tc_gaussian`, `sampled_tc_gaussian`),
    and `tc_knn` (`mean_tc_knn`, `sampled_tc_knn`) on the first `knn_points` samples:
    k-NN cost grows as N log N per reference and its accuracy target is set at 10k
    points; `knn_points=None` skips it.
    """
    _check_rho(d, rho)
    _check_s(s)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    rng = np.random.default_rng(rng)
    root = np.linalg.cholesky(equicorrelated_cov(d, rho))
    mu = rng.standard_normal((n, d)) @ root.T
    z = mu + math.sqrt(s) * rng.standard_normal((n, d))
    out = {
        "d": d,
        "rho": rho,
        "s": s,
        "n": n,
        "rho_sampled": rho / (1 + s),
        "mean_tc": mean_tc(d, rho),
        "sampled_tc": sampled_tc(d, rho, s),
        "bound": sampled_tc_bound(d, s),
        "mean_tc_gaussian": gaussian_tc(np.cov(mu, rowvar=False)),
        "sampled_tc_gaussian": gaussian_tc(np.cov(z, rowvar=False)),
    }
    if knn_points:
        out["knn_points"] = min(knn_points, n)
        out["mean_tc_knn"] = tc_knn(mu[:knn_points])
        out["sampled_tc_knn"] = tc_knn(z[:knn_points])
    return out
