"""Verdicts that survive the analysis choices (docs/design.md, "Conclusions that survive the analysis choices"):
each claim is judged seed by seed and pair by pair, a value within resolution of 0 is read as such, a claim about
the active latents is judged at every cut where every seed's active set is stable, and the remedy also by an
estimator it does not optimise.

A "run" here is one seed of a configuration: {"seed", "tc" (its TC report), "recon"}. A comparison's status is
"holds" (for every seed, or every pair of seeds), "does not hold" (for none), "mixed" (for some: the numbers say
which), "depends on the activity threshold" (a claim about the active latents that changes with the cut) or
"not judged" (a value is missing).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from mtc_core.evaluation import tc_report, thresholds

HOLDS, FAILS, MIXED, DEPENDS, NOT_JUDGED = "holds", "does not hold", "mixed", "depends on the activity threshold", "not judged"
MAX_SAMPLED, MIN_GAP = 0.1, 3.0  # claim 1: sampled TC below 0.1 nats and the mean TC above 3x the sampled TC
MIN_RATIO, MAX_RECON = 2.0, 0.10  # claim 2: mean TC >= 2x lower at a reconstruction error at most 10% above theirs


@dataclass(frozen=True)
class Measure:
    """One TC value and whether it is within resolution of 0 (its 95% interval reaches 0, or it is 0)."""

    value: float
    zero: bool


def num(x: float, digits: int = 3) -> str:
    """A number as RESULTS.md prints it: never "-0.000"."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def pct(x: float) -> str:
    """A relative change, "+5.3%" / "-2.0%", never "-0.0%"."""
    text = f"{x:+.1%}"
    return "0.0%" if float(text.rstrip("%")) == 0 else text


def cut(t: float) -> str:
    return f"{t:.2g}"


def null_bound(n: int, k: int) -> float:
    """The largest bias-corrected Gaussian TC that independent codes give in 97.5% of draws: 2N TC_hat ~ chi^2_k under
    independence (k = pairs of latents coupled), the correction removes k / 2N (docs/design.md, "Conclusions that
    survive the analysis choices"). Used where a curve value has no interval of its own."""
    if k <= 0:
        return 0.0
    from scipy import stats  # here: importing scipy.stats is slow, most callers never need it

    return float((stats.chi2.ppf(0.975, k) - k) / (2 * n))


def _degrees(part: str, active: int, passive: int) -> int:
    return {"all": (active + passive) * (active + passive - 1) // 2, "active": active * (active - 1) // 2,
            "passive": passive * (passive - 1) // 2, "between": active * passive}[part]


def measure(report: dict | None, code: str, estimator: str, part: str | None = None, threshold: float | None = None) -> Measure | None:
    """A value of the report with its resolution: the entry's own interval, or at a cut off the report's own split
    the curve's point estimate against `null_bound`; None where the report has no such value."""
    if threshold is not None and part is not None:
        split = thresholds.split_at(report, threshold)
        if split is None:
            return None
        if not split["at_default"]:
            v = split[code][part]
            n = (report.get("settings") or {}).get("n")
            bound = null_bound(n, _degrees(part, len(split["active"]), len(split["passive"]))) if isinstance(n, int) else 0.0
            return Measure(v, v <= bound)
    v = tc_report.value(report, code, estimator, part)
    if v is None:
        return None
    ci = tc_report.interval(report, code, estimator, part)
    return Measure(float(v), v <= 0 or (ci is not None and ci[0] <= 0))


def status(oks: list[bool]) -> str:
    return HOLDS if all(oks) else FAILS if not any(oks) else MIXED


def show(m: Measure) -> str:
    return num(m.value) + (" (below resolution)" if m.zero else "")


# --------------------------------------------------------------------------------------------- claim 1, per seed


def claim_one(runs: list[dict], threshold: float | None = None, part: str | None = None) -> tuple[str, str]:
    """(status, numbers): per seed, sampled TC < MAX_SAMPLED and mean TC > MIN_GAP x sampled (Gaussian; `part` of the
    split at `threshold`, or all latents). Both within resolution of 0: "both below resolution", not a 1.0x."""
    oks, texts = [], []
    for run in runs:
        m, s = (measure(run["tc"], code, "gaussian", part, threshold) for code in ("mean", "sampled"))
        if m is None or s is None:
            return NOT_JUDGED, f"seed {run['seed']}: no value"
        if m.zero and s.zero:
            ok, ratio = False, "both below resolution"
        else:
            ok = s.value < MAX_SAMPLED and m.value > MIN_GAP * s.value and not m.zero
            ratio = "sampled below resolution" if s.zero else f"{m.value / s.value:.1f}x"
        oks.append(ok)
        texts.append(f"seed {run['seed']}: sampled {num(s.value)}, mean {num(m.value)} ({ratio})")
    return status(oks), "; ".join(texts)


# ------------------------------------------------------------------------------------ claim 2, every pair of seeds


def _ratio(rival: Measure, remedy: Measure) -> tuple[float, str]:
    """(rival / remedy as a sort key, its words): within resolution of 0 on one side or both is said, not divided."""
    if rival.zero and remedy.zero:
        return 1.0, "both below resolution"
    if remedy.zero:
        return math.inf, "lower: RTC-VAE's below resolution"
    if rival.zero:
        return 0.0, "higher: theirs below resolution"
    r = rival.value / remedy.value
    return r, f"{r:.1f}x lower" if r >= 1 else f"{1 / r:.1f}x higher"


def _ratio_ok(rival: Measure, remedy: Measure) -> bool:
    key, _ = _ratio(rival, remedy)
    return not (rival.zero and remedy.zero) and key >= MIN_RATIO


def _seeds(runs: list[dict], values: list[float], digits: int = 3) -> str:
    return ", ".join(num(v, digits) for v in values)


def compare(remedy: list[dict], rival: list[dict], get: Callable[[dict], Measure | None], what: str) -> tuple[str, str]:
    """(status, numbers) of RTC-VAE's runs against one rival's: a pair of seeds holds when the rival's `what` is >=
    MIN_RATIO x RTC-VAE's and RTC-VAE's reconstruction error at most MAX_RECON above the rival's."""
    a, b = [get(r) for r in rival], [get(r) for r in remedy]
    recon_a, recon_b = [r.get("recon") for r in rival], [r.get("recon") for r in remedy]
    if any(m is None for m in a + b) or not all(isinstance(x, int | float) for x in recon_a + recon_b):
        return NOT_JUDGED, "a value is missing"
    pairs = [(_ratio(x, y)[0], _ratio_ok(x, y) and rb / ra - 1 <= MAX_RECON, rb / ra - 1, _ratio(x, y)[1])
             for x, ra in zip(a, recon_a, strict=True) for y, rb in zip(b, recon_b, strict=True)]
    mean_a = Measure(statistics.mean(m.value for m in a), all(m.zero for m in a))
    mean_b = Measure(statistics.mean(m.value for m in b), all(m.zero for m in b))
    change = statistics.mean(recon_b) / statistics.mean(recon_a) - 1
    text = f"{what} {num(mean_a.value)} -> {num(mean_b.value)} ({_ratio(mean_a, mean_b)[1]}), reconstruction {pct(change)}"
    if len(pairs) > 1:
        worst = min(pairs, key=lambda p: p[0])
        text += (f"; per seed (in seed order) {_seeds(rival, [m.value for m in a])} -> {_seeds(remedy, [m.value for m in b])}, reconstruction "
                 f"{_seeds(rival, recon_a, 1)} -> {_seeds(remedy, recon_b, 1)}; worst pair of seeds: {worst[3]}, "
                 f"reconstruction {pct(max(p[2] for p in pairs))}")
    oks = [p[1] for p in pairs]
    verdict = status(oks)
    if len(pairs) > 1:
        text += f" ({sum(oks)} of {len(oks)} pairs hold)"
    return verdict, text


def combine(statuses: list[str]) -> str:
    """One verdict from several (against each rival): the weakest."""
    for s in (NOT_JUDGED, FAILS, DEPENDS, MIXED):
        if s in statuses:
            return s
    return HOLDS if statuses else NOT_JUDGED


# --------------------------------------------------------------------------------------- the active latents, over cuts


def over_cuts(reports: list[dict | None], judge: Callable[[float | None], tuple[str, str]]) -> tuple[str, str]:
    """(status, words) of a claim about the active latents of `reports`, judged by `judge(cut)` at every cut where
    every report's active set is stable (`thresholds.cuts`). It holds "on the active latents" only if it holds at all of
    them; a verdict that changes with the cut, or no cut that leaves every active set in place, says "depends on the
    activity threshold" with the numbers at the ends of the range. Reports without a curve: each one's own cut."""
    grid, common = thresholds.cuts(reports)
    if not grid:
        own = sorted({(r or {}).get("settings", {}).get("active_threshold") for r in reports}, key=str)
        s, text = judge(None)
        return s, (f"{s} on the active latents at the reports' own cut (Var mu_j > {', '.join(map(str, own))}; no activity "
                   f"curve stored, so not checked over cuts): {text}")
    results = [(t, *judge(t)) for t in grid]
    (lo, s_lo, text_lo), (hi, s_hi, text_hi) = results[0], results[-1]
    found = {s for _, s, _ in results}
    span = f"{cut(lo)} to {cut(hi)}"
    if common is not None and len(found) == 1:
        return s_lo, f"{s_lo} on the active latents (cuts {span}, where every seed's active set is stable): {text_lo}"
    ends = f"at {cut(lo)}: {s_lo}, {text_lo}" + (f"; at {cut(hi)}: {s_hi}, {text_hi}" if hi != lo else "")
    where = "where every seed's active set is stable" if common is not None else "no cut leaves every seed's active set in place"
    if len(found) == 1:
        return s_lo, f"{s_lo} at every cut from {span} ({where}); {ends}"
    if HOLDS not in found:
        return FAILS, (f"does not hold at any cut from {span} ({where}; for some seeds or pairs only at "
                       f"{_ranges(results, MIXED)}); {ends}")
    return DEPENDS, f"{DEPENDS} (cuts {span}, {where}; holds at {_ranges(results, HOLDS)} only): {ends}"


def _ranges(results: list[tuple[float, str, str]], wanted: str) -> str:
    """The cuts where the status is `wanted`, runs of neighbouring cuts as "a to b"."""
    runs: list[list[float]] = []
    for i, (t, s, _) in enumerate(results):
        if s == wanted:
            if runs and results[i - 1][1] == wanted:
                runs[-1].append(t)
            else:
                runs.append([t])
    return ", ".join(cut(r[0]) if len(r) == 1 else f"{cut(r[0])} to {cut(r[-1])}" for r in runs) or "none"


# ------------------------------------------------------------------------------------------------- the claims' lines

CRITERIA = (f"Claim 1, beta-TCVAE and FactorVAE leave the sampled codes nearly factorised but not the mean codes: per seed, "
            f"the sampled codes' Gaussian TC below {MAX_SAMPLED} nats and the mean codes' above {MIN_GAP:g}x it.",
            f"Claim 2, RTC-VAE lowers the mean codes' TC at a reconstruction error at most {MAX_RECON:.0%} worse: per pair "
            f"of seeds, the other model's mean-code TC at least {MIN_RATIO:g}x RTC-VAE's and RTC-VAE's reconstruction error "
            f"at most {MAX_RECON:.0%} above the other's, against each of beta-TCVAE and FactorVAE on the dataset.")
VIEWS = (("Gaussian TC of the means, all latents", "gaussian"), ("kNN TC of the means, all latents", "knn"))


def _rests_on(row: dict) -> str:
    seeds = [r["seed"] for r in row.get("runs", [])]
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds)) or 'none'}"


def claim_one_lines(row: dict) -> list[str]:
    """Claim 1 for one TC-penalised configuration: on all latents, and on the active latents over the cuts."""
    runs = row.get("runs", [])
    head = f"(1) {row['label']} [{_rests_on(row)}; Gaussian TC]"
    s, text = claim_one(runs)
    _, active = over_cuts([r["tc"] for r in runs], lambda t: claim_one(runs, t, "active"))
    return [f"{head}, all latents: {s}: {text}.", f"{head}, active latents: {active}."]


def claim_two_lines(row: dict, rivals: list[dict]) -> list[str]:
    """Claim 2 for one RTC-VAE configuration against the TC-penalised ones of its dataset: on the Gaussian TC (what the
    Gaussian penalty optimises), on the kNN TC of the means (what no penalty optimises), and on the active latents
    over the cuts; a line of its own where the Gaussian and the kNN verdicts differ."""
    if not rivals:
        return [f"(2) {row['label']}: {NOT_JUDGED}: no beta-TCVAE or FactorVAE on {row.get('dataset')} to compare with."]
    runs = row.get("runs", [])
    head = f"(2) {row['label']} [{_rests_on(row)}; against {' and '.join(p['label'] for p in rivals)}]"
    lines, found = [], {}
    for name, estimator in VIEWS:
        results = [compare(runs, p.get("runs", []), lambda run, e=estimator: measure(run["tc"], "mean", e), "mean TC") for p in rivals]
        found[estimator] = combine([s for s, _ in results])
        parts = "; ".join(f"vs {p['label']}: {s}, {text}" for p, (s, text) in zip(rivals, results, strict=True))
        lines.append(f"{head}, {name}: {found[estimator]}: {parts}.")
    results = []
    for p in rivals:
        other = p.get("runs", [])

        def judge(t, other=other):
            return compare(runs, other, lambda run: measure(run["tc"], "mean", "gaussian", "active", t), "mean TC among active latents")

        results.append(over_cuts([r["tc"] for r in runs + other], judge))
    parts = "; ".join(f"vs {p['label']}: {text}" for p, (_, text) in zip(rivals, results, strict=True))
    lines.append(f"{head}, Gaussian TC of the means, active latents: {combine([s for s, _ in results])}: {parts}.")
    if NOT_JUDGED not in found.values() and found["gaussian"] != found["knn"]:
        says = {HOLDS: "holds", MIXED: "is mixed (it holds for some pairs of seeds only)", FAILS: "does not hold"}
        lines.append(f"(2) {row['label']}: the two estimators disagree. On the Gaussian TC of the means the claim "
                     f"{says[found['gaussian']]}; on the kNN TC of the means, which also sees nonlinear dependence and which "
                     f"no penalty optimises, it {says[found['knn']]}.")
    return lines
