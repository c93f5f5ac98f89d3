"""The sampled codes of a diagonal Gaussian posterior: z = mu + exp(logvar / 2) eps, eps ~ N(0, I).

One definition for the training loss (torch), the evaluation, the estimators and the app (numpy), the convention of
disentanglement_lib's `sampled_representation` (docs/design.md, "Mean and sampled codes").
"""

from __future__ import annotations

import numpy as np
import torch


def sampled_codes(mu, logvar, eps):
    """z[N, D] = mu + exp(logvar / 2) * eps for mu, logvar and standard normal eps of one shape (numpy or torch)."""
    exp = torch.exp if isinstance(logvar, torch.Tensor) else np.exp
    return mu + exp(0.5 * logvar) * eps


def draw_sampled_codes(mu: np.ndarray, logvar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`sampled_codes` with eps drawn from `rng` (one standard normal per entry of mu, in C order)."""
    return sampled_codes(mu, logvar, rng.standard_normal(mu.shape))
