"""Active and passive latents: the one rule every page, `evaluate`, the trainer's log and RESULTS.md apply.

A latent is active when the variance of its mean code over the data, Var_x(mu_j), exceeds a threshold (Burda et al.
2016, "Importance Weighted Autoencoders", Sec. 5.2); a passive latent's mean hardly moves, its samples are almost
pure prior noise. Where the cut sits is an analysis choice, and claims about "the active latents" can hinge on it:
a few latents often sit with Var(mu_j) in 0.01-0.05 while the informative ones have 0.3-5 (docs/design.md,
"Active and passive latents"). So the default cut is chosen from the data (`choose_threshold`), every
active/passive quantity is also reported over `CURVE_THRESHOLDS`, and `stable_range` says over which cuts the
active set does not move.
"""

from __future__ import annotations

import math

import numpy as np

ACTIVITY_THRESHOLD = 0.01  # the fixed cut: used where no set of codes is at hand (a training batch's log, a plot's default)
CURVE_THRESHOLDS = tuple(float(t) for t in np.logspace(-3, -1, 13))  # 0.001 .. 0.1, log-spaced
GAP_WINDOW = (1e-3, 1e-1)  # where a data-chosen cut may fall: the curve's range, below every informative latent
MIN_GAP_DECADES = 0.5  # a narrower gap is no cut: latents on both sides of it are alike
THRESHOLD_RULE = (f"the geometric middle of the widest gap (at least {MIN_GAP_DECADES:g} decades) between consecutive values of "
                  f"Var(mu_j) on a log scale whose middle lies in {GAP_WINDOW[0]:g}..{GAP_WINDOW[1]:g}; "
                  f"{ACTIVITY_THRESHOLD:g} where no gap does")


def is_active(var_mu, threshold: float = ACTIVITY_THRESHOLD):
    """Boolean mask [D] of the active latents from Var_x(mu_j) [D] (numpy array or torch tensor)."""
    return var_mu > threshold


def choose_threshold(var_mu) -> float:
    """The cut between active and passive latents read from `var_mu[D]` (THRESHOLD_RULE): the widest gap in
    log Var(mu_j), so that no latent sits near the cut. Latents with Var(mu_j) = 0 are left out."""
    logs = np.sort(np.log10([v for v in np.asarray(var_mu, dtype=np.float64) if v > 0]))
    best, width = ACTIVITY_THRESHOLD, MIN_GAP_DECADES
    for low, high in zip(logs[:-1], logs[1:], strict=True):
        middle = 10 ** ((low + high) / 2)
        if GAP_WINDOW[0] <= middle <= GAP_WINDOW[1] and high - low >= width:
            best, width = middle, high - low
    return float(f"{best:.3g}")


def curve_thresholds(default: float) -> list[float]:
    """CURVE_THRESHOLDS with `default` inserted in order (once)."""
    return sorted({*CURVE_THRESHOLDS, float(default)})


def stable_range(var_mu, threshold: float, thresholds) -> list[float] | None:
    """[lo, hi]: the smallest and largest of `thresholds` (a sorted grid holding `threshold`) between which every
    cut gives the same active set as `threshold`; None when `threshold` is not on the grid."""
    var_mu, grid = np.asarray(var_mu, dtype=np.float64), list(thresholds)
    if not any(math.isclose(t, threshold) for t in grid):
        return None
    at = next(i for i, t in enumerate(grid) if math.isclose(t, threshold))
    same = [bool(np.array_equal(is_active(var_mu, t), is_active(var_mu, threshold))) for t in grid]
    lo = at
    while lo > 0 and same[lo - 1]:
        lo -= 1
    hi = at
    while hi < len(grid) - 1 and same[hi + 1]:
        hi += 1
    return [grid[lo], grid[hi]]
