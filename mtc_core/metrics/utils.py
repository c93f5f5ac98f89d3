"""Shared helpers of the metrics: input checks, histogram discretisation, vectorised discrete MI.

Arrays are points x dims (disentanglement_lib uses dims x points). The MI helpers give the
values of `sklearn.metrics.mutual_info_score` (natural log) for every (code, factor) pair at
once: one `np.bincount` over combined integer labels instead of D * K sklearn calls.
"""

from __future__ import annotations

import numpy as np

from mtc_core.estimators import validate_points

# Cells of the joint histograms counted by one np.bincount call (bounds the memory of the
# combined-label array to ~64 MB of int64).
_MAX_JOINT_ELEMENTS = 8_000_000
MAX_BINS = 10_000  # histogram bins per latent


def check_codes(codes, name: str = "codes") -> np.ndarray:
    """`codes[N, D]` -> float array (float32 kept, anything else float64); ValueError naming the problem."""
    return validate_points(codes, name, keep_float32=True)


def check_factors(factors, num_points: int, name: str = "factors", allow_constant: bool = False) -> np.ndarray:
    """`factors[N, K]` integer classes -> int64 array; ValueError if not integers, wrong length or (unless allowed) constant."""
    factors = np.asarray(factors)
    if factors.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [points, factors], got shape {factors.shape}")
    if factors.shape[0] != num_points:
        raise ValueError(f"codes and {name} have different numbers of points: {num_points} vs {factors.shape[0]}")
    if factors.shape[1] == 0:
        raise ValueError(f"{name} has no columns (K = 0)")
    if factors.dtype.kind == "f":
        if not np.isfinite(factors).all():
            raise ValueError(f"{name} contains NaN or inf")
        if not np.array_equal(factors, np.round(factors)):
            raise ValueError(f"{name} must be integer classes, got non-integer values")
    elif factors.dtype.kind not in "iub":
        raise ValueError(f"{name} must be integer classes, got dtype {factors.dtype}")
    factors = factors.astype(np.int64)
    constant = np.flatnonzero(np.all(factors == factors[:1], axis=0))
    if constant.size and not allow_constant:
        raise ValueError(f"{name} column {int(constant[0])} is constant: its entropy is 0 and the score divides by it")
    return factors


def check_split(codes_train, factors_train, codes_test, factors_test) -> tuple[np.ndarray, ...]:
    """Checks a train / test pair of (codes, factors) and that both have the same D and K."""
    codes_train = check_codes(codes_train, "codes_train")
    codes_test = check_codes(codes_test, "codes_test")
    factors_train = check_factors(factors_train, codes_train.shape[0], "factors_train")
    factors_test = check_factors(factors_test, codes_test.shape[0], "factors_test", allow_constant=True)
    if codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError(f"codes_train has {codes_train.shape[1]} dims but codes_test has {codes_test.shape[1]}")
    if factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError(f"factors_train has {factors_train.shape[1]} factors but factors_test has {factors_test.shape[1]}")
    return codes_train, factors_train, codes_test, factors_test


def fit_rows(factors: np.ndarray, fit_points: int | None, seed: int = 0) -> np.ndarray | None:
    """The training rows a metric fits its classifiers on when there are more than `fit_points` (None: all rows, also
    when `fit_points` is None): a seeded uniform subsample of `fit_points` rows without replacement, plus the first row
    of any class of a factor the subsample missed (so every class is still fitted), in their original order.

    A classifier fitted on a uniform subsample estimates the same importances and accuracies as on all rows, with
    the noise of `fit_points` points instead of N (tests/test_scale.py holds them within tolerance)."""
    n = factors.shape[0]
    if fit_points is None or n <= fit_points:
        return None
    if isinstance(fit_points, bool) or not isinstance(fit_points, int | np.integer) or fit_points < 2:
        raise ValueError(f"fit_points must be an integer >= 2 or None, got {fit_points!r}")
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng([seed, 23]).choice(n, size=int(fit_points), replace=False)] = True
    for k in range(factors.shape[1]):
        classes, first = np.unique(factors[:, k], return_index=True)
        present = np.isin(classes, factors[chosen, k])
        chosen[first[~present]] = True
    return np.flatnonzero(chosen)


def rescale_columns(reference: np.ndarray, *others: np.ndarray, low: float = 2.0**-100, high: float = 2.0**100,
                    target: int = 0) -> tuple[np.ndarray, ...]:
    """(reference, *others) with each column multiplied by the power of two that brings its largest |value| in
    `reference` into [2^(target - 1), 2^target), for the columns whose largest |value| lies outside [low, high]
    (others untouched).

    For the metrics that ignore a column's scale (histogram bins, trees, standardised regressions, correlations)
    this changes nothing but keeps squares and sums of codes near 1e300 from overflowing float64 (and trees'
    float32 copies from becoming inf), and tiny codes from underflowing; a power of two scales exactly, except
    for values more than ~1e300 below their column's largest."""
    peak = np.abs(reference).max(axis=0) if reference.size else np.zeros(reference.shape[1])
    exponent = np.frexp(peak)[1] - target
    exponent[(peak == 0) | ((peak >= low) & (peak <= high))] = 0
    if not exponent.any():
        return (reference, *others)
    return tuple(np.ldexp(a, -exponent).astype(a.dtype, copy=False) for a in (reference, *others))


def discretize(codes, num_bins: int = 20) -> np.ndarray:
    """`discretize(codes[N, D], num_bins=20) -> int64[N, D]` with labels 1..num_bins.

    disentanglement_lib's `_histogram_discretize`, per dimension
    `np.digitize(x, np.histogram(x, num_bins)[1][:-1])`: the same edges, built by the same
    `np.linspace` call as `np.histogram` (in the codes' own float type), without counting.
    """
    codes = check_codes(codes)
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or not 1 <= num_bins <= MAX_BINS:
        raise ValueError(f"num_bins must be an integer in 1..{MAX_BINS}, got {num_bins!r}")
    (codes,) = rescale_columns(codes)  # equal-width bins ignore scale; the span of codes near 1e308 would overflow
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        column = codes[:, j]
        first, last = column.min(), column.max()
        if first == last:  # np.histogram widens an empty range by 0.5 on each side
            first, last = first - 0.5, last + 0.5
        edges = np.linspace(first, last, int(num_bins) + 1, endpoint=True, dtype=np.result_type(first, last, column))
        if np.any(edges[:-1] >= edges[1:]):
            raise ValueError(f"codes dimension {j} spans too small a range for {num_bins} bins")
        out[:, j] = np.digitize(column, edges[:-1])
    return out


def dense_labels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`x[N, M]` integer-valued -> (labels[N, M] in 0..n_m - 1, n[M]): each column's values ranked densely."""
    x = np.asarray(x)
    labels = np.empty(x.shape, dtype=np.int64)
    sizes = np.empty(x.shape[1], dtype=np.int64)
    for j in range(x.shape[1]):
        column = x[:, j]
        low, high = column.min(), column.max()
        if column.dtype.kind in "iub" and high - low <= 4 * len(column):
            present = np.bincount(column - low) > 0
            rank = np.cumsum(present) - 1
            labels[:, j] = rank[column - low]
            sizes[j] = rank[-1] + 1
        else:
            values, labels[:, j] = np.unique(column, return_inverse=True)
            sizes[j] = len(values)
    return labels, sizes


def _mutual_info_pairs(a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """MI [A, B] between every column of labels a[N, A] and every column of labels b[N, B].

    The joint histograms of all pairs are counted by one bincount on the combined label
    pair * Ma * Mb + a * Mb + b (Ma, Mb the largest label counts); each nonzero cell then
    contributes p (log p - log p_a p_b), written term by term as sklearn.metrics.mutual_info_score.
    """
    n, ma, mb = a.shape[0], int(na.max()), int(nb.max())
    a_t, b_t = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    out = np.empty((a.shape[1], b.shape[1]))
    step = max(1, _MAX_JOINT_ELEMENTS // max(n * b.shape[1], b.shape[1] * ma * mb))
    for start in range(0, a.shape[1], step):
        block = a_t[start:start + step]
        pair = np.arange(block.shape[0] * b.shape[1]).reshape(block.shape[0], b.shape[1])
        # built in place: large temporaries cost more than the arithmetic
        joint = np.empty((*pair.shape, n), dtype=np.intp)
        np.multiply(block[:, None, :], mb, out=joint)
        joint += b_t[None]
        joint += (pair * (ma * mb))[:, :, None]
        counts = np.bincount(joint.ravel(), minlength=pair.size * ma * mb).reshape(*pair.shape, ma, mb)
        row = counts.sum(axis=3, keepdims=True)
        col = counts.sum(axis=2, keepdims=True)
        i, j, r, c = np.nonzero(counts)
        count = counts[i, j, r, c].astype(np.float64)
        p = count / n
        log_outer = -np.log(row[i, j, r, 0].astype(np.float64) * col[i, j, 0, c]) + 2 * np.log(n)
        terms = p * (np.log(count) - np.log(n)) + p * log_outer
        terms[np.abs(terms) < np.finfo(np.float64).eps] = 0.0
        out[start:start + step] = np.bincount(pair[i, j], weights=terms, minlength=pair.size).reshape(pair.shape)
    # sklearn returns 0 when either labelling is constant, and clips tiny negatives to 0
    out[na == 1, :] = 0.0
    out[:, nb == 1] = 0.0
    return np.clip(out, 0.0, None)


def discrete_mutual_info(codes_discrete, factors) -> np.ndarray:
    """`discrete_mutual_info(codes_discrete[N, D], factors[N, K]) -> MI[D, K]` in nats.

    MI[j, k] = sklearn.metrics.mutual_info_score(factors[:, k], codes_discrete[:, j]) (plug-in
    estimate from the joint histogram), computed for all pairs with one bincount.
    """
    a, na = dense_labels(np.asarray(codes_discrete))
    b, nb = dense_labels(np.asarray(factors))
    return _mutual_info_pairs(a, na, b, nb)


def discrete_entropy(factors) -> np.ndarray:
    """`discrete_entropy(factors[N, K]) -> H[K]` in nats, = mutual_info_score(v, v) per column."""
    labels, sizes = dense_labels(np.asarray(factors))
    n = labels.shape[0]
    h = np.empty(labels.shape[1])
    for k in range(labels.shape[1]):
        p = np.bincount(labels[:, k], minlength=sizes[k]) / n
        h[k] = -np.sum(p * np.log(p)) if sizes[k] > 1 else 0.0
    return h
