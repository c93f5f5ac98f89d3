"""Bias, interval coverage and cost of every TC estimator, as the TC report computes it, at the sizes in use: docs/estimators.md,
made by `OMP_NUM_THREADS=1 .venv/bin/python bench/estimator_bias.py --write docs/estimators.md`. The dataset Monte-Carlo runs on the
first `--mc-seeds` seeds only (dataset_mc_samples=0 leaves every other value as it was: it has its own generator and runs last)."""

import argparse
import ast
import inspect
import json
import math
import os
import platform
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from estimator_scale_note import at_scale  # bench/ is on sys.path (the script's folder)

from mtc_core.data import make_dataset
from mtc_core.estimators import gaussian_tc_bias, mean_tc_gaussian, mean_tc_kde, tc_mss, tc_mws
from mtc_core.evaluation import codes_analysis, scoring
from mtc_core.evaluation import tc_report as report_module
from mtc_core.evaluation.codes_file import validate
from mtc_core.theory import passive_posterior, passive_tc, synthetic_posterior, synthetic_tc

ROOT = Path(__file__).resolve().parents[1]
D, S, FILE_POINTS = 10, 0.5, 15_000  # FILE_POINTS: a codes file laid out as evaluate's (10,000 training + 5,000 held-out points)
SHAPES2D = len(make_dataset("shapes2d"))
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python bench/estimator_bias.py --write docs/estimators.md"
CODES = report_module.CODES
CASES = {f"rho {r:g}": (lambda n, rng, r=r: synthetic_posterior(n, D, r, S, rng), synthetic_tc(D, r, S)) for r in (0.0, 0.3, 0.6)}
CASES["passive copy"] = (lambda n, rng: passive_posterior(n, D, S, rng), passive_tc(D, S))
NAMES, ZERO = list(CASES), "rho 0"  # ZERO: TC = 0 for both code types
ROWS = {"gaussian": "Gaussian, bias-corrected (the report's value)", "gaussian_raw": "Gaussian, corrected, before clipping at 0",
        "plugin": "Gaussian plug-in (its interval: the same ± 1.96 sd)", "knn": "kNN (the report's value)",
        "knn_raw": "kNN, before clipping at 0", "mixture": "dataset Monte-Carlo (`mixture.dataset_mc`)"}


def sizes_in_use() -> dict:
    """The sizes `tc_report`, `evaluate`, Your codes (`code_points` on a 15,000-point file) and ui/cache.py use."""
    report, evaluate = (inspect.signature(f).parameters for f in (report_module.tc_report, scoring.evaluate))
    app = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse((ROOT / "ui/cache.py").read_text()).body  # no streamlit
           if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("NUM_POINTS", "EVAL_SIZES")}
    x, f = np.arange(2.0 * FILE_POINTS).reshape(-1, 2), np.random.default_rng(0).integers(0, 3, (FILE_POINTS, 1))
    train = {k: len(codes_analysis.code_points(validate(x, 0 * x, factors=v))[0]["mean"]) for k, v in (("f", f), ("", None))}
    return {"bootstrap": report["bootstrap"].default, "knn_batches": report["knn_batches"].default, "knn_points": report["knn_points"].default,
            "report_mc": report["dataset_mc_samples"].default, "evaluate_n": evaluate["num_train"].default,
            "evaluate_mc": evaluate["dataset_tc_samples"].default, "app_points": app["NUM_POINTS"], "app_eval_n": app["EVAL_SIZES"]["num_train"],
            "app_eval_mc": app["EVAL_SIZES"]["dataset_tc_samples"], "your_codes_n": train["f"], "no_factors_n": train[""],
            "train_fraction": codes_analysis.TRAIN_FRACTION}


def used(n: int, sizes: dict) -> str:
    users = (("`evaluate`", "evaluate_n"), ("Your codes", "your_codes_n"), ("the app", "app_points"))
    return " and ".join(k for k, v in users if sizes[v] == n) or "-"


def knn_batch(distinct: int, sizes: dict) -> int:  # points per kNN batch of `tc_report._knn` (0: no kNN estimate)
    size = min(sizes["knn_points"], distinct // max(sizes["knn_batches"], 1))
    return size if size >= 10 else 0


def toy_points(sizes: dict) -> dict:
    """Distinct toy images (= mean codes) drawn by `evaluate` (`scoring._sample`: seed 0's first draw), the app's pages (ui/cache.py
    `_points`: the whole grid if smaller) and evaluation (EVAL_SIZES); the kNN batch `tc_report` and the shipped toy reports find."""
    ds, out, draws = make_dataset("toy"), {}, {}
    for key, n in (("evaluate", sizes["evaluate_n"]), ("pages", sizes["app_points"]), ("evaluation", sizes["app_eval_n"])):
        whole = key == "pages" and len(ds) <= n
        draws[key] = f = ds.index_to_factors(np.arange(len(ds))) if whole else ds.sample_factors(n, np.random.default_rng(0))
        out[key] = (len(f), len({hash(im.tobytes()) for s in range(0, len(f), 500) for im in ds.render(f[s : s + 500])}))
    codes = draws["evaluate"].astype(float)
    report = report_module.tc_report(codes, np.zeros_like(codes), seed=0, bootstrap=2, dataset_mc_samples=0)
    shipped = [json.loads(p.read_text()).get("evaluation", {}).get("tc", {}).get("mean", {}).get("knn", {}).get("n")
               for p in sorted((ROOT / "pretrained").glob("toy-*/metrics.json"))]
    return out | {"grid": len(ds), "sizes": ds.factor_sizes, "report_n": report["mean"]["knn"]["n"], "shipped": sorted(set(shipped) - {None})}



def _record(report: dict, **extra) -> dict:
    """What the tables read from one report: {"mean gaussian": (value, ci or None), ...}."""
    out = {}
    for rep in CODES:
        g, k = report[rep].get("gaussian"), report[rep].get("knn")
        if g:
            half = g["ci"][1] - (g["plugin"] - g["bias"]) if g["ci"][1] > 0 else math.nan  # 1.96 bootstrap sd
            out |= {f"{rep} gaussian": (g["value"], g["ci"]), f"{rep} gaussian_raw": (g["plugin"] - g["bias"], None),
                    f"{rep} plugin": (g["plugin"], [g["plugin"] - half, g["plugin"] + half])}
        if k:
            out |= {f"{rep} knn": (k["value"], k["ci"]), f"{rep} knn_raw": (k["raw"], None), f"{rep} knn_n": (k["n"], None)}
    if mc := report["mixture"].get("dataset_mc"):
        out |= {"sampled mixture": (mc["value"], None), "converged": (mc.get("converged"), None)}
    return {"values": out, **extra}


def _timed(seconds: dict, name: str, f):
    def run(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
    return run


def report_job(kind: str, n: int, case: str, seed: int, mc_samples: int = 0) -> dict:
    """One `tc_report` with its defaults on fresh data of the case, its `_knn` and `_mixture` timed in place. kind "toy": the report's
    kNN on `evaluate`'s n draws from the toy's grid, each grid image given its own mean code (bootstrap 2: the kNN's law is the same)."""
    rng, toy, grid = np.random.default_rng([n, NAMES.index(case), seed, kind == "toy"]), make_dataset("toy"), kind == "toy"
    rows = np.ravel_multi_index(toy.sample_factors(n, rng).T, toy.factor_sizes) if grid else np.arange(n)
    (mu, logvar), seconds, t0 = CASES[case][0](len(toy) if grid else n, rng), {}, time.perf_counter()
    with mock.patch.multiple(report_module, **{k: _timed(seconds, k, getattr(report_module, k)) for k in ("_knn", "_mixture")}):
        report = report_module.tc_report(mu[rows], logvar[rows], seed=seed, dataset_mc_samples=mc_samples, **{"bootstrap": 2} if grid else {})
    cost = {"total": time.perf_counter() - t0, "knn": seconds.get("_knn", 0.0), "mixture": seconds.get("_mixture", 0.0)}
    cost["gaussian"] = cost["total"] - cost["knn"] - cost["mixture"]
    return _record(report, n="toy" if grid else n, case=case, seed=seed, mc=mc_samples > 0, seconds=cost)


def signals() -> list[tuple[str, str, str]]:
    """(estimator, sizes, target codes, batch, dataset size) of every training-signal row; `signal_value` computes one."""
    return ([("MSS, tc_mss", f"B = {b}, dataset_size = {n:,}", "sampled", b, n) for b in (64, 256, 512) for n in (2_000, 10_000, SHAPES2D)]
            + [("MWS - (D - 1) log N, tc_mws", f"B = {b}, any dataset_size", "sampled", b, SHAPES2D) for b in (64, 256, 512)]
            + [(f"penalty {f}", f"B = {b}", "mean", b, 0) for f in ("mean_tc_gaussian(mu)", "mean_tc_kde(mu, generator)") for b in (64, 256, 512)])


def signal_value(i: int, case: str, rng: np.random.Generator, seed: int) -> float:
    """On a float32 batch drawn directly (B of N i.i.d. points are B i.i.d. points; N enters MSS and MWS only as `dataset_size`)."""
    estimator, _, _, b, n = signals()[i]
    mu, logvar = CASES[case][0](b, rng)
    z = mu + np.exp(logvar / 2) * rng.standard_normal(mu.shape)
    z, mu, logvar = (torch.as_tensor(a, dtype=torch.float32) for a in (z, mu, logvar))
    if estimator.startswith("MSS"):
        return tc_mss(z, mu, logvar, n).item()
    if estimator.startswith("MWS"):  # exactly (D - 1) log N above the batch-mixture TC for every N (weights 1 / (N B)): one row per B
        return tc_mws(z, mu, logvar, n).item() - (D - 1) * math.log(n)
    return (mean_tc_gaussian(mu) if "gaussian" in estimator else mean_tc_kde(mu, torch.Generator().manual_seed(seed))).item()


def signal_job(i: int, seeds: int) -> dict:
    errors, calls = {c: [] for c in NAMES}, []
    for c in NAMES:
        for seed in range(seeds):
            t0 = time.perf_counter()
            errors[c].append(signal_value(i, c, np.random.default_rng([i, NAMES.index(c), seed]), seed) - CASES[c][1][signals()[i][2]])
            calls.append(time.perf_counter() - t0)
    return {"i": i, "bias": {c: float(np.mean(e)) for c, e in errors.items()}, "sd": {c: float(np.std(e, ddof=1)) for c, e in errors.items()},
            "seconds": float(np.median(calls))}


def _run(job: tuple) -> dict:
    return signal_job(*job[1:]) if job[0] == "signal" else report_job(*job)


def measure(ns: list[int], seeds: int, large_seeds: int, mc_seeds: int, signal_seeds: int, mc_samples: int, workers: int = 2,
            progress=print, toy_n: int = 0) -> dict:
    """Per N and case `large_seeds` (N >= 5,000) or `seeds` reports, the first `mc_seeds` with the dataset Monte-Carlo; per case
    `large_seeds` toy-like reports (`toy_n` draws); every training signal. `workers` processes (0: this one)."""
    jobs = [("report", n, c, s, mc_samples * (s < mc_seeds)) for n in ns for c in NAMES for s in range(large_seeds if n >= 5_000 else seeds)]
    jobs = sorted(jobs, key=lambda j: -j[1] * (1 + 4 * (j[4] > 0))) + [("toy", toy_n, c, s) for s in range(large_seeds) for c in NAMES] * (toy_n > 0)
    jobs += [("signal", i, signal_seeds) for i in range(len(signals()))]  # the slowest first, for a pool that ends together
    t0, results = time.perf_counter(), []
    pool = ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) if workers > 0 else None
    try:
        for k, result in enumerate(pool.map(_run, jobs) if pool else map(_run, jobs), 1):
            results.append(result)
            if k % max(len(jobs) // 10, 1) == 0:
                progress(f"{k} / {len(jobs)} jobs, {time.perf_counter() - t0:.0f} s")
    finally:
        if pool:
            pool.shutdown()
    return {"reports": [r for r in results if r.get("n") not in (None, "toy")], "toy": [r for r in results if r.get("n") == "toy"],
            "signals": [r for r in results if "i" in r], "seconds": time.perf_counter() - t0, "mc_samples": mc_samples,
            "signal_seeds": signal_seeds}



def summary(records: list[dict]) -> list[dict]:
    """Per (N, codes, estimator): bias and sd over seeds per case, and (values with an interval) intervals covering the truth."""
    rows = []
    for n in sorted({r["n"] for r in records}, key=lambda n: (n == "toy", 0 if n == "toy" else n)):
        for rep, (key, label) in ((rep, item) for rep in CODES for item in ROWS.items()):
            got = {c: [r["values"][f"{rep} {key}"] for r in records if (r["n"], r["case"]) == (n, c) and f"{rep} {key}" in r["values"]]
                   for c in NAMES}
            if min(map(len, got.values())) < 2 or (n == "toy" and not key.startswith("knn")):  # toy-like: the kNN only
                continue
            err = {c: [v - CASES[c][1][rep] for v, _ in got[c]] for c in NAMES}
            row = {"n": n, "rep": rep, "key": key, "label": label, "seeds": len(got[ZERO]), "bias": {c: float(np.mean(e)) for c, e in err.items()},
                   "sd": {c: float(np.std(e, ddof=1)) for c, e in err.items()}}
            if got[ZERO][0][1] is not None:
                row["cov"] = {c: (sum(ci[0] <= CASES[c][1][rep] <= ci[1] for _, ci in got[c]), len(got[c])) for c in NAMES}
            if key.startswith("knn"):
                row["batch"] = int(np.median([r["values"][f"{rep} knn_n"][0] for r in records if r["n"] == n]))
            rows.append(row)
    return rows


def pooled(row: dict, zero: bool) -> str:
    picked = [v for c, v in row["cov"].items() if (c == ZERO) == zero]
    return f"{sum(c for c, _ in picked)}/{sum(t for _, t in picked)}"


def _pm(row: dict, case: str = ZERO) -> str:
    return f"{row['bias'][case]:+.3f} ± {row['sd'][case]:.3f}".replace("-0.000 ", "+0.000 ")  # never "-0.000"


def cost_rows(reports: list[dict]) -> list[dict]:
    """Per N: median wall seconds of each part of the reports that ran the dataset Monte-Carlo."""
    rows = []
    for n in sorted({r["n"] for r in reports}):
        full = [r["seconds"] for r in reports if r["n"] == n and r["mc"]]
        rows.append({"n": n, "reports": len(full)} | {k: float(np.median([s[k] for s in full])) for k in ("gaussian", "knn", "mixture", "total")})
    return rows


def tables(m: dict, sizes: dict) -> list[str]:
    """The measurement, cost and training-signal tables, in markdown."""
    head = lambda cols: f"| {' | '.join(cols)} |\n|" + "---|" * len(cols)  # noqa: E731
    out = [head(["estimator", "codes", "N (kNN batches)", "seeds", *(f"{c}: bias ± sd (covered)" for c in NAMES), "covers TC = 0", "covers TC > 0"])]
    for r in summary(m["reports"] + m["toy"]):
        n = (f"{r['n']:,}" if r["n"] != "toy" else "toy-like") + (f" ({sizes['knn_batches']} x {r['batch']:,})" if "batch" in r else "")
        cells = [_pm(r, c) + (f" ({r['cov'][c][0]}/{r['cov'][c][1]})" if "cov" in r else "") for c in NAMES]
        covers = (pooled(r, True), pooled(r, False)) if "cov" in r else ("", "")
        out[-1] += "\n| " + " | ".join([r["label"], r["rep"], n, str(r["seeds"]), *cells, *covers]) + " |"
    out.append(head(["N", "used by", "reports", "Gaussian, bootstrap, activity curve (s)", "kNN (s)", "dataset Monte-Carlo (s)", "whole report (s)"]))
    out[-1] += "".join(f"\n| {r['n']:,} | {used(r['n'], sizes)} | {r['reports']} | " + " | ".join(f"{r[k]:.2f}" for k in ("gaussian", "knn",
                       "mixture", "total")) + " |" for r in cost_rows(m["reports"]))
    out.append(head(["training signal", "sizes", "seeds", *(f"{c}: bias ± sd" for c in NAMES), "one call (ms)"]))
    out[-1] += "".join(f"\n| {e} | {s} | {m['signal_seeds']} | " + " | ".join(_pm(r, c) for c in NAMES) + f" | {1000 * r['seconds']:.1f} |"
                       for (e, s, *_), r in zip(signals(), sorted(m["signals"], key=lambda r: r["i"]), strict=True))
    return out


def wrap(text: str, width: int = 118) -> str:
    """Markdown paragraphs and bullets (nested ones kept nested) re-wrapped to `width`; tables and headings kept."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        head = line.lstrip()[:2]
        if block and (not head or head == "- " or head[0] in "|#"):
            indent = len(block[0]) - len(block[0].lstrip())
            out += textwrap.wrap(" ".join(b.strip() for b in block).replace(" ± ", "\xa0±\xa0").replace(" = ", "\xa0=\xa0"), width,
                                 initial_indent=" " * indent, subsequent_indent=" " * (indent + 2 * (block[0].lstrip()[:2] == "- ")),
                                 break_on_hyphens=False, break_long_words=False)
            block = []
        (out if not head or head[0] in "|#" else block).append(line)
    return "\n".join(out).replace("\xa0", " ").rstrip() + "\n"


def findings(m: dict, sizes: dict) -> str:
    get, ns = {(r["n"], r["rep"], r["key"]): r for r in summary(m["reports"] + m["toy"])}, sorted({r["n"] for r in m["reports"]})
    both = lambda n, key: (get[n, "mean", key], get[n, "sampled", key])  # noqa: E731
    worst = lambda n, key: max(abs(b) for r in both(n, key) for b in r["bias"].values())  # noqa: E731
    cover = lambda g, h: f"cover TC = 0 in {pooled(g, 1)} (means) and {pooled(h, 1)} (sampled), TC > 0 in {pooled(g, 0)} and {pooled(h, 0)}"  # noqa: E731
    out = ["- **Gaussian TC, bias-corrected** (the report's value): the plug-in -1/2 log det R less `gaussian_tc_bias(N, D)` ("
           + ", ".join(f"{gaussian_tc_bias(n, D):.5f} at N = {n:,}" for n in ns) + "; ~D (D - 1) / 4N), raised to 0 when noise takes it below."]
    out += [f"  - N = {n:,} ({used(n, sizes)}): |bias| before clipping at most {worst(n, 'gaussian_raw'):.3f}; at TC = 0 it reads "
            f"{_pm(get[n, 'mean', 'gaussian'])} (means). Intervals {cover(*both(n, 'gaussian'))}." for n in ns]
    out.append("- **Gaussian plug-in** (the report's \"plugin\"): " + " and ".join(f"{_pm(get[n, 'mean', 'plugin'])} at N = {n:,}" for n in ns)
               + " on independent means; with the same sd and no correction its interval would cover TC = 0 in only "
               + " and ".join(pooled(get[n, "mean", "plugin"], True) for n in ns) + ".")
    out.append(f"- **kNN** (the mean of `tc_knn` over {sizes['knn_batches']} disjoint batches of at most {sizes['knn_points']:,} distinct mean "
               "codes, the same rows for the sampled codes; a t interval over the batches):")
    for n in ns + ["toy"] * bool(m["toy"]):
        (k, h), bias, (c, total) = both(n, "knn"), get[n, "mean", "knn_raw"]["bias"][ZERO], get[n, "mean", "knn"]["cov"][ZERO]
        zero = [r["values"] for r in m["reports"] + m["toy"] if (r["n"], r["case"]) == (n, ZERO)]
        half = np.median([v["mean knn"][1][1] - v["mean knn_raw"][0] for v in zero])
        why = (f" The interval is the batches' spread only: it leaves out `tc_knn`'s bias at {k['batch']:,} points ({bias:+.3f} on independent "
               f"means), {'above' if bias > half else 'near'} its median half-width there ({half:.3f})." if c < 0.8 * total else "")
        out.append(f"  - {'The toy (below)' if n == 'toy' else f'N = {n:,}'}, batches of {k['batch']:,}: |bias| before clipping at most "
                   f"{worst(n, 'knn_raw'):.3f}; at TC = 0 it reads {_pm(k)} (means). Intervals {cover(k, h)}.{why}")
    mc, conv = [get[n, "sampled", "mixture"] for n in ns], [r["values"]["converged"][0] for r in m["reports"] if r["mc"]]
    below = [f"{c} at N = {r['n']:,} ({r['bias'][c]:+.3f}; one data set's Gaussian TC spreads by sd "
             f"{get[r['n'], 'sampled', 'gaussian_raw']['sd'][c]:.3f})" for r in mc for c in NAMES if r["bias"][c] < 0]
    out.append(f"- **Dataset Monte-Carlo** (`mixture.dataset_mc`, {m['mc_samples']:,} samples) against the sampled codes' TC: "
               + "; ".join(f"{_pm(r)} at N = {r['n']:,} ({r['seeds']} seeds)" for r in mc) + " on independent codes. The TC of the N-component "
               "mixture, which counts each point's own kernel: an upper estimate, not a peer of the values above, reading above the N -> infinity "
               f"limit{' except ' + '; '.join(below) if below else ' in every case'}; the excess shrinks with N and with the true TC. Its half-N "
               f"check calls it converged in {sum(map(bool, conv))}/{len(conv)} reports.")
    sig = {f"{e} {s}": _pm(r) for (e, s, *_), r in zip(signals(), sorted(m["signals"], key=lambda r: r["i"]), strict=True)}
    mss = ", ".join(f"{sig[f'MSS, tc_mss B = 64, dataset_size = {n:,}']} with dataset_size {n:,}" for n in (2_000, 10_000, SHAPES2D))
    out.append(f"- **Training signals**, batch 64, independent codes: MSS {mss} (Shapes2D's): its bias (each point's own kernel weighs 1/N, "
               f"the rest of q(z) comes from B - 1 points), never a model's TC; MWS {sig['MWS - (D - 1) log N, tc_mws B = 64, any dataset_size']} "
               f"after its exact (D - 1) log N offset ({(D - 1) * math.log(SHAPES2D):.1f} at N = {SHAPES2D:,}).")
    out.append("- **Cost** (median wall seconds, one thread): a whole report " + "; ".join(f"{r['total']:.1f}\xa0s at N = {r['n']:,} (kNN "
               f"{r['knn']:.2f}, dataset Monte-Carlo {r['mixture']:.1f})" for r in cost_rows(m["reports"])) + "; a training signal, milliseconds.")
    return "\n".join(out)


def document(m: dict, sizes: dict, settings: dict, toy: dict) -> str:
    (measured, cost, sig), s, kb, g, (n, d) = tables(m, sizes), sizes, sizes["knn_batches"], toy["grid"], toy["evaluate"]
    truth = "\n".join(f"| {c} | {CASES[c][1]['mean'] + 0.0:.4f} | {CASES[c][1]['sampled'] + 0.0:.4f} |" for c in NAMES)
    app = "; ".join(f"{k} {toy[k][0]:,} → {toy[k][1]:,} distinct → {kb} x {knn_batch(toy[k][1], s)}" for k in ("pages", "evaluation"))
    shipped, st, tf, ka = ", ".join(map(str, toy["shipped"])) or "none", settings, s["train_fraction"], knn_batch(s["app_points"], s)
    return wrap(f"""# How far each TC estimator is from the truth, at the sizes in use

Every TC that MTC Explorer shows comes from one report, `tc_report` (`mtc_core/evaluation/tc_report.py`, version {report_module.REPORT_VERSION};
docs/design.md, "Reading a TC estimate"). Each of its estimators is measured here, as the report computes it, against a closed form: N mean
codes mu_n ~ N(0, C_mu) with a fixed diagonal posterior variance s, so the sampled codes are exactly N(0, C_mu + diag s) and q(z) tends to it
(`mtc_core.theory`: `synthetic_posterior` / `synthetic_tc`, `passive_posterior` / `passive_tc`; D = {D}, s = {S}). Each seed: a fresh data
set, `tc_report(mu, logvar, seed=seed)` with the report's defaults. Bias = estimate - closed form (nats); ± the sd over seeds (one reading's
spread; the bias's standard error is sd / sqrt(seeds)); "covered": 95% intervals holding the truth.

Sizes, read from the code when the bench ran:

- `evaluate` (`scoring.evaluate`): the report on N = {s['evaluate_n']:,} training points, dataset Monte-Carlo with {s['evaluate_mc']:,} samples.
- Your codes (`codes_analysis.code_points`): a {FILE_POINTS:,}-point file with factors is split {tf:.3f} : {1 - tf:.3f},
  so N = {s['your_codes_n']:,} as `evaluate` (one with num_train: those rows; with no factors: all {s['no_factors_n']:,}, not measured).
- The app (ui/cache.py): without a stored evaluation, the report on NUM_POINTS = {s['app_points']:,} encoded points (the whole grid when
  smaller), the evaluation on EVAL_SIZES' num_train = {s['app_eval_n']:,} with {s['app_eval_mc']:,} samples; with one, `evaluate`'s numbers.
- `tc_report`: bootstrap = {s['bootstrap']}, knn_batches = {kb}, knn_points = {s['knn_points']:,}, dataset_mc_samples = {s['report_mc']:,}: kNN
  batches of min({s['knn_points']:,}, N // {kb}) points: {ka:,} at the app's N, {knn_batch(s['evaluate_n'], s):,} at `evaluate`'s.

## Findings

{findings(m, sizes)}

## Closed forms

| case | TC of the means (nats) | TC of the sampled codes / q(z) as N -> infinity (nats) |
|---|---|---|
{truth}

## Bias and coverage of the report's estimators

Estimate - closed form (nats), mean ± sd over seeds, and for values with an interval how many 95% intervals held the truth ("covers TC > 0"
pools the cases with TC > 0; the passive copy's sampled TC is 0.0015). Intervals: Gaussian, the corrected estimate ± 1.96 bootstrap sd; kNN,
the batch mean ± t sd / sqrt(batches); lower ends clipped at 0. The dataset Monte-Carlo is compared with the sampled codes' TC, the limit of
the mixture it measures.

{measured}

### Small datasets: fewer distinct points per kNN batch

The kNN batches use distinct mean codes only (`tc_report`'s `_knn`: images repeated by a draw with replacement would give zero distances and
inflate the estimate). The toy has {' x '.join(map(str, toy['sizes']))} = {g:,} distinct images (`mtc_core/data/toy.py`), so `evaluate`'s
{n:,} draws hold {d:,} of them (G (1 - (1 - 1/G)^N) = {g * (1 - (1 - 1 / g) ** n):,.0f} expected) and its kNN batches {d:,} // {kb} =
**{knn_batch(d, s)}** points, not {s['knn_points']:,}. `tc_report` on that draw finds {toy['report_n']}; the shipped toy models' reports
(pretrained/toy-*) hold {shipped}. The app: {app}. Toy-like rows: `tc_report` on {n:,} draws from the toy's grid, each image given its own
mean code from the case (bootstrap 2).

## Cost

Median wall seconds of one `tc_report` with the dataset Monte-Carlo, one thread ({st['workers']} worker processes, shared 2-core machine, load
{st['load']}). "Gaussian": the rest (the split, {s['bootstrap']} bootstrap resamples of both codes, the activity curve).

{cost}

## Training signals

Minibatches as the trainer feeds them (float32); never a model's TC. MWS's raw value is (D - 1) log N above its rows. The penalties subtract
their reading on independent codes (Gaussian: `gaussian_tc_null_mean`; KDE: its value on a column-permuted copy).

{sig}

{at_scale()}## The tests that hold these numbers

- `tests/test_tc_report.py`: `test_gaussian_intervals_cover_the_truth_at_zero_and_above` (40 seeds at N = 2,000 and 10,000, rho 0 and 0.2:
  at least 36 of 40 intervals cover the truth) and `test_the_bias_correction_is_the_plug_in_estimates_mean_error`.
- `tests/test_estimator_bias.py` (4 standard errors around these biases): `test_the_reports_gaussian_tc_at_the_apps_size`,
  `test_the_reports_knn_at_the_apps_size`, `test_knn_batches_hold_distinct_mean_codes_only` (the toy's {toy['report_n']}),
  `test_the_mixture_reads_above_the_limit_by_the_finite_mixtures_excess`, the training signals' tests, `test_the_bench_runs_small`.

## How this was made

Made by `{st['command']}` (--seeds {st['seeds']} at N < 5,000, --large-seeds {st['large_seeds']} at N >= 5,000 and toy-like, --mc-seeds
{st['mc_seeds']}, --signal-seeds {st['signal_seeds']}, --workers {st['workers']}; --sizes sets the N). {m['seconds']:.0f} s wall,
{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}.
""")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="N to measure, comma-separated (default: those in use)")
    parser.add_argument("--seeds", type=int, default=20, help="reports per case at N < 5,000 (default 20)")
    parser.add_argument("--large-seeds", type=int, default=10, help="reports per case at N >= 5,000, and toy-like ones (default 10)")
    parser.add_argument("--mc-seeds", type=int, default=3, help="of those, how many run the dataset Monte-Carlo (default 3)")
    parser.add_argument("--signal-seeds", type=int, default=20, help="batches per case for each training signal (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 0: this process)")
    parser.add_argument("--write", type=Path, help="also write the document (e.g. docs/estimators.md)")
    args = parser.parse_args(argv)
    if min(args.seeds, args.large_seeds, args.mc_seeds, args.signal_seeds) < 2 or args.mc_seeds > min(args.seeds, args.large_seeds):
        parser.error("every seed count must be at least 2 (an sd needs two values), and --mc-seeds at most the others")
    torch.set_num_threads(1)
    sizes, say = sizes_in_use(), lambda message: print(message, file=sys.stderr, flush=True)
    ns = args.sizes or sorted({sizes["app_points"], sizes["app_eval_n"], sizes["evaluate_n"], sizes["your_codes_n"]})
    m = measure(ns, args.seeds, args.large_seeds, args.mc_seeds, args.signal_seeds, sizes["evaluate_mc"], args.workers, say, sizes["evaluate_n"])
    used = " ".join(sys.argv[1:] if argv is None else argv)
    settings = vars(args) | {"load": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
                             "command": COMMAND if used == COMMAND.split(".py ")[1] else f"{COMMAND.split(' --')[0]} {used}"}
    toy = toy_points(sizes)
    print(*tables(m, sizes), f"toy: {toy}", sep="\n\n")
    if args.write:
        args.write.write_text(document(m, sizes, settings, toy))
        say(f"wrote {args.write}")


if __name__ == "__main__":
    main()
