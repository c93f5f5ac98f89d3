"""`mtc_core.analyse_codes`: everything `evaluate` reports that needs no encoder, from codes alone (docs/design.md, "Codes files").

Any VAE's encodings (mean codes and posterior variances, optionally the sampled codes it drew and ground-truth
factors) get the same report as a model of ours: `evaluation.score_points` computes the array metrics of the mean
and the sampled codes, the TC report (`tc_report.tc_report`) and the latent activity on the same points with the
same seeds as `evaluate`, so a codes file written from `evaluation.encoded_points` reproduces `evaluate`'s numbers
exactly. The intervention metrics (FactorVAE and BetaVAE scores) render images with one factor held fixed and
encode them: a codes file has no encoder, so they are marked as needing one. Reconstruction is absent likewise.

Points: with factors, the array metrics are fitted on training points and scored on held-out ones; the file's
`num_train` says which rows are which (evaluate's layout: training rows first), else a seeded random 2:1 split
(evaluate's 10,000 : 5,000). The TCs and the activity are computed on the training points, as `evaluate` does;
without factors nothing is held out and every point is used.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mtc_core.estimators.sampling import draw_sampled_codes
from mtc_core.evaluation.codes_file import Codes, validate
from mtc_core.evaluation.scoring import REPRESENTATIONS, Progress, score_points
from mtc_core.metrics.activity import ACTIVITY_THRESHOLD
from mtc_core.runs import json_safe
from mtc_core.theory import measured_sampled_tc_bound

TRAIN_FRACTION = 2 / 3  # evaluate's 10,000 training and 5,000 held-out points
NEEDS_ENCODER = {"needs_encoder": True,
                 "why": "an intervention metric: it renders images with one factor held fixed and encodes them"}
INTERVENTION_METRICS = ("factor_vae", "beta_vae")


def _bound_report(activity: dict, tc: dict) -> dict:
    """The bound for all varying latents and for the passive ones, with each latent's noise-to-signal ratio."""
    var_mu, sigma2 = np.asarray(activity["var_mu"]), np.asarray(activity["mean_sigma2"])
    kept = [j for j in range(len(var_mu)) if j not in tc["dropped"]]
    out: dict = {"s": [float(sigma2[j] / var_mu[j]) if j in kept else None for j in range(len(var_mu))]}
    for part, latents in (("all", kept), ("passive", tc["passive"])):
        out[part] = {"value": measured_sampled_tc_bound(var_mu[latents], sigma2[latents]) if latents else 0.0, "latents": list(latents)}
    return out


def code_points(codes: Codes, seed: int = 0) -> tuple[dict, dict | None]:
    """(train, test) dicts of mean, logvar, sampled [N, D] and factors [N, K] (or None): the points `analyse` scores.

    Sampled codes are the file's, else mu + exp(logvar / 2) eps with eps from `seed`. The split is the file's
    `num_train`, else (with factors) a seeded random 2:1 split; without factors and `num_train`, test is None."""
    sampled = codes.sampled
    if sampled is None:
        sampled = draw_sampled_codes(codes.mean, codes.logvar, np.random.default_rng([seed, 1]))
    arrays = {"mean": codes.mean, "logvar": codes.logvar, "sampled": sampled, "factors": codes.factors}
    n = codes.num_points
    if codes.num_train is not None:
        train_rows, test_rows = np.arange(codes.num_train), np.arange(codes.num_train, n)
    elif codes.factors is not None:
        if n < 6:
            raise ValueError(f"{n} points cannot be split into training and held-out points for the factor metrics (need 6)")
        order = np.random.default_rng([seed, 2]).permutation(n)
        cut = min(max(round(TRAIN_FRACTION * n), 2), n - 2)
        train_rows, test_rows = np.sort(order[:cut]), np.sort(order[cut:])
    else:
        return arrays, None

    def take(rows: np.ndarray) -> dict:
        return {k: (None if v is None else v[rows]) for k, v in arrays.items()}

    return take(train_rows), (take(test_rows) if len(test_rows) else None)


def check_split_classes(train: dict, test: dict | None, names: tuple[str, ...] | None) -> None:
    """Before any fitting: each factor's classes must all occur among the training and the held-out points (the
    explicitness scores a classifier fitted on one part on the other, per class). ValueError, one line."""
    if test is None or train["factors"] is None:
        return
    for k, name in enumerate(names or ()):
        fitted, held_out = np.unique(train["factors"][:, k]), np.unique(test["factors"][:, k])
        missing = np.setxor1d(fitted, held_out)
        if missing.size:
            classes = len(np.union1d(fitted, held_out))
            raise ValueError(f"factor {name!r}: {missing.size} of its {classes} classes occur only among the training or only among "
                             f"the held-out points (e.g. {', '.join(map(str, missing[:3].tolist()))}); the factor metrics need "
                             f"each class in both: give more points per class, or bin the factor into fewer levels")


def analyse_validated_codes(codes: Codes, *, seed: int = 0, dci_mode: str = "fast", dataset_tc_samples: int = 2_000,
            progress: Progress | None = None, device=None) -> dict:
    """The report of validated codes (see `analyse_codes`)."""
    t0 = time.perf_counter()
    train, test = code_points(codes, seed)
    check_split_classes(train, test, codes.factor_names)
    result = score_points(train, test, codes.factor_names, seed=seed, dci_mode=dci_mode,
                          dataset_tc_samples=dataset_tc_samples, progress=progress, device=device)
    for rep in REPRESENTATIONS:
        result[rep].update({name: dict(NEEDS_ENCODER) for name in INTERVENTION_METRICS})
    result["sampled_tc_bound"] = _bound_report(result["activity"], result["tc"])
    result["factors"] = {"names": list(codes.factor_names or ()), "dropped": list(codes.dropped_factors)}
    result["settings"] = {
        "num_points": codes.num_points, "num_train": len(train["mean"]), "num_test": 0 if test is None else len(test["mean"]),
        "split": "none" if test is None else ("file" if codes.num_train is not None else "random"),
        "sampled": "file" if codes.sampled is not None else "drawn", "seed": seed, "dci_mode": dci_mode,
        "dataset_tc_samples": dataset_tc_samples,
    }
    result["seconds"] = time.perf_counter() - t0
    return json_safe(result)


def analyse_codes(mean, logvar=None, factors=None, *, var=None, std=None, sampled=None, factor_names=None,
                  num_train=None, seed: int = 0, dci_mode: str = "fast", dataset_tc_samples: int = 2_000,
                  progress: Progress | None = None, device=None) -> dict:
    """`analyse_codes(mean[N, D], logvar[N, D], factors[N, K] = None) -> dict`: `evaluate`'s report without the encoder.

    The posterior spread is `logvar`, or `var` / `std`. Optional: the `sampled` codes the model drew, `factor_names`,
    `num_train` (rows [0, num_train) train, the rest held out). Returns `evaluate`'s keys "tc", "mean", "sampled"
    (with "factor_vae" / "beta_vae" marked `needs_encoder`), "activity", "settings", "seconds", no "recon"; plus
    "sampled_tc_bound" (the bound on the sampled codes' Gaussian TC for the measured variances, all latents and
    passive ones) and "factors" (names used, constant factors dropped). ValueError naming a problem in the input.
    progress(stage, partial), when given, is called after each stage (`evaluation.score_points`) with a JSON-safe
    copy of the results so far. device: a torch device (a GPU) for the TC report's matrix algebra (None: numpy).
    """
    codes = validate(mean, logvar, var=var, std=std, sampled=sampled, factors=factors, factor_names=factor_names,
                     num_train=num_train)
    return analyse_validated_codes(codes, seed=seed, dci_mode=dci_mode, dataset_tc_samples=dataset_tc_samples, progress=progress,
                                   device=device)


def summary_table(result: dict) -> str:
    """A short markdown table of an `evaluate` or `analyse_codes` result: TCs with intervals, then the headline
    metrics of the mean and the sampled codes (the full result is JSON)."""
    from mtc_core.evaluation.tc_report import describe, mixture_note, value

    tc = result.get("tc", {})
    lines = ["| quantity | mean codes | sampled codes |", "|---|---|---|"]
    for label, estimator, part in (("Gaussian TC (nats)", "gaussian", None), ("  among active latents", "gaussian", "active"),
                                   ("  between active and passive", "gaussian", "between"), ("kNN TC (nats)", "knn", None)):
        lines.append(f"| {label} | {describe(tc, 'mean', estimator, part)} | {describe(tc, 'sampled', estimator, part)} |")
    bound = result.get("sampled_tc_bound")
    if bound:
        lines.append(f"| bound on the sampled Gaussian TC, all / passive latents | | {_number(bound['all']['value'])} / "
                     f"{_number(bound['passive']['value'])} |")
        measured = value(tc, "sampled", "gaussian")
        if measured is not None and measured > bound["all"]["value"]:
            lines.append("| (the bound holds for the TC itself; its estimate may exceed it by the estimate's noise) | | |")
    for label, get in (("MIG", lambda r: r.get("mig")), ("SAP", lambda r: r.get("sap")),
                       ("DCI disentanglement", lambda r: (r.get("dci") or {}).get("disentanglement")),
                       ("FactorVAE score", lambda r: _score(r.get("factor_vae"))), ("BetaVAE score", lambda r: _score(r.get("beta_vae")))):
        values = [get(result.get(rep, {})) for rep in REPRESENTATIONS]
        if any(v is not None for v in values):
            lines.append(f"| {label} | {' | '.join(_number(v) for v in values)} |")
    activity = result.get("activity", {})
    active, total = activity.get('active_latents', 'n/a'), len(activity.get('var_mu', []))
    threshold = (tc.get("settings") or {}).get("active_threshold", ACTIVITY_THRESHOLD)
    lines.append(f"| active latents (Var mu > {threshold:g}) | {active} of {total} | |")
    if isinstance(result.get("recon"), int | float):
        lines.append(f"| reconstruction (nats) | {result['recon']:.2f} | |")
    note = mixture_note(tc)
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


def _score(entry) -> float | str | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("needs_encoder"):
        return "needs the encoder"
    return entry.get("eval_accuracy")


def _number(value) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"
