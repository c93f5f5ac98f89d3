"""Total-correlation (TC) estimators, in nats with every constant kept: TC(z) = KL(q(z) || prod_j q(z_j)).

Arrays are points x dims. `minibatch`: differentiable torch estimators used in training losses (MWS, MSS,
the mean-code penalties). `offline`: estimates on a finished set of codes (Gaussian, Wasserstein, Monte-Carlo
over the mixture of posteriors, kNN). The known answers they are checked against live in `mtc_core.theory`;
the TC report that every page shows is `mtc_core.evaluation.tc_report`.
"""

from mtc_core.estimators.minibatch import (
    LOG_2PI,
    gaussian_log_density,
    mean_tc_gaussian,
    mean_tc_kde,
    minibatch_log_densities,
    tc_mss,
    tc_mws,
)
from mtc_core.estimators.offline import (
    drop_constant_dims,
    gaussian_tc,
    gaussian_tc_bias,
    gaussian_wasserstein_correlation,
    sampled_cov,
    tc_dataset,
    tc_knn,
    validate_points,
)

__all__ = [
    "LOG_2PI",
    "drop_constant_dims",
    "gaussian_log_density",
    "gaussian_tc",
    "gaussian_tc_bias",
    "gaussian_wasserstein_correlation",
    "mean_tc_gaussian",
    "mean_tc_kde",
    "minibatch_log_densities",
    "sampled_cov",
    "tc_dataset",
    "tc_knn",
    "tc_mss",
    "tc_mws",
    "validate_points",
]
