"""Active and passive latents: the one rule every page, `evaluate`, the trainer's log and RESULTS.md apply.

A latent is active when the variance of its mean code over the data, Var_x(mu_j), exceeds `ACTIVITY_THRESHOLD`
(Burda et al. 2016, "Importance Weighted Autoencoders", Sec. 5.2); a passive latent's mean hardly moves, its samples
are almost pure prior noise (docs/design.md, "Active and passive latents").
"""

from __future__ import annotations

ACTIVITY_THRESHOLD = 0.01


def is_active(var_mu, threshold: float = ACTIVITY_THRESHOLD):
    """Boolean mask [D] of the active latents from Var_x(mu_j) [D] (numpy array or torch tensor)."""
    return var_mu > threshold
