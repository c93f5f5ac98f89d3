"""Factor disintegration: one ground-truth factor split over several independent latents (docs/design.md, "Factor disintegration").

A factorised aggregated posterior (TC ~ 0) is not a disentangled one: a uniform
u in 0..31 coded as (u // 8, u % 8) gives two independent latents that each carry
part of u. Measured from the normalised mutual-information matrix
M[k, j] = I(z_j; v_k) / H(v_k), estimated as in disentanglement_lib's MIG
(Chen et al. 2018): histogram-discretised codes, plug-in discrete MI.

A latent carries factor k when M[k, j] >= max(tau, floor_k), the factor's threshold: tau a stated level (0.1 by
default) and floor_k the noise floor, twice the plug-in MI's upward bias at this N and binning, measured as the mean
M[k, j] over the latents against the factor's values permuted over the points (`noise_floor`). A factor that no latent
carries has nothing to split: it gets no split ratio and no best latent (`factor_summary`).
"""

from __future__ import annotations

import numpy as np

from mtc_core.estimators import validate_points
from mtc_core.metrics.utils import check_factors, discrete_entropy, discrete_mutual_info, discretize


def _validate_factors(factors, n: int, factor_names=None) -> np.ndarray:
    factors = check_factors(factors, n, allow_constant=True)
    names = list(factor_names) if factor_names is not None else [str(k) for k in range(factors.shape[1])]
    if len(names) != factors.shape[1]:
        raise ValueError(f"got {len(names)} factor names for {factors.shape[1]} factors")
    constant = np.flatnonzero(np.all(factors == factors[:1], axis=0))
    if constant.size:
        k = int(constant[0])
        raise ValueError(f"factor {names[k]!r} (column {k}) is constant: its entropy is 0, so normalised MI is undefined")
    return factors


def mi_matrix(codes, factors, num_bins: int = 20) -> np.ndarray:
    """`mi_matrix(codes[N, D], factors[N, K], num_bins=20) -> M[K, D]`, M[k, j] = I(z_j; v_k) / H(v_k).

    Plug-in MI (nats) on `discretize`d codes; H(v_k) = I(v_k; v_k) from the factor's
    empirical distribution. A constant factor raises ValueError naming it. The plug-in
    MI is biased upwards by about (bins_z - 1)(bins_v - 1) / (2N) nats.
    """
    codes = validate_points(codes, "codes")
    factors = _validate_factors(factors, codes.shape[0])
    return discrete_mutual_info(discretize(codes, num_bins), factors).T / discrete_entropy(factors)[:, None]


def _validate_matrix(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"MI matrix must be a non-empty 2-D array [factors, latents], got shape {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("MI matrix must be finite and non-negative")
    return m


def noise_floor(codes, factors, num_bins: int = 20, seed: int = 0) -> np.ndarray:
    """`noise_floor(codes[N, D], factors[N, K]) -> [K]`: twice the mean M[k, j] over the latents when the factor's values
    are permuted over the points (seeded), i.e. twice what codes independent of the factor read at this N and binning.

    Under independence 2 N I_hat is about chi^2 with (bins_z - 1)(bins_v - 1) >= 19 degrees of freedom (20 bins), so
    its mean is at least 3 of its sd: twice the mean lies above what an independent latent reads.
    """
    codes = validate_points(codes, "codes")
    factors = _validate_factors(factors, codes.shape[0])
    permuted = factors[np.random.default_rng(seed).permutation(len(factors))]
    return 2.0 * mi_matrix(codes, permuted, num_bins).mean(1)


def thresholds(num_factors: int, tau: float = 0.1, floor=None) -> np.ndarray:
    """Per factor, the level a latent's M[k, j] must reach to carry it: max(tau, floor_k) (tau alone without a floor)."""
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    if floor is None:
        return np.full(num_factors, float(tau))
    floor = np.asarray(floor, dtype=np.float64)
    if floor.shape != (num_factors,) or not np.isfinite(floor).all():
        raise ValueError(f"noise floor must be {num_factors} finite values, got shape {floor.shape}")
    return np.maximum(float(tau), floor)


def latents_per_factor(m, tau: float = 0.1, floor=None) -> np.ndarray:
    """`latents_per_factor(M[K, D], tau=0.1, floor=None) -> int[K]`: per factor, the number of latents that carry it,
    M[k, j] >= max(tau, floor_k) (`thresholds`)."""
    m = _validate_matrix(m)
    return (m >= thresholds(m.shape[0], tau, floor)[:, None]).sum(1).astype(np.int64)


def carried(m, tau: float = 0.1, floor=None) -> np.ndarray:
    """`carried(M[K, D], tau=0.1, floor=None) -> bool[K]`: whether any latent carries the factor (`latents_per_factor` > 0)."""
    return latents_per_factor(m, tau, floor) > 0


def factor_summary(m, tau: float = 0.1, floor=None) -> dict:
    """Per factor (lists of K, JSON-safe): "threshold" max(tau, floor_k), "latents_per_factor", "carried", "best_m"
    (max_j M[k, j]), and "split_ratio" and "best_latent" (argmax_j M[k, j]), both None for a factor no latent carries."""
    m = _validate_matrix(m)
    level, count = thresholds(m.shape[0], tau, floor), latents_per_factor(m, tau, floor)
    ratio, best = split_ratio(m), m.argmax(1)
    return {
        "threshold": level.tolist(),
        "latents_per_factor": count.tolist(),
        "carried": (count > 0).tolist(),
        "best_m": m.max(1).tolist(),
        "split_ratio": [float(r) if c else None for r, c in zip(ratio, count > 0, strict=True)],
        "best_latent": [int(b) if c else None for b, c in zip(best, count > 0, strict=True)],
    }


def split_ratio(m) -> np.ndarray:
    """`split_ratio(M[K, D]) -> [K]` = 1 - max_j M[k, j] / sum_j M[k, j].

    0 when one latent holds all of the factor's information; 1 - 1/D when it is spread
    evenly. A factor no latent carries anything about (row sum 0) has nothing to split
    and gets 0.
    """
    m = _validate_matrix(m)
    total = m.sum(1)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, 1 - m.max(1) / safe, 0.0)


def disintegration_report(codes, factors, factor_names=None, tau: float = 0.1, num_bins: int = 20) -> dict:
    """`disintegration_report(codes[N, D], factors[N, K]) -> dict` (JSON-serialisable, plain lists and floats).

    Keys: factor_names, mi_matrix [K][D], noise_floor [K], then `factor_summary`'s threshold, latents_per_factor,
    carried, best_m, split_ratio and best_latent [K] (None for a factor no latent carries), tau, num_bins.
    """
    codes = validate_points(codes, "codes")
    _validate_factors(factors, codes.shape[0], factor_names)
    m = mi_matrix(codes, factors, num_bins)
    floor = noise_floor(codes, factors, num_bins)
    names = list(factor_names) if factor_names is not None else [f"factor_{k}" for k in range(m.shape[0])]
    return {
        "factor_names": [str(n) for n in names],
        "mi_matrix": m.tolist(),
        "noise_floor": floor.tolist(),
        **factor_summary(m, tau, floor),
        "tau": float(tau),
        "num_bins": int(num_bins),
    }


def synthetic_split(n: int, m: int = 8, size: int = 32, noise: float = 0.0, rng=None, num_other: int = 2):
    """`synthetic_split(n) -> (codes[n, 2 + num_other], factors[n, 1 + num_other])`: TC ~ 0, one factor split.

    Factor 0 is u uniform in 0..size-1, coded as (u // m, u % m): independent of each
    other when m divides size, so the codes' TC is 0 while u is spread over two latents
    (M = log(size/m) / log(size) and log(m) / log(size)). The other factors are uniform
    in 0..size-1, independent, each coded directly by one latent. `noise` adds
    N(0, noise^2) to every code.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if m < 2 or size < 2 * m or size % m:
        raise ValueError(f"need m >= 2 dividing size with size >= 2m (so both parts vary), got m={m}, size={size}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    if num_other < 0:
        raise ValueError(f"num_other must be >= 0, got {num_other}")
    rng = np.random.default_rng(rng)
    factors = rng.integers(0, size, size=(n, 1 + num_other))
    u = factors[:, 0]
    codes = np.column_stack([u // m, u % m, factors[:, 1:]]).astype(np.float64)
    codes += noise * rng.standard_normal(codes.shape)
    return codes, factors
