"""Reading a TC report's activity curve: the active/passive split over a range of cuts instead of at one
(docs/design.md, "Conclusions that survive the analysis choices").

`tc_report.tc_report` stores `report["activity"]` = {"var_mu": [Var(mu_j), every latent], "threshold": the cut chosen
from the data, "rule": how, "curve": {"thresholds": [...], "active_count": [...], "mean" / "sampled": {part: [...]}},
"stable": [lo, hi] (the cuts of the curve giving the active set of the chosen one) or None}. The curve's values are
bias-corrected point estimates of the Gaussian split; the intervals exist at the chosen cut only (`report["split"]`).

A report from before the curve has no "activity": `activity(report)` is then None and every reader here says so
with None, so that a page falls back to the report's one split.
"""

from __future__ import annotations

import math

import numpy as np

from mtc_core.evaluation.seeds import group_label, group_runs
from mtc_core.metrics.activity import is_active

PARTS = ("all", "active", "passive", "between")


def _numbers(value, length: int | None = None) -> bool:
    ok = isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    return ok and (length is None or len(value) == length)


def activity(report: dict | None) -> dict | None:
    """`report["activity"]` when it has the shape above (a stored report is read from a user's file), else None."""
    act = report.get("activity") if isinstance(report, dict) else None
    if not isinstance(act, dict) or not _numbers(act.get("var_mu")) or not isinstance(act.get("threshold"), int | float):
        return None
    curve = act.get("curve")
    grid = curve.get("thresholds") if isinstance(curve, dict) else None
    if not _numbers(grid) or not grid or grid != sorted(grid) or not _numbers(curve.get("active_count"), len(grid)):
        return None
    for code in ("mean", "sampled"):
        parts = curve.get(code)
        if not isinstance(parts, dict) or not all(_numbers(parts.get(p), len(grid)) for p in PARTS):
            return None
    stable = act.get("stable")
    if stable is not None and not (_numbers(stable, 2) and stable[0] <= stable[1]):
        return None
    return act


def _mask(act: dict, threshold: float, dropped=()) -> np.ndarray:
    mask = is_active(np.asarray(act["var_mu"], dtype=np.float64), threshold)
    mask[[j for j in dropped if 0 <= j < mask.size]] = False
    return mask


def curve_index(report: dict | None, threshold: float) -> int | None:
    """The index of the curve's cut that gives the same active set as `threshold` (that cut itself when it is on the
    curve); None without a curve or when no cut of the curve gives that set."""
    act = activity(report)
    if act is None:
        return None
    grid = act["curve"]["thresholds"]
    exact = [i for i, t in enumerate(grid) if math.isclose(t, threshold, rel_tol=1e-9)]
    if exact:
        return exact[0]
    want = _mask(act, threshold)
    return next((i for i, t in enumerate(grid) if np.array_equal(_mask(act, t), want)), None)


def split_at(report: dict | None, threshold: float) -> dict | None:
    """The Gaussian split at one cut, read from the curve: {"threshold", "active", "passive" (latent indices),
    "mean" / "sampled": {part: value}, "at_default": whether the active set is the report's own (its `split`, with
    intervals)}; None without a curve or off it."""
    i = curve_index(report, threshold)
    if i is None:
        return None
    act, dropped = report["activity"], report.get("dropped") or []
    mask = _mask(act, threshold, dropped)
    curve = act["curve"]
    return {"threshold": float(threshold),
            "active": [int(j) for j in np.flatnonzero(mask)],
            "passive": [int(j) for j in np.flatnonzero(~mask) if j not in dropped],
            **{code: {p: float(curve[code][p][i]) for p in PARTS} for code in ("mean", "sampled")},
            "at_default": sorted(report.get("active") or []) == [int(j) for j in np.flatnonzero(mask)]}


def value_at(report: dict | None, code: str, part: str, threshold: float) -> float | None:
    """One part of the split at one cut (None without a curve or off it)."""
    split = split_at(report, threshold)
    return None if split is None else split[code][part]


def stable(report: dict | None) -> tuple[float, float] | None:
    """(lo, hi): the cuts over which the report's active set does not move; None without a curve or a stable range."""
    act = activity(report)
    return None if act is None or act.get("stable") is None else (float(act["stable"][0]), float(act["stable"][1]))


def common_stable(reports: list[dict | None]) -> tuple[float, float] | None:
    """The intersection of the reports' stable ranges: the cuts at which no report's active set moves; None when one
    has none or they do not overlap."""
    ranges = [stable(r) for r in reports]
    if not ranges or any(r is None for r in ranges):
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return (lo, hi) if lo <= hi * (1 + 1e-9) else None


def common_grid(reports: list[dict | None]) -> list[float]:
    """The cuts on every report's curve (each curve is the shared log-spaced grid plus its own chosen cut); [] when
    one has no curve."""
    acts = [activity(r) for r in reports]
    if not acts or any(a is None for a in acts):
        return []
    grid = acts[0]["curve"]["thresholds"]
    return [t for t in grid if all(any(math.isclose(t, u, rel_tol=1e-9) for u in a["curve"]["thresholds"]) for a in acts[1:])]


def cuts(reports: list[dict | None]) -> tuple[list[float], tuple[float, float] | None]:
    """(the cuts at which to judge a claim about the active latents of these reports, their common stable range): the
    cuts of any curve inside the common stable range when there is one, else every cut on all curves (range None)."""
    common = common_stable(reports)
    if common is None:
        return common_grid(reports), None
    inside = {round(t, 12) for r in reports for t in activity(r)["curve"]["thresholds"]
              if common[0] * (1 - 1e-9) <= t <= common[1] * (1 + 1e-9)}
    return sorted(inside), common


def configuration_curve(reports: list[dict | None], code: str = "mean", part: str = "active") -> dict | None:
    """One configuration's curve over its seeds' reports: {"thresholds": the common cuts, "per_seed": [[value per cut]
    per seed], "mean": [mean over seeds per cut], "defaults": [each seed's chosen cut], "active_count": [mean per cut],
    "stable": the common stable range}; None when a report has no curve."""
    grid = common_grid(reports)
    if not grid:
        return None
    per_seed = [[value_at(r, code, part, t) for t in grid] for r in reports]
    counts = [[activity(r)["curve"]["active_count"][curve_index(r, t)] for t in grid] for r in reports]
    return {"thresholds": grid, "per_seed": per_seed, "mean": [float(np.mean(col)) for col in zip(*per_seed, strict=True)],
            "active_count": [float(np.mean(col)) for col in zip(*counts, strict=True)],
            "defaults": [float(activity(r)["threshold"]) for r in reports], "stable": common_stable(reports)}


def configuration_curves(rows: list[dict], code: str = "mean", part: str = "active") -> list[dict]:
    """`configuration_curve` per configuration of evaluation rows ({"label", "group", "evaluation"}, as `reproduce` and
    the app's tables have them), labelled without the seed: [{"label", "model", "seeds", **curve}], configurations whose
    reports have no curve left out."""
    out = []
    for members in group_runs(rows):
        curve = configuration_curve([m["evaluation"].get("tc") for m in members], code, part)
        if curve is not None:
            out.append({"label": group_label(members[0]["label"]), "model": members[0].get("model"),
                        "seeds": [m.get("seed") for m in members], **curve})
    return out
