"""Synthetic posteriors whose aggregate TC is known in closed form: the known answers for every estimator (docs/design.md, "Reading a TC estimate").

A dataset of N mean codes mu_n ~ N(0, C_mu) and one fixed diagonal posterior variance for every point,
q(z|x_n) = N(mu_n, diag s). A sampled code z = mu_n + sqrt(s) eps is then exactly N(0, C_mu + diag s),
and the aggregated posterior q(z) = 1/N sum_n q(z|x_n) tends to that Gaussian as N grows, so:

- TC of the mean codes = TC_G(C_mu) = -1/2 log det R_mu,
- TC of the sampled codes (and of q(z) as N -> infinity) = TC_G(C_mu + diag s).

Two families: `synthetic_posterior`, the equicorrelated means of docs/design.md, "The theorem" (closed forms from
`mtc_core.theory`), and `passive_posterior`, independent active latents plus one passive latent whose
tiny mean is a scaled copy of an active one (the masking of docs/design.md, "Why mean and sampled codes differ": high mean TC, sampled TC near 0).
At finite N, estimators of the aggregate itself (`tc_dataset`, MWS, MSS) target the N-component mixture,
whose TC differs from the limit; `bench/estimator_bias.py` measures how much at the sizes in use.
"""

from __future__ import annotations

import math

import numpy as np

from mtc_core.theory.closed_form import equicorrelated_cov, mean_tc, sampled_tc


def _check_n(n: int) -> None:
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")


def _check_positive_var(name: str, value: float) -> None:
    # logvar = log(value) must be finite: a posterior variance of 0 is a point mass
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0 (logvar = log {name}), got {value}")


def synthetic_posterior(n: int, d: int, rho: float, s: float, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """`synthetic_posterior(n, d, rho, s, rng) -> (mu[N, D], logvar[N, D])`, float64.

    mu_n ~ N(0, (1 - rho) I + rho 11^T) independently, logvar = log s everywhere.
    Closed forms: `synthetic_tc(d, rho, s)`. `rng`: seed or np.random.Generator.
    """
    _check_n(n)
    _check_positive_var("s", s)
    root = np.linalg.cholesky(equicorrelated_cov(d, rho))
    mu = np.random.default_rng(rng).standard_normal((n, d)) @ root.T
    return mu, np.full((n, d), math.log(s))


def synthetic_tc(d: int, rho: float, s: float) -> dict[str, float]:
    """Closed forms for `synthetic_posterior`: {"mean": TC of the means, "sampled": TC of N(0, R_rho + s I)}."""
    _check_positive_var("s", s)
    return {"mean": mean_tc(d, rho), "sampled": sampled_tc(d, rho, s)}


def _check_passive(d: int, copy_corr: float, passive_var: float) -> None:
    if int(d) != d or d < 2:
        raise ValueError(f"d must be an integer >= 2 (at least one active and the passive latent), got {d}")
    if not -1 < copy_corr < 1:
        raise ValueError(f"copy_corr must lie in (-1, 1), got {copy_corr}")
    if not 0 < passive_var < 1:
        raise ValueError(f"passive_var must lie in (0, 1): the passive latent's Var mu plus E sigma^2 is 1, got {passive_var}")


def passive_posterior(n: int, d: int, s: float, rng=None, *, copy_corr: float = 0.95,
                      passive_var: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """`passive_posterior(n, d, s, rng) -> (mu[N, D], logvar[N, D])`: D - 1 active latents and one passive one.

    Active latents 0..D-2: mu_j ~ N(0, 1) independent, posterior variance s. Passive latent D-1: a mean
    with variance `passive_var` (below the app's 0.01 activity threshold) correlated `copy_corr` with
    latent 0, and posterior variance 1 - passive_var, so its sampled codes have unit variance like a
    latent whose KL to the prior is ~0. Closed forms: `passive_tc`.
    """
    _check_n(n)
    _check_positive_var("s", s)
    _check_passive(d, copy_corr, passive_var)
    rng = np.random.default_rng(rng)
    mu = rng.standard_normal((n, d))
    mu[:, -1] = math.sqrt(passive_var) * (copy_corr * mu[:, 0] + math.sqrt(1 - copy_corr**2) * mu[:, -1])
    logvar = np.full((n, d), math.log(s))
    logvar[:, -1] = math.log1p(-passive_var)
    return mu, logvar


def passive_tc(d: int, s: float, *, copy_corr: float = 0.95, passive_var: float = 0.005) -> dict[str, float]:
    """Closed forms for `passive_posterior`: all TC sits in the pair (latent 0, passive latent).

    A correlated pair is the d = 2 equicorrelated case, TC = -1/2 log(1 - r^2): r = copy_corr for the
    means (scale-invariant, so the tiny passive variance does not matter) and
    r = copy_corr sqrt(passive_var / (1 + s)) for the sampled codes.
    """
    _check_positive_var("s", s)
    _check_passive(d, copy_corr, passive_var)
    return {"mean": mean_tc(2, copy_corr), "sampled": mean_tc(2, copy_corr * math.sqrt(passive_var / (1 + s)))}
