"""Total-correlation (TC) estimators, in nats with every constant kept: TC(z) = KL(q(z) || prod_j q(z_j)).

Arrays are points x dims. `minibatch`: differentiable torch estimators used in training losses (MWS, MSS,
the mean-code penalties). `dataset`: estimates on a whole set of codes (Gaussian, Wasserstein, Monte-Carlo
over the aggregated posterior, kNN). `synthetic`: posteriors with a closed-form aggregate TC, the known
answers the estimators are checked against (`bench/estimator_bias.py`).
"""

from mtc_core.estimators.dataset import (
    drop_constant_dims,
    gaussian_tc,
    gaussian_wasserstein_correlation,
    sampled_cov,
    tc_dataset,
    tc_knn,
    validate_points,
)
from mtc_core.estimators.minibatch import (
    LOG_2PI,
    gaussian_log_density,
    mean_tc_gaussian,
    mean_tc_kde,
    minibatch_log_densities,
    tc_mss,
    tc_mws,
)
from mtc_core.estimators.report import gaussian_tc_split, tc_report
from mtc_core.estimators.synthetic import passive_posterior, passive_tc, synthetic_posterior, synthetic_tc

__all__ = [
    "LOG_2PI",
    "drop_constant_dims",
    "gaussian_log_density",
    "gaussian_tc",
    "gaussian_tc_split",
    "gaussian_wasserstein_correlation",
    "mean_tc_gaussian",
    "mean_tc_kde",
    "minibatch_log_densities",
    "passive_posterior",
    "passive_tc",
    "sampled_cov",
    "synthetic_posterior",
    "synthetic_tc",
    "tc_dataset",
    "tc_knn",
    "tc_mss",
    "tc_mws",
    "tc_report",
    "validate_points",
]
