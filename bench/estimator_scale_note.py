"""docs/estimators.md's section on the estimators bounded above evaluate's sizes (issue 23), kept apart from
bench/estimator_bias.py's measurements: `at_scale()` reads the caps from the code."""

from __future__ import annotations

from mtc_core.evaluation import scoring
from mtc_core.evaluation import tc_report as report_module


def at_scale() -> str:
    """The section on the bounded estimators above evaluate's sizes (issue 23), ending in a blank line; read from the
    code, no measurement."""
    cap, fit = report_module.MIXTURE_POINTS, scoring.FIT_POINTS
    return f"""## Above evaluate's sizes: the bounded estimators

At N <= {cap:,} points (`evaluate`'s default N and every size in the tables above) nothing here changes. Above it the report's dataset Monte-Carlo TC
takes the mixture of a seeded uniform subsample of {cap:,} of the N posteriors (`tc_report.MIXTURE_POINTS`; its entry says "n" = {cap:,} and
"of_points" = N), so its cost stays that of N = {cap:,}. It keeps its label: an upper estimate of the mixture's TC, not the TC of the sampled
codes. A mixture of fewer components is spikier, so the subsample's value lies at or above the full mixture's on average, by about the change
its "half_n" value shows; `tests/test_scale.py` holds it within the two intervals' half-widths of the full mixture at N = 8,000 on the
equicorrelated case. The Gaussian and kNN TCs are unchanged at every N. Likewise `evaluate` fits the DCI and explicitness classifiers on at
most {fit:,} training points (`scoring.FIT_POINTS`, a seeded subsample above it, every class kept; the entries then say "fit_points" /
"explicitness_fit_points"): disentanglement_lib's own size for these metrics, and DCI depends on it (fewer fitting points spread the
importances over noise latents), so the values stay comparable across N.\n\n"""
