"""Unsupervised scores of a representation: Gaussian TC, Wasserstein correlation, mean pairwise MI.

As disentanglement_lib's `unsupervised_metrics.py` (Locatello et al. 2019, ICML,
https://arxiv.org/abs/1811.12359), with the covariance estimators of `mtc_core.estimators`.
"""

from __future__ import annotations

import numpy as np

from mtc_core.estimators import gaussian_tc, gaussian_wasserstein_correlation
from mtc_core.metrics.utils import check_codes, discrete_mutual_info, discretize


def unsupervised(codes, num_bins: int = 20) -> dict:
    """`unsupervised(codes[N, D], num_bins=20) -> dict`, keys as disentanglement_lib.

    gaussian_total_correlation: TC of N(0, C), C = np.cov(codes) with ddof 1 (nats).
    gaussian_wasserstein_correlation(_norm): 2 tr C - 2 tr sqrtm(C diag C) (divided by tr C).
    mutual_info_score: mean plug-in MI (nats, not normalised) over the D^2 - D ordered pairs
    of distinct histogram-discretised latents.
    A constant latent raises ValueError naming it (drop it with estimators.drop_constant_dims).
    """
    codes = check_codes(codes)
    num_codes = codes.shape[1]
    if num_codes < 2:
        raise ValueError(f"unsupervised scores need at least 2 latent dimensions, got {num_codes}")
    with np.errstate(over="ignore", invalid="ignore"):
        cov = np.cov(codes, rowvar=False)
    if not np.isfinite(cov).all():
        raise ValueError(f"the covariance of the codes overflows float64 (|codes| up to {np.abs(codes).max():.3g}): rescale them; "
                         "the Wasserstein correlation depends on their scale")
    underflow = np.flatnonzero((np.diag(cov) == 0) & ~np.all(codes == codes[:1], axis=0))
    if underflow.size:
        raise ValueError(f"the variance of codes dimension {int(underflow[0])} underflows float64 (|codes| up to "
                         f"{np.abs(codes[:, underflow[0]]).max():.3g}): rescale the codes")
    binned = discretize(codes, num_bins)
    mutual_info = discrete_mutual_info(binned, binned)
    np.fill_diagonal(mutual_info, 0.0)
    return {
        "gaussian_total_correlation": gaussian_tc(cov),
        "gaussian_wasserstein_correlation": gaussian_wasserstein_correlation(cov),
        "gaussian_wasserstein_correlation_norm": gaussian_wasserstein_correlation(cov, normalize=True),
        "mutual_info_score": float(mutual_info.sum() / (num_codes**2 - num_codes)),
    }
