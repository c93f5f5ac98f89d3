"""Mutual Information Gap (MIG).

Chen et al. 2018, "Isolating Sources of Disentanglement in Variational Autoencoders",
https://arxiv.org/abs/1802.04942, Eq. 6; computed as disentanglement_lib's `mig.py`:
plug-in MI between histogram-discretised codes and the factors.
"""

from __future__ import annotations

import numpy as np

from mtc_core.metrics.utils import check_codes, check_factors, discrete_entropy, discrete_mutual_info, discretize


def mig(codes, factors, num_bins: int = 20) -> float:
    """`mig(codes[N, D], factors[N, K], num_bins=20) -> float` in [0, 1].

    MIG = mean_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k), z_(1), z_(2) the two latents with the
    largest MI with factor k. Needs D >= 2 and no constant factor (H = 0).
    """
    codes = check_codes(codes)
    factors = check_factors(factors, codes.shape[0])
    if codes.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 latent dimensions, got {codes.shape[1]}")
    mi = discrete_mutual_info(discretize(codes, num_bins), factors)  # [D, K]
    top_two = -np.sort(-mi, axis=0)[:2]
    return float(np.mean((top_two[0] - top_two[1]) / discrete_entropy(factors)))
