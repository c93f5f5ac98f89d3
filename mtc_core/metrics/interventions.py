"""The sampler of the intervention metrics (FactorVAE and BetaVAE scores): groups of points
that share one factor, rendered and encoded many groups per `encode` call.

`encode`: images [N, C, H, W] float32 -> codes [N, D] (the caller picks mean or sampled codes).
`dataset`: `num_factors`, `sample_factors(n, rng)`, `render(factors)` (mtc_core.data).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Images per encode call; whole groups only, so a group's codes come from one call.
MAX_IMAGES_PER_CALL = 4096


def check_sampling(dataset, batch_size: int, **counts: int) -> None:
    """ValueError unless the dataset has >= 2 factors, batch_size >= 2 and every count >= 1."""
    if dataset.num_factors < 2:
        raise ValueError(f"intervention metrics need at least 2 factors, the dataset has {dataset.num_factors}")
    if int(batch_size) != batch_size or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (variances and differences need 2 points), got {batch_size}")
    for name, count in counts.items():
        if int(count) != count or count < 1:
            raise ValueError(f"{name} must be a positive integer, got {count}")


def encode_factors(encode: Callable[[np.ndarray], np.ndarray], dataset, factors: np.ndarray) -> np.ndarray:
    """factors [G, B, K] -> codes [G, B, D]: render and encode, MAX_IMAGES_PER_CALL images at a time."""
    groups, size = factors.shape[:2]
    step = max(1, MAX_IMAGES_PER_CALL // size)
    parts = []
    for start in range(0, groups, step):
        chunk = factors[start:start + step].reshape(-1, factors.shape[2])
        codes = np.asarray(encode(dataset.render(chunk)))
        if codes.ndim != 2 or codes.shape[0] != len(chunk):
            raise ValueError(f"encode must return codes [{len(chunk)}, D] for {len(chunk)} images, got shape {codes.shape}")
        if not np.isfinite(codes).all():
            raise ValueError("encode returned NaN or inf codes")
        parts.append(codes.reshape(-1, size, codes.shape[1]))
    return np.concatenate(parts)
