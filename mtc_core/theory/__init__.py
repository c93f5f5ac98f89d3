"""The theorem of docs/design.md ("Why mean and sampled codes differ") in closed form, and posteriors with known answers.

`closed_form`: the equicorrelated example (mean TC unbounded, sampled TC bounded) and its Monte-Carlo check;
`synthetic`: finite sets of posteriors whose aggregate TC is known, the estimators' known answers.
"""

from mtc_core.theory.closed_form import (
    equicorrelated_cov,
    mean_tc,
    measured_sampled_tc_bound,
    monte_carlo_check,
    params_for_gap,
    sampled_tc,
    sampled_tc_bound,
)
from mtc_core.theory.synthetic import passive_posterior, passive_tc, synthetic_posterior, synthetic_tc

__all__ = ["equicorrelated_cov", "mean_tc", "measured_sampled_tc_bound", "monte_carlo_check", "params_for_gap", "passive_posterior", "passive_tc",
           "sampled_tc", "sampled_tc_bound", "synthetic_posterior", "synthetic_tc"]
