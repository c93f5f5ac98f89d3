"""One TC report per set of codes: the numbers every page, the CLI, `reproduce` and RESULTS.md show (docs/design.md, "Reading a TC estimate").

Mean and sampled codes are compared with the same estimators on the same points at the same sample size, and
every value carries its estimator, its sample size and a 95% interval:

- `gaussian`: -1/2 log det R of np.cov over all N points (disentanglement_lib's `gaussian_total_correlation`);
  interval: percentile bootstrap over points.
- `knn`: `tc_knn` on `knn_batches` disjoint batches of `knn_points` distinct points; the value is their mean and the
  interval mean +- t * sd / sqrt(batches). Distinct mean codes only: a dataset drawn with replacement repeats
  images, and zero kNN distances between exact copies inflate the estimate.
- `dataset_mc` (sampled codes only): `tc_dataset`, the Monte-Carlo TC of the N-component mixture of posteriors,
  repeated on `knn_batches` independent draws; interval as for kNN.

`split`: where the Gaussian TC lives. With active latents A (Var mu_j > `active_threshold`, the app's threshold)
and passive P, exactly TC(all) = TC(A) + TC(P) + I(A; P), I(A; P) = 1/2 (log det R_AA + log det R_PP - log det R);
computed for the mean and the sampled codes with the same A and P and the same bootstrap resamples.

The minibatch estimators (MWS, MSS) are training signals, not measurements: with a batch far smaller than the
dataset they are biased (MSS reads negative; `docs/estimators.md`), so they are not part of the report.
"""

from __future__ import annotations

import math

import numpy as np

from mtc_core.estimators.offline import log_det_correlation, tc_dataset, tc_knn, validate_points
from mtc_core.estimators.sampling import draw_sampled_codes
from mtc_core.metrics.activity import ACTIVITY_THRESHOLD, is_active

CODES = ("mean", "sampled")


def gaussian_tc_split(codes, active) -> dict[str, float]:
    """`codes[N, D]`, `active[D]` (bool) -> {"all", "active", "passive", "between"} Gaussian TC in nats.

    all = active + passive + between exactly: TC(A) = -1/2 log det R_AA, TC(P) = -1/2 log det R_PP and
    between = I(A; P) = 1/2 (log det R_AA + log det R_PP - log det R). A side with fewer than 2 latents has TC 0;
    with an empty side, between is 0. Constant latents raise (drop them first: `drop_constant_dims`).
    """
    x = validate_points(codes)
    active = np.asarray(active, dtype=bool)
    if active.shape != (x.shape[1],):
        raise ValueError(f"active must be a bool mask of length {x.shape[1]}, got shape {active.shape}")
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    if (np.diag(cov) <= 0).any():
        raise ValueError(f"latent {int(np.flatnonzero(np.diag(cov) <= 0)[0])} is constant: its Gaussian TC is undefined")
    whole, a, p = log_det_correlation(cov), log_det_correlation(cov[np.ix_(active, active)]), log_det_correlation(cov[np.ix_(~active, ~active)])
    return {"all": -0.5 * whole, "active": -0.5 * a, "passive": -0.5 * p, "between": 0.5 * (a + p - whole)}


def _value(value: float, ci: tuple[float, float], n: int, **extra) -> dict:
    return {"value": float(value), "ci": [float(ci[0]), float(ci[1])], "n": int(n), **extra}


def _batch_mean(values: list[float], n: int, batches: int) -> dict:
    """Mean of per-batch estimates with a 95% t interval (n points per batch)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return _value(mean, (math.nan, math.nan), n, batches=len(values))
    from scipy import stats  # here, not at the top: importing scipy.stats costs the app's first page ~0.5-1 s

    half = stats.t.ppf(0.975, len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return _value(mean, (mean - half, mean + half), n, batches=len(values))


def _bootstrap(codes: dict[str, np.ndarray], active: np.ndarray, resamples: int, rng: np.random.Generator) -> dict:
    """Percentile-bootstrap draws of the Gaussian split of each code type, sharing the resampled rows."""
    n = next(iter(codes.values())).shape[0]
    draws: dict[str, dict[str, list[float]]] = {rep: {} for rep in codes}
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        for rep, x in codes.items():
            resampled = x[rows]
            if (resampled.var(0) <= 0).any():  # a resample that made a latent constant cannot be scored
                continue
            for part, v in gaussian_tc_split(resampled, active).items():
                draws[rep].setdefault(part, []).append(v)
    return draws


def _interval(draws: list[float]) -> tuple[float, float]:
    if not draws:
        return math.nan, math.nan
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def tc_report(mu, logvar, sampled=None, *, seed: int = 0, bootstrap: int = 200, knn_batches: int = 5, knn_points: int = 2000,
              dataset_mc_samples: int = 2000, active_threshold: float = ACTIVITY_THRESHOLD) -> dict:
    """TC of the mean codes `mu[N, D]` and of the sampled codes (given, or drawn as mu + exp(logvar / 2) eps).

    Returns {"mean": {"gaussian", "knn"}, "sampled": {"gaussian", "knn", "dataset_mc"}, each {"value", "ci", "n", ...};
    "split": {"mean", "sampled"}: {"all", "active", "passive", "between"} each {"value", "ci", "n"};
    "active": [latent indices], "passive": [...], "dropped": [latents whose mean code is constant, left out of
    every estimate], "settings": {...}}. Deterministic for a given seed.
    """
    mu = validate_points(mu, "mu")
    logvar = validate_points(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {mu.shape} and {logvar.shape}")
    rng = np.random.default_rng(seed)
    if sampled is None:
        sampled = draw_sampled_codes(mu, logvar, rng)
    sampled = validate_points(sampled, "sampled")
    if sampled.shape != mu.shape:
        raise ValueError(f"sampled codes must have the shape of mu {mu.shape}, got {sampled.shape}")
    n = mu.shape[0]
    constant = np.all(mu == mu[:1], axis=0)
    kept = ~constant
    var_mu = mu.var(0, ddof=1)
    active_mask = is_active(var_mu, active_threshold)[kept]
    codes = {"mean": mu[:, kept], "sampled": sampled[:, kept]}
    settings = {"n": n, "seed": seed, "bootstrap": bootstrap, "knn_batches": knn_batches, "knn_points": knn_points,
                "dataset_mc_samples": dataset_mc_samples, "active_threshold": active_threshold}
    report: dict = {"active": [int(j) for j in np.flatnonzero(kept & is_active(var_mu, active_threshold))],
                    "passive": [int(j) for j in np.flatnonzero(kept & ~is_active(var_mu, active_threshold))],
                    "dropped": [int(j) for j in np.flatnonzero(constant)], "settings": settings,
                    "mean": {}, "sampled": {}, "split": {}}
    if kept.sum() < 2:  # TC needs two latents that vary
        return report

    draws = _bootstrap(codes, active_mask, bootstrap, rng)
    for rep, x in codes.items():
        split = gaussian_tc_split(x, active_mask)
        report["split"][rep] = {part: _value(v, _interval(draws[rep].get(part, [])), n) for part, v in split.items()}
        report[rep]["gaussian"] = report["split"][rep]["all"]

    # kNN: disjoint batches of distinct mean codes, the same rows for both code types
    _, first = np.unique(codes["mean"], axis=0, return_index=True)
    rows = rng.permutation(np.sort(first))
    size = min(knn_points, len(rows) // max(knn_batches, 1))
    if size >= 10:
        for rep, x in codes.items():
            values = [tc_knn(x[rows[b * size : (b + 1) * size]], rng=seed + b) for b in range(knn_batches)]
            report[rep]["knn"] = _batch_mean(values, size, knn_batches)

    # dataset Monte-Carlo: the TC of the N-point mixture of posteriors. Where posteriors are narrow next to the
    # spacing of N points the mixture is spikier than q(z) and its TC falls as N grows, so it is also computed on
    # the first half of the points: a value that still changes with N is flagged as not converged
    per_batch = max(dataset_mc_samples // max(knn_batches, 1), 1)
    mc = {}
    for size in (n, n // 2):
        mc[size] = [tc_dataset(mu[:size, kept], logvar[:size, kept], num_samples=per_batch, rng=np.random.default_rng([seed, b]))
                    for b in range(knn_batches)] if size >= 2 else []
    entry = _batch_mean(mc[n], n, knn_batches) | {"samples": per_batch * knn_batches}
    if mc[n // 2]:
        half = _batch_mean(mc[n // 2], n // 2, knn_batches)
        entry["half_n"] = half["value"]
        width = max(entry["ci"][1] - entry["value"], half["ci"][1] - half["value"], 0.0)
        entry["converged"] = bool(abs(half["value"] - entry["value"]) <= 2 * width)
    report["sampled"]["dataset_mc"] = entry
    return report


def value(report: dict | None, code: str, estimator: str, part: str | None = None) -> float | None:
    """The stored value of one quantity (None when absent): `value(r, "mean", "gaussian")`,
    `value(r, "mean", "gaussian", part="active")` for the split."""
    entry = _entry(report, code, estimator, part)
    return None if entry is None else entry["value"]


def _entry(report: dict | None, code: str, estimator: str, part: str | None) -> dict | None:
    # a stored report is read from a user's metrics.json: any level may hold something other than a dict
    path = ("split", code, part) if part else (code, estimator)
    node = report
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and isinstance(node.get("value"), int | float) else None


def interval(report: dict | None, code: str, estimator: str, part: str | None = None) -> list[float] | None:
    """The stored 95% interval [lo, hi] of one quantity (as `describe` prints it); None when absent or not finite."""
    entry = _entry(report, code, estimator, part)
    ci = entry.get("ci") if entry is not None else None
    ok = isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, int | float) and math.isfinite(c) for c in ci)
    return ci if ok else None


def describe(report: dict | None, code: str, estimator: str, part: str | None = None, digits: int = 3) -> str:
    """"1.137 [1.120, 1.152]": a value with its 95% interval, as every page prints it ("n/a" when absent)."""
    entry = _entry(report, code, estimator, part)
    if entry is None:
        return "n/a"
    v, ci = entry["value"], interval(report, code, estimator, part)
    text = f"{v:.{digits}f}"
    if ci is not None:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    if ci is not None and v < ci[0]:
        # near 0 the bootstrap replicates carry the estimator's upward bias (~D(D - 1) / (4N)) on top of the estimate's
        text += " (interval above the estimate: bootstrap bias near 0)"
    if v < 0:  # TC >= 0: a negative estimate is the estimator's noise around ~0, said as such
        text += " (below 0: estimator noise; TC >= 0)"
    return text
