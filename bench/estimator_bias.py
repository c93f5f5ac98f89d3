"""Bias and spread of every TC estimator against a closed form, at the sizes the trainer and the app use.

Known answer (`mtc_core.theory.synthetic`; docs/design.md, "Reading a TC estimate"): N mean codes
mu_n ~ N(0, C_mu) with a fixed diagonal posterior variance, so the sampled codes are N(0, C_mu + diag s) and the
aggregated posterior tends to it; both TCs are closed form. Cases, D = 10, s = 0.5: equicorrelated means with rho
0, 0.3, 0.6 (docs/design.md, "The theorem") and a passive-like case (9 independent active latents, one passive
latent with Var mu 0.005 correlated 0.95 with latent 0, posterior variance 0.995).

Each cell draws fresh data per seed and reports estimate - closed form (mean and sd over seeds). A minibatch is
B points drawn without replacement from a finite set of N i.i.d. points, which is distributed as B i.i.d. points,
so it is drawn directly; N enters the minibatch estimators only through their weights (`dataset_size`).
tc_dataset costs O(N x samples x D) on the CPU, so its sizes are capped (see the table). Prints a markdown table;
`--write docs/estimators.md` also writes the document around it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/estimator_bias.py --write docs/estimators.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mtc_core.estimators import (
    gaussian_tc,
    mean_tc_gaussian,
    mean_tc_kde,
    sampled_cov,
    tc_dataset,
    tc_knn,
    tc_mss,
    tc_mws,
)
from mtc_core.theory import passive_posterior, passive_tc, synthetic_posterior, synthetic_tc

D, S = 10, 0.5
SHAPES2D = 737_280
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python bench/estimator_bias.py --write docs/estimators.md"


@dataclass(frozen=True)
class Case:
    name: str
    sample: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]  # (n, rng) -> (mu, logvar)
    truth: dict[str, float]  # {"mean": TC of the means, "sampled": TC of the sampled codes / aggregate}


CASES = [
    *(Case(f"rho {rho:g}", lambda n, rng, rho=rho: synthetic_posterior(n, D, rho, S, rng), synthetic_tc(D, rho, S))
      for rho in (0.0, 0.3, 0.6)),
    Case("passive copy", lambda n, rng: passive_posterior(n, D, S, rng), passive_tc(D, S)),
]


@dataclass(frozen=True)
class Cell:
    estimator: str
    codes: str  # "mean" or "sampled": which closed form is the target
    size: str
    role: str
    seeds: int
    run: Callable[[Case, np.random.Generator, int], float]  # (case, rng, seed) -> estimate


def _sampled(mu: np.ndarray, logvar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return mu + np.exp(logvar / 2) * rng.standard_normal(mu.shape)


def _batch(case: Case, b: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """A training batch: float32 (z, mu, logvar), as the trainer feeds the minibatch estimators."""
    mu, logvar = case.sample(b, rng)
    return [torch.as_tensor(a, dtype=torch.float32) for a in (_sampled(mu, logvar, rng), mu, logvar)]


def cells(seeds: int, slow_seeds: int) -> list[Cell]:
    out = []
    measure, signal = "measurement", "training signal"
    for n in (2_000, 10_000):
        out.append(Cell("Gaussian, gaussian_tc(np.cov(mu))", "mean", f"N = {n:,}", measure, seeds,
                        lambda c, rng, s, n=n: gaussian_tc(np.cov(c.sample(n, rng)[0], rowvar=False))))
    for n in (2_000, 10_000):
        out.append(Cell("Gaussian, gaussian_tc(sampled_cov(mu, logvar))", "sampled", f"N = {n:,}", measure, seeds,
                        lambda c, rng, s, n=n: gaussian_tc(sampled_cov(*c.sample(n, rng)))))
    for n in (2_000, 5_000):
        out.append(Cell("kNN, tc_knn(mu)", "mean", f"N = {n:,}", measure, slow_seeds,
                        lambda c, rng, s, n=n: tc_knn(c.sample(n, rng)[0])))
    for n in (2_000, 5_000):
        out.append(Cell("kNN, tc_knn(z)", "sampled", f"N = {n:,}", measure, slow_seeds,
                        lambda c, rng, s, n=n: tc_knn(_sampled(*c.sample(n, rng), rng))))
    # the app: N = 2,000 points, 2,000 samples; evaluate: N = 10,000, 2,000 samples (capped here: CPU cost).
    # Blocks of ~2e6 elements instead of tc_dataset's default ~2e7 give identical values 2-5x faster on this CPU.
    for n, samples, k in ((2_000, 2_000, slow_seeds), (10_000, 500, max(2, slow_seeds // 2))):
        out.append(Cell("dataset Monte-Carlo, tc_dataset", "sampled", f"N = {n:,}, {samples:,} samples", measure, k,
                        lambda c, rng, s, n=n, m=samples: tc_dataset(*c.sample(n, rng), num_samples=m, rng=rng,
                                                                      chunk_size=max(1, 2_000_000 // (n * D)))))
    for b in (64, 256, 512):
        for n in (2_000, 10_000, SHAPES2D):
            out.append(Cell("MSS, tc_mss", "sampled", f"B = {b}, dataset_size = {n:,}", signal, seeds,
                            lambda c, rng, s, b=b, n=n: tc_mss(*_batch(c, b, rng), n).item()))
    for b in (64, 256, 512):
        # exactly (D - 1) log N above the batch-mixture TC for every N (constant weights 1 / (N B)), so one row per B
        out.append(Cell("MWS - (D - 1) log N, tc_mws", "sampled", f"B = {b}, any dataset_size", signal, seeds,
                        lambda c, rng, s, b=b: tc_mws(*_batch(c, b, rng), SHAPES2D).item() - (D - 1) * math.log(SHAPES2D)))
    for b in (64, 256, 512):
        out.append(Cell("penalty mean_tc_gaussian(mu)", "mean", f"B = {b}", signal, seeds,
                        lambda c, rng, s, b=b: mean_tc_gaussian(_batch(c, b, rng)[1]).item()))
    for b in (64, 256, 512):
        out.append(Cell("penalty mean_tc_kde(mu, generator)", "mean", f"B = {b}", signal, seeds,
                        lambda c, rng, s, b=b: mean_tc_kde(_batch(c, b, rng)[1], torch.Generator().manual_seed(s)).item()))
    return out


def measure(cell_list: list[Cell], progress=print) -> list[dict]:
    """Per cell and case: bias = estimate - closed form, mean and sd (ddof 1) over seeds."""
    rows = []
    for i, cell in enumerate(cell_list):
        t0 = time.perf_counter()
        row = {"cell": cell, "bias": {}, "sd": {}}
        for j, case in enumerate(CASES):
            errors = [cell.run(case, np.random.default_rng([i, j, seed]), seed) - case.truth[cell.codes] for seed in range(cell.seeds)]
            row["bias"][case.name], row["sd"][case.name] = float(np.mean(errors)), float(np.std(errors, ddof=1))
        rows.append(row)
        progress(f"{cell.estimator} [{cell.size}]: {time.perf_counter() - t0:.1f} s")
    return rows


def truth_table() -> str:
    lines = ["| case | TC of the means (nats) | TC of the sampled codes / aggregate q(z) (nats) |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.truth['mean'] + 0.0:.4f} | {c.truth['sampled'] + 0.0:.4f} |" for c in CASES]  # + 0.0: no "-0.0000"
    return "\n".join(lines)


def bias_table(rows: list[dict]) -> str:
    head = "| estimator | codes | sizes | role | seeds | " + " | ".join(f"{c.name}: bias ± sd" for c in CASES) + " |"
    lines = [head, "|" + "---|" * (5 + len(CASES))]
    for row in rows:
        c = row["cell"]
        values = " | ".join(f"{row['bias'][k.name]:+.3f} ± {row['sd'][k.name]:.3f}" for k in CASES)
        lines.append(f"| {c.estimator} | {c.codes} | {c.size} | {c.role} | {c.seeds} | {values} |")
    return "\n".join(lines)


def _find(rows: list[dict], estimator: str, size: str) -> dict:
    return next(r for r in rows if r["cell"].estimator.startswith(estimator) and r["cell"].size == size)


def _at(rows: list[dict], estimator: str, size: str, case: str = "rho 0") -> str:
    r = _find(rows, estimator, size)
    return f"{r['bias'][case]:+.2f} ± {r['sd'][case]:.2f}"


def _worst(rows: list[dict], estimator: str) -> tuple[float, float]:
    """Largest |bias| and largest sd over every case and size of the rows starting with `estimator`."""
    picked = [r for r in rows if r["cell"].estimator.startswith(estimator)]
    return (max(abs(b) for r in picked for b in r["bias"].values()), max(sd for r in picked for sd in r["sd"].values()))


def _offsets() -> str:
    """MWS's exact (D - 1) log N offset at the dataset sizes in use."""
    return ", ".join(f"{(D - 1) * math.log(n):.1f} at N = {n:,}" for n in (2_000, 10_000, SHAPES2D))


def _signs(rows: list[dict]) -> tuple[str, str]:
    """What the document says about the sign of MSS's bias (N >= 10,000) and of MWS's, from the rows."""
    mss_sizes = [f"B = {b}, dataset_size = {n:,}" for b in (64, 256, 512) for n in (10_000, SHAPES2D)]
    mss_negative = all(_find(rows, "MSS", size)["bias"][c.name] < 0 for size in mss_sizes for c in CASES)
    mss_sign = ("It reads **below** the truth in every case at every batch size once N >= 10,000" if mss_negative
                else "Its sign depends on the case and sizes (see the table)")
    mws_positive = all(r["bias"][c.name] > 0 for r in rows if r["cell"].estimator.startswith("MWS") for c in CASES)
    mws_sign = "; above the truth in every case and batch size" if mws_positive else ""
    return mss_sign, mws_sign


def _findings(rows: list[dict]) -> str:
    """The bullet list that reads the table, one bullet per estimator family."""
    at = partial(_at, rows)
    gauss, knn = _worst(rows, "Gaussian"), _worst(rows, "kNN")
    offsets = _offsets()
    mss_sign, mws_sign = _signs(rows)
    small_sample = ", ".join(f"{D * (D - 1) / (4 * b):.2f}" for b in (64, 256, 512))
    passive_kde = ", ".join(f"{_find(rows, 'penalty mean_tc_kde', f'B = {b}')['bias']['passive copy']:+.2f}" for b in (64, 256, 512))
    return f"""- Gaussian TC (measurement): |bias| at most {gauss[0]:.3f} in every case and size, sd up to {gauss[1]:.3f}. It sees
  only linear dependence; the synthetic cases are Gaussian, so here it is the right model.
- kNN (measurement): |bias| at most {knn[0]:.3f}, sd up to {knn[1]:.3f}; on means and on sampled codes alike, so the
  two can be compared at the same N.
- Dataset Monte-Carlo (measurement): {at("dataset Monte-Carlo", "N = 2,000, 2,000 samples")} on independent codes
  at the app's N = 2,000 and {at("dataset Monte-Carlo", "N = 10,000, 500 samples")} at N = 10,000. At finite N it
  measures the N-component mixture, which counts each point's own kernel and reads **above** the N -> infinity
  limit; the excess shrinks with N and with the true TC.
- MSS (training signal): on independent codes at batch 64 it reads {at("MSS", "B = 64, dataset_size = 2,000")}
  with dataset_size 2,000, {at("MSS", "B = 64, dataset_size = 10,000")} with 10,000 and
  {at("MSS", "B = 64, dataset_size = 737,280")} with Shapes2D's 737,280. {mss_sign}: each point's own kernel
  gets weight 1/N and the rest of q(z) is estimated from B - 1 other points. A negative MSS value is its bias, not a
  property of the model; never show it as a model's TC.
- MWS (training signal, Chen et al.'s weights): {at("MWS", "B = 64, any dataset_size")} at batch 64 on independent
  codes after subtracting its exact (D - 1) log N offset ({offsets} nats){mws_sign}.
- Gaussian mean-TC penalty (training signal): {at("penalty mean_tc_gaussian", "B = 64")} on independent codes at
  batch 64, {at("penalty mean_tc_gaussian", "B = 256")} at 256, {at("penalty mean_tc_gaussian", "B = 512")} at 512:
  it subtracts the expected -1/2 log det R of independent codes at the batch size (`gaussian_tc_null_mean`;
  about D (D - 1) / (4 B) = {small_sample}), a constant that leaves its gradient as it was.
- KDE mean-TC penalty (training signal, permuted-copy corrected): {at("penalty mean_tc_kde", "B = 64")} on
  independent codes at batch 64 (sd large: one batch is a noisy reading); on the passive copy (truth
  {CASES[-1].truth["mean"]:.2f}) its bias is {passive_kde} at batch 64 / 256 / 512.
"""


def _notes() -> str:
    """The notes under the tables: how the cells were sized and what the passive case is."""
    offsets = _offsets()
    return f"""Notes:
- A minibatch of B points from a finite set of N i.i.d. points is distributed as B i.i.d. points, so batches are
  drawn directly; N enters MSS and MWS only through their weights. MWS's raw value is (D - 1) log N higher than its
  rows show, for every batch: {offsets} nats.
- tc_dataset is capped on the CPU: at N = 10,000 it uses 500 Monte-Carlo samples and half the seeds (`evaluate` uses
  2,000 samples there: more samples shrink the sd, not the bias, which is that of the N-component mixture).
- kNN at N = 5,000: `evaluate` estimates kNN TC on up to 5,000 distinct codes of its 10,000 training points; the app
  uses 2,000 points.
- The passive case puts all TC in one pair (active latent 0 and a passive latent whose mean, Var 0.005, copies it
  with correlation 0.95; posterior variance 0.995): mean TC {CASES[-1].truth["mean"]:.2f}, sampled TC
  {CASES[-1].truth["sampled"]:.4f} (the masking of docs/design.md: Why mean and sampled codes differ).
"""


def document(rows: list[dict], seconds: float) -> str:
    return f"""# How far each TC estimator is from the truth, at the sizes in use

Every TC in MTC Explorer comes from an estimator with a bias that depends on the sample or batch size. This table
measures each against a closed form (docs/design.md: Reading a TC estimate): N mean codes mu_n ~ N(0, C_mu) with a fixed diagonal posterior
variance, so the sampled codes are exactly N(0, C_mu + diag s) and the aggregated posterior q(z) tends to it as N
grows (`mtc_core.theory.synthetic`). D = {D} latents, posterior variance s = {S}. Bias = estimate - closed form,
in nats; ± is the standard deviation over seeds (a fresh dataset or batch per seed), the spread of a single reading
(the standard error of the bias is sd / sqrt(seeds)). `tests/test_estimator_bias.py` holds the estimators to these
numbers.

**Measurements** (what the app and `evaluate` report as a model's TC): the Gaussian TC and kNN on mean and sampled
codes, and the dataset Monte-Carlo on the aggregated posterior. **Training signals** (what the losses optimise):
MSS and MWS on a minibatch of sampled codes, and RTC-VAE's two mean-TC penalties on a minibatch of means. A training
signal needs the right gradient, not the right value; read as a measurement it is off by the bias below.

{_findings(rows)}
Closed forms:

{truth_table()}

Bias (estimate - closed form, nats), mean ± sd over the seeds given:

{bias_table(rows)}

{_notes()}
Made by `{COMMAND}` ({seconds:.0f} s wall on one thread of a shared machine, {platform.machine()},
torch {torch.__version__}, numpy {np.__version__}).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per cell for the fast estimators (default 20)")
    parser.add_argument("--slow-seeds", type=int, default=10, help="seeds per cell for kNN and tc_dataset (default 10)")
    parser.add_argument("--write", type=Path, help="also write the document (e.g. docs/estimators.md)")
    args = parser.parse_args()
    if args.seeds < 2 or args.slow_seeds < 2:
        parser.error("--seeds and --slow-seeds must be at least 2 (an sd needs two values)")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = measure(cells(args.seeds, args.slow_seeds), progress=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    print(truth_table() + "\n\n" + bias_table(rows))
    if args.write:
        args.write.write_text(document(rows, seconds))
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
