"""One TC report per set of codes: the numbers every page, the CLI, `reproduce` and RESULTS.md show (docs/design.md,
"Reading a TC estimate").

Mean and sampled codes are compared with the same estimators on the same points at the same sample size, and
every value carries its estimator, its sample size and a 95% interval. TC >= 0: an estimate or a lower end that noise
takes below 0 is raised to 0 and flagged ("clipped", "ci_clipped").

- `gaussian`: -1/2 log det R of np.cov over all N points (disentanglement_lib's `gaussian_total_correlation`), less
  its small-sample bias (`estimators.gaussian_tc_bias`: exact for Gaussian codes, about D(D - 1) / 4N, so that
  independent codes read ~0); interval: the corrected estimate +- 1.96 bootstrap sd over points (a percentile
  bootstrap would add the bias a second time and exclude the estimate near 0). "plugin" keeps the uncorrected value.
- `knn`: `tc_knn` on `knn_batches` disjoint batches of `knn_points` distinct points; the value is their mean and the
  interval mean +- t * sd / sqrt(batches). Distinct mean codes only: a dataset drawn with replacement repeats
  images, and zero kNN distances between exact copies inflate the estimate.
- `mixture` / `dataset_mc` (apart from the peer estimates on purpose): `tc_dataset`, the Monte-Carlo TC of the
  N-component mixture of posteriors. Where posteriors are narrow next to the spacing of the N points the mixture is
  far spikier than q(z), so this is an upper estimate of the mixture's TC, not the TC of the sampled codes.

`split`: where the Gaussian TC lives. With active latents A and passive P, exactly TC(all) = TC(A) + TC(P) + I(A; P),
I(A; P) = 1/2 (log det R_AA + log det R_PP - log det R); each part is corrected by its own bias, computed for the mean
and the sampled codes with the same A and P and the same bootstrap resamples. The cut between A and P is read from
the data (`metrics.activity.choose_threshold`) unless given, and `activity` reports the split over a range of cuts
(`curve`) with the range over which the active set does not move (`stable`).

The minibatch estimators (MWS, MSS) are training signals, not measurements: with a batch far smaller than the
dataset they are biased (MSS reads negative; `docs/estimators.md`), so they are not part of the report.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtc_core.estimators.offline import (
    gaussian_tc_bias,
    log_det_correlation,
    tc_dataset,
    tc_knn,
    torch_covariance,
    torch_log_det_correlation,
    validate_points,
)
from mtc_core.estimators.sampling import draw_sampled_codes
from mtc_core.metrics.activity import THRESHOLD_RULE, choose_threshold, curve_thresholds, is_active, stable_range

CODES = ("mean", "sampled")
REPORT_VERSION = 3  # 2: bias-corrected Gaussian TC, clipped at 0, the activity curve, the mixture apart;
# 3: the kNN bias correction measured against the surrogates' exact TC (`estimators.offline.tc_knn`)
MIXTURE_POINTS = 10_000  # mixture components of the dataset Monte-Carlo TC; above it, a seeded subsample of this many
PARTS = ("all", "active", "passive", "between")


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
    return split_of_cov(_cov(x), active)


def _cov(x: np.ndarray) -> np.ndarray:
    return np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def split_of_cov(cov: np.ndarray, active: np.ndarray) -> dict[str, float]:
    """`gaussian_tc_split` from the covariance `cov[D, D]` of the codes (one covariance serves every cut)."""
    if (np.diag(cov) <= 0).any():
        raise ValueError(f"latent {int(np.flatnonzero(np.diag(cov) <= 0)[0])} is constant: its Gaussian TC is undefined")
    whole, a, p = log_det_correlation(cov), log_det_correlation(cov[np.ix_(active, active)]), log_det_correlation(cov[np.ix_(~active, ~active)])
    return {"all": -0.5 * whole, "active": -0.5 * a, "passive": -0.5 * p, "between": 0.5 * (a + p - whole)}


def _torch_splits(covs, active: np.ndarray) -> dict[str, list[float]]:
    """`split_of_cov` of a batch of covariances `covs[B, D, D]` (torch), each part a list of B floats."""
    mask = torch.as_tensor(active, device=covs.device)
    whole = torch_log_det_correlation(covs)
    a = torch_log_det_correlation(covs[:, mask][:, :, mask])
    p = torch_log_det_correlation(covs[:, ~mask][:, :, ~mask])
    parts = {"all": -0.5 * whole, "active": -0.5 * a, "passive": -0.5 * p, "between": 0.5 * (a + p - whole)}
    return {part: v.cpu().tolist() for part, v in parts.items()}


def _value(value: float, ci: tuple[float, float], n: int, **extra) -> dict:
    """An entry {"value", "ci", "n", ...}; TC >= 0, so a value or an interval end below 0 is raised to 0 and flagged."""
    lo, hi = ci
    entry = {"value": float(value) if value > 0 else 0.0, "ci": [float(lo) if lo > 0 else 0.0, float(hi) if hi > 0 else 0.0],
             "n": int(n), **extra}
    if value < 0:
        entry["clipped"] = True
    if lo < 0:
        entry["ci_clipped"] = True
    if not all(math.isfinite(c) for c in ci):
        entry["ci"] = [math.nan, math.nan]
    return entry


def _batch_mean(values: list[float], n: int, batches: int) -> dict:
    """Mean of per-batch estimates with a 95% t interval (n points per batch)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return _value(mean, (math.nan, math.nan), n, batches=len(values), raw=mean)
    from scipy import stats  # here, not at the top: importing scipy.stats costs the app's first page ~0.5-1 s

    half = stats.t.ppf(0.975, len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return _value(mean, (mean - half, mean + half), n, batches=len(values), raw=mean)


def _bootstrap(codes: dict[str, np.ndarray], active: np.ndarray, resamples: int, rng: np.random.Generator,
               device=None) -> dict:
    """Bootstrap draws of the (uncorrected) Gaussian split of each code type, sharing the resampled rows. With a
    `device`, the covariances and log dets of BOOTSTRAP_BATCH resamples at a time are computed in float64 torch
    there (the same rows, from the same generator: the numpy values to float tolerance)."""
    n = next(iter(codes.values())).shape[0]
    draws: dict[str, dict[str, list[float]]] = {rep: {} for rep in codes}
    if device is not None:
        return _torch_bootstrap(codes, active, resamples, rng, torch.device(device), draws)
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        for rep, x in codes.items():
            cov = _cov(x[rows])
            if (np.diag(cov) <= 0).any():  # a resample that made a latent constant cannot be scored
                continue
            for part, v in split_of_cov(cov, active).items():
                draws[rep].setdefault(part, []).append(v)
    return draws


BOOTSTRAP_BATCH = 8  # resamples per batched torch computation ([8, N, D] float64 gathered at once)


def _torch_bootstrap(codes, active, resamples, rng, device, draws) -> dict:
    n = next(iter(codes.values())).shape[0]
    on_device = {rep: torch.as_tensor(x, dtype=torch.float64, device=device) for rep, x in codes.items()}
    done = 0
    while done < resamples:
        batch = min(BOOTSTRAP_BATCH, resamples - done)
        rows = torch.as_tensor(np.stack([rng.integers(0, n, n) for _ in range(batch)]), device=device)
        done += batch
        for rep, x in on_device.items():
            covs = torch_covariance(x[rows])
            scorable = (torch.diagonal(covs, dim1=-2, dim2=-1) > 0).all(-1)  # a latent made constant cannot be scored
            for part, values in _torch_splits(covs[scorable], active).items():
                draws[rep].setdefault(part, []).extend(values)
    return draws


def split_bias(n: int, active) -> dict[str, float]:
    """The small-sample bias of each part of the Gaussian split (`estimators.gaussian_tc_bias`): TC(A) and TC(P) have
    their own dimensions' bias, I(A; P) what is left of the whole's, so the corrected parts still sum to the whole."""
    active = np.asarray(active, dtype=bool)
    whole, a, p = (gaussian_tc_bias(n, k) for k in (active.size, int(active.sum()), int((~active).sum())))
    return {"all": whole, "active": a, "passive": p, "between": whole - a - p}


def _corrected(raw: float, bias: float, draws: list[float], n: int) -> dict:
    """The bias-corrected estimate with a 95% interval of +- 1.96 bootstrap sd (the uncorrected value as "plugin")."""
    estimate = raw - bias
    sd = float(np.std(draws, ddof=1)) if len(draws) > 1 else math.nan
    return _value(estimate, (estimate - 1.96 * sd, estimate + 1.96 * sd), n, plugin=float(raw), bias=float(bias))


def corrected_split(codes: np.ndarray, active, cov: np.ndarray | None = None) -> dict[str, float]:
    """Bias-corrected Gaussian split of `codes[N, D]` at the active mask `active[D]`, each part raised to 0 where noise
    took it below (point estimates: the activity curve's values). `cov`: the codes' covariance, if already computed."""
    active = np.asarray(active, dtype=bool)
    raw = gaussian_tc_split(codes, active) if cov is None else split_of_cov(cov, active)
    bias = split_bias(codes.shape[0], active)
    return {part: max(raw[part] - bias[part], 0.0) for part in PARTS}


def activity_curve(codes: dict[str, np.ndarray], var_mu: np.ndarray, threshold: float, covs: dict | None = None) -> dict:
    """The split of each code type at every cut of `curve_thresholds(threshold)` (kept latents only), the active count
    at each, and the range of cuts over which the active set equals the one at `threshold`. `covs`: each code type's
    covariance, if already computed (one covariance serves every cut)."""
    grid = curve_thresholds(threshold)
    curve: dict = {"thresholds": grid, "active_count": [int(is_active(var_mu, t).sum()) for t in grid]}
    for rep, x in codes.items():
        cov = _cov(x) if covs is None else covs[rep]
        parts = [corrected_split(x, is_active(var_mu, t), cov) for t in grid]
        curve[rep] = {part: [p[part] for p in parts] for part in PARTS}
    return {"var_mu": [float(v) for v in var_mu], "threshold": threshold, "curve": curve,
            "stable": stable_range(var_mu, threshold, grid)}


def _knn(codes: dict[str, np.ndarray], report: dict, rng: np.random.Generator, seed: int, batches: int, points: int) -> None:
    """kNN TC on disjoint batches of distinct mean codes, the same rows for both code types."""
    _, first = np.unique(codes["mean"], axis=0, return_index=True)
    rows = rng.permutation(np.sort(first))
    size = min(points, len(rows) // max(batches, 1))
    if batches < 1 or size < 10:
        return
    for rep, x in codes.items():
        values = [tc_knn(x[rows[b * size : (b + 1) * size]], rng=seed + b) for b in range(batches)]
        report[rep]["knn"] = _batch_mean(values, size, batches)


def _mixture(mu: np.ndarray, logvar: np.ndarray, seed: int, batches: int, samples: int, points: int | None = MIXTURE_POINTS) -> dict:
    """The dataset Monte-Carlo TC of the N-point mixture of posteriors, an upper estimate (module docstring); also on
    the first half of the points: a value that still changes with N is flagged as not converged.

    Its cost grows with samples x N: above `points` posteriors (None: never) the mixture is that of a seeded uniform
    subsample of `points` of them, "n" says how many and "of_points" how many there were. A mixture of fewer
    components is spikier, so the value is an upper estimate of the full mixture's TC too (on average; the
    "half_n" value shows by how much halving the components moves it)."""
    total = mu.shape[0]
    if points is not None and total > points:
        rows = np.random.default_rng([seed, 4]).permutation(total)[:points]
        mu, logvar = mu[rows], logvar[rows]
    n, batches = mu.shape[0], max(batches, 1)
    per_batch = max(samples // batches, 1)
    mc = {size: [tc_dataset(mu[:size], logvar[:size], num_samples=per_batch, rng=np.random.default_rng([seed, b]))
                 for b in range(batches)] if size >= 2 else [] for size in (n, n // 2)}
    entry = _batch_mean(mc[n], n, batches) | {"samples": per_batch * batches, "kind": "upper estimate of the mixture's TC"}
    if mc[n // 2]:
        half = _batch_mean(mc[n // 2], n // 2, batches)
        entry["half_n"] = half["value"]
        width = max(entry["ci"][1] - entry["value"], half["ci"][1] - half["value"], 0.0)
        entry["converged"] = bool(abs(half["value"] - entry["value"]) <= 2 * width)
    if n < total:
        entry["of_points"] = total
    return entry


def tc_report(mu, logvar, sampled=None, *, seed: int = 0, bootstrap: int = 200, knn_batches: int = 5, knn_points: int = 2000,
              dataset_mc_samples: int = 2000, active_threshold: float | None = None, device=None,
              mixture_points: int | None = MIXTURE_POINTS) -> dict:
    """TC of the mean codes `mu[N, D]` and of the sampled codes (given, or drawn as mu + exp(logvar / 2) eps).

    Returns {"mean": {"gaussian", "knn"}, "sampled": {"gaussian", "knn"}, each {"value", "ci", "n", ...};
    "mixture": {"dataset_mc"} (an upper estimate, module docstring); "split": {"mean", "sampled"}: {"all", "active",
    "passive", "between"} each {"value", "ci", "n", ...}; "active": [latent indices], "passive": [...], "dropped":
    [latents whose mean code is constant, left out of every estimate]; "activity": the cut, its rule and the split
    over a range of cuts; "settings": {...}}. The cut is read from the data unless `active_threshold` is given.
    `knn_batches` or `dataset_mc_samples` 0 leaves that estimate out. Deterministic for a given seed.
    device (None: numpy on the CPU): a torch device on which the Gaussian TCs' covariances, log dets and bootstrap
    run in float64 (a GPU's; the numpy values to float tolerance). mixture_points: see `_mixture`.
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
    kept = ~np.all(mu == mu[:1], axis=0)
    var_mu = mu.var(0, ddof=1)
    threshold = choose_threshold(var_mu[kept]) if active_threshold is None else float(active_threshold)
    active = kept & is_active(var_mu, threshold)
    codes = {"mean": mu[:, kept], "sampled": sampled[:, kept]}
    settings = {"n": n, "seed": seed, "bootstrap": bootstrap, "knn_batches": knn_batches, "knn_points": knn_points,
                "dataset_mc_samples": dataset_mc_samples, "active_threshold": threshold,
                "threshold_rule": THRESHOLD_RULE if active_threshold is None else "given", "report_version": REPORT_VERSION}
    report: dict = {"active": [int(j) for j in np.flatnonzero(active)], "passive": [int(j) for j in np.flatnonzero(kept & ~active)],
                    "dropped": [int(j) for j in np.flatnonzero(~kept)], "settings": settings,
                    "mean": {}, "sampled": {}, "mixture": {}, "split": {}}
    if kept.sum() < 2:  # TC needs two latents that vary
        return report
    if n <= kept.sum():
        raise ValueError(f"the Gaussian TC of {int(kept.sum())} latents needs more than {int(kept.sum())} points, got {n}")

    active_mask = active[kept]
    draws, bias = _bootstrap(codes, active_mask, bootstrap, rng, device), split_bias(n, active_mask)
    covs = {rep: _covariance(x, device) for rep, x in codes.items()}
    for rep, cov in covs.items():
        raw = split_of_cov(cov, active_mask)
        report["split"][rep] = {part: _corrected(raw[part], bias[part], draws[rep].get(part, []), n) for part in PARTS}
        report[rep]["gaussian"] = report["split"][rep]["all"]
    report["activity"] = activity_curve(codes, var_mu[kept], threshold, covs) | {"var_mu": [float(v) for v in var_mu],
                                                                                  "rule": settings["threshold_rule"]}
    _knn(codes, report, rng, seed, knn_batches, knn_points)
    if dataset_mc_samples > 0:
        report["mixture"]["dataset_mc"] = _mixture(mu[:, kept], logvar[:, kept], seed, knn_batches, dataset_mc_samples, mixture_points)
    return report


def _covariance(x: np.ndarray, device=None) -> np.ndarray:
    """np.cov of `x[N, D]`, or (with a device) the same computed there in float64 torch, returned as numpy."""
    if device is None:
        return _cov(x)
    return torch_covariance(torch.as_tensor(x, dtype=torch.float64, device=torch.device(device))).cpu().numpy()


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
    """"1.137 [1.120, 1.152]": a value with its 95% interval, as every page prints it ("n/a" when absent). A value or
    lower end raised to 0 says so; no value ever prints as "-0.000"."""
    entry = _entry(report, code, estimator, part)
    if entry is None:
        return "n/a"
    v, ci = entry["value"], interval(report, code, estimator, part)
    text = _number(v, digits)
    if ci is not None:
        text += f" [{_number(ci[0], digits)}, {_number(ci[1], digits)}]"
    if entry.get("clipped"):
        text += " (estimate below 0 raised to 0: TC >= 0)"
    elif entry.get("ci_clipped"):
        text += " (lower end clipped at 0)"
    if ci is not None and v < ci[0]:  # a report of the first version: its percentile bootstrap added the bias again
        text += " (interval above the estimate: bootstrap bias near 0)"
    if v < 0:  # a report of the first version: TC >= 0, a negative estimate is the estimator's noise around ~0
        text += " (below 0: estimator noise; TC >= 0)"
    return text


def _number(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # never "-0.000"


def mixture_note(report: dict | None, digits: int = 3) -> str | None:
    """The dataset Monte-Carlo estimate in words, with its warning: an upper estimate of the N-point mixture's TC, never
    the TC of the sampled codes (every page and output that shows it shows this; None when the report has none)."""
    entry = _entry(report, "mixture", "dataset_mc", None) or _entry(report, "sampled", "dataset_mc", None)  # v1: "sampled"
    if entry is None:
        return None
    code = "mixture" if _entry(report, "mixture", "dataset_mc", None) else "sampled"
    text = (f"Upper estimate, not a peer of the values above: the Monte-Carlo TC of the mixture of the {entry['n']:,} posteriors "
            f"reads {describe(report, code, 'dataset_mc', digits=digits)}. Where posteriors are narrow next to the spacing of "
            "the points the mixture is far spikier than q(z), so this lies above the sampled codes' TC (on independent codes "
            "with posterior variance 0.5 it reads +0.32 nats at N = 2,000 and +0.12 at N = 10,000; docs/estimators.md).")
    if entry.get("converged") is False:
        text += f" It still changes with N (on half the points: {_number(entry['half_n'], digits)})."
    return text
