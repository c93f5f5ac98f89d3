"""mtc_core.metrics vs disentanglement_lib 1.5 on identical inputs: values and single-thread times.

Setup of the peer (once; its venv is gitignored):
    python3 -m venv .peer-venv
    .peer-venv/bin/pip install --no-deps disentanglement-lib==1.5
    .peer-venv/bin/pip install numpy scipy scikit-learn six absl-py gin-config==0.4.0
Run from the repository root:
    .venv/bin/python bench/metrics_vs_peer.py --rounds 3   # prints a markdown table
The script saves the codes to a temporary .npz and runs itself under the peer's python with
--peer, which imports disentanglement_lib (with an empty `gin.tf`: its metrics only need
gin.configurable) and times the peer's functions on the same arrays (dims x points there).
Both sides run with one BLAS/OpenMP thread, alternating A B A B: each of `--rounds` rounds times every metric
once on our side, then once on the peer's; the table gives the median CPU seconds over the rounds with their
spread (min-max), and the output states the rounds and the machine's load (os.getloadavg) before and after.
Without the peer venv (fallback) only our side is timed and the peer columns say so. `--skip-gbt` leaves out
the GBT DCI (about a minute a call on each side).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".peer-venv" / "bin" / "python"
FACTOR_SIZES = (3, 4, 5, 6, 8)
NUM_TRAIN, NUM_TEST, NUM_LATENTS = 10000, 5000, 10
SEED = 0
# FactorVAE / BetaVAE on the toy dataset below (the peers' defaults are 10000 / 5000 points)
INTERVENTION = {"batch_size": 64, "num_train": 2000, "num_eval": 1000}
GBT_CALLS = ("dci",)  # the calls --skip-gbt leaves out on both sides


def _mixing(seed: int) -> np.ndarray:
    """[K, D]: latent j < K mostly follows factor j, everything mixed a little; the last latent is nearly dead."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(len(FACTOR_SIZES), NUM_LATENTS) + 0.3 * rng.standard_normal((len(FACTOR_SIZES), NUM_LATENTS))
    mixing[:, -1] *= 0.05
    return mixing


def make_codes(seed: int = SEED) -> dict[str, np.ndarray]:
    """Factors and noisy mixed codes, train and test, points x dims."""
    rng = np.random.default_rng(seed)
    sizes = np.array(FACTOR_SIZES)
    out = {}
    for split, n in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        factors = rng.integers(0, sizes, size=(n, len(sizes)))
        codes = (factors / (sizes - 1) - 0.5) @ _mixing(seed) + 0.2 * rng.standard_normal((n, NUM_LATENTS))
        out[f"codes_{split}"], out[f"factors_{split}"] = codes, factors
    return out


class ToyDataset:
    """The factor grid FACTOR_SIZES; an 'image' [1, 1, K] holds the factor values."""

    factor_sizes = FACTOR_SIZES
    num_factors = len(FACTOR_SIZES)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.factor_sizes, size=(n, self.num_factors), dtype=np.int64)

    def render(self, factors: np.ndarray) -> np.ndarray:
        return np.asarray(factors, dtype=np.float32)[:, None, None, :]


def toy_encode(images: np.ndarray) -> np.ndarray:
    """Deterministic row-wise encoder (no BLAS, so batch size cannot change a bit): mixing plus a wiggle."""
    x = images[:, 0, 0, :].astype(np.float64) / (np.array(FACTOR_SIZES) - 1) - 0.5
    mixed = (x[:, :, None] * _mixing(SEED)[None]).sum(axis=1)
    return mixed + 0.05 * np.sin(7.0 * mixed)


def _timed(fn):
    """(value, CPU seconds) of one call: everything runs on one thread, and CPU time does not count the
    other processes of a shared machine the way wall time does."""
    start = time.process_time()
    value = fn()
    return value, time.process_time() - start


# ------------------------------------------------------------------------------------------ ours


def run_ours(data: dict, skip: tuple[str, ...] = ()) -> dict:
    """One round on our side: every metric once, {name: {"value", "seconds"}}."""
    from mtc_core import metrics

    tr, ft, te, fe = data["codes_train"], data["factors_train"], data["codes_test"], data["factors_test"]
    results = {}
    calls = {
        "mig": lambda: {"discrete_mig": metrics.mig(tr, ft)},
        "sap": lambda: {"SAP_score": metrics.sap(tr, ft, te, fe)},
        "unsupervised": lambda: metrics.unsupervised(tr),
        "modularity_explicitness": lambda: metrics.modularity_explicitness(tr, ft, te, fe),
        "dci": lambda: metrics.dci(tr, ft, te, fe, mode="gbt", seed=SEED),
        "dci_fast": lambda: metrics.dci(tr, ft, te, fe, mode="fast", seed=SEED),
        "factor_vae": lambda: metrics.factor_vae_score(toy_encode, ToyDataset(), compat=True, seed=SEED, **INTERVENTION),
        "factor_vae_fixed": lambda: metrics.factor_vae_score(toy_encode, ToyDataset(), seed=SEED, **INTERVENTION),
        "beta_vae": lambda: metrics.beta_vae_score(toy_encode, ToyDataset(), seed=SEED, **INTERVENTION),
    }
    for name, fn in calls.items():
        if name in skip:
            continue
        with threadpool_limits(limits=1):
            value, seconds = _timed(fn)
        results[name] = {"value": value, "seconds": seconds}
        print(f"ours  {name}: {seconds:.4f} s", file=sys.stderr, flush=True)
    return results


# ------------------------------------------------------------------------------------------ peer


def _peer_metrics() -> types.SimpleNamespace:
    """disentanglement_lib's metric modules, imported with an empty `gin.tf` (the metrics only use gin.configurable),
    with the gin parameters their discretizer and dimension pruning read."""
    sys.modules["gin.tf"] = types.ModuleType("gin.tf")
    import gin
    from disentanglement_lib.evaluation.metrics import (
        beta_vae,
        dci,
        factor_vae,
        mig,
        modularity_explicitness,
        sap_score,
        unsupervised_metrics,
        utils,
    )

    gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    gin.bind_parameter("prune_dims.threshold", 0.05)
    return types.SimpleNamespace(beta_vae=beta_vae, dci=dci, factor_vae=factor_vae, mig=mig, modularity_explicitness=modularity_explicitness,
                                 sap_score=sap_score, unsupervised_metrics=unsupervised_metrics, utils=utils)


def _peer_modularity(lib: types.SimpleNamespace, mus, ys, mus_test, ys_test) -> dict:
    """The peer's compute_modularity_explicitness after its data generation."""
    utils, modularity_explicitness = lib.utils, lib.modularity_explicitness
    scores = {}
    mutual_information = utils.discrete_mutual_info(utils.make_discretizer(mus), ys)
    scores["modularity_score"] = modularity_explicitness.modularity(mutual_information)
    train, test = np.zeros([ys.shape[0], 1]), np.zeros([ys_test.shape[0], 1])
    mus_norm, mean, std = utils.normalize_data(mus)
    mus_test_norm, _, _ = utils.normalize_data(mus_test, mean, std)
    for i in range(ys.shape[0]):
        train[i], test[i] = modularity_explicitness.explicitness_per_factor(mus_norm, ys[i, :], mus_test_norm, ys_test[i, :])
    scores["explicitness_score_train"] = np.mean(train)
    scores["explicitness_score_test"] = np.mean(test)
    return scores


def _peer_unsupervised(lib: types.SimpleNamespace, mus) -> dict:
    """The peer's unsupervised_metrics after its data generation."""
    utils, unsupervised_metrics = lib.utils, lib.unsupervised_metrics
    scores = {}
    cov = np.cov(mus)
    scores["gaussian_total_correlation"] = unsupervised_metrics.gaussian_total_correlation(cov)
    scores["gaussian_wasserstein_correlation"] = unsupervised_metrics.gaussian_wasserstein_correlation(cov)
    scores["gaussian_wasserstein_correlation_norm"] = scores["gaussian_wasserstein_correlation"] / np.sum(np.diag(cov))
    discrete = utils.make_discretizer(mus)
    mutual_info = utils.discrete_mutual_info(discrete, discrete)
    np.fill_diagonal(mutual_info, 0)
    scores["mutual_info_score"] = np.sum(mutual_info) / (mus.shape[0] ** 2 - mus.shape[0])
    return scores


class GeneratorState(np.random.RandomState):
    """A RandomState whose randint draws from a numpy Generator, so both sides share one stream."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.generator = np.random.default_rng(seed)

    def randint(self, *args, **kwargs):
        return self.generator.integers(*args, **kwargs)


class PeerToyData:
    """ToyDataset behind disentanglement_lib's GroundTruthData interface."""

    num_factors = ToyDataset.num_factors

    def sample_factors(self, num, random_state):
        return ToyDataset().sample_factors(num, random_state.generator)

    def sample_observations_from_factors(self, factors, random_state):
        return ToyDataset().render(factors)

    def sample_observations(self, num, random_state):
        return ToyDataset().render(self.sample_factors(num, random_state))


def _peer_calls(lib: types.SimpleNamespace, data: dict) -> dict:
    """name -> (the peer's computation on dims x points arrays, repeats)."""
    mus, ys = data["codes_train"].T, data["factors_train"].T
    mus_test, ys_test = data["codes_test"].T, data["factors_test"].T

    def dci_seeded():  # the peer's GBTs draw from numpy's global RandomState; ours equals it after this seed
        np.random.seed(SEED)
        return lib.dci._compute_dci(mus, ys, mus_test, ys_test)

    return {
        "mig": lambda: lib.mig._compute_mig(mus, ys),
        "sap": lambda: lib.sap_score._compute_sap(mus, ys, mus_test, ys_test, False),
        "unsupervised": lambda: _peer_unsupervised(lib, mus),
        "modularity_explicitness": lambda: _peer_modularity(lib, mus, ys, mus_test, ys_test),
        "dci": dci_seeded,
        "factor_vae": lambda: lib.factor_vae.compute_factor_vae(
            PeerToyData(), toy_encode, GeneratorState(SEED), num_variance_estimate=10000, **INTERVENTION),
        "beta_vae": lambda: lib.beta_vae.compute_beta_vae_sklearn(PeerToyData(), toy_encode, GeneratorState(SEED), **INTERVENTION),
    }


def run_peer(data: dict, skip: tuple[str, ...] = ()) -> dict:
    """Runs inside the peer venv: one round of disentanglement_lib's own functions on dims x points arrays."""
    lib = _peer_metrics()
    results = {}
    for name, fn in _peer_calls(lib, data).items():
        if name in skip:
            continue
        with threadpool_limits(limits=1):
            value, seconds = _timed(fn)
        results[name] = {"value": {k: float(v) for k, v in value.items()}, "seconds": seconds}
        print(f"peer  {name}: {seconds:.4f} s", file=sys.stderr, flush=True)
    return results


# ------------------------------------------------------------------------------------------ table

# (row label, our result, our key, peer result, peer key)
ROWS = [
    ("MIG", "mig", "discrete_mig", "mig", "discrete_mig"),
    ("SAP", "sap", "SAP_score", "sap", "SAP_score"),
    ("Gaussian TC", "unsupervised", "gaussian_total_correlation", "unsupervised", "gaussian_total_correlation"),
    ("Wasserstein corr.", "unsupervised", "gaussian_wasserstein_correlation", "unsupervised", "gaussian_wasserstein_correlation"),
    ("Wasserstein corr. norm", "unsupervised", "gaussian_wasserstein_correlation_norm", "unsupervised",
     "gaussian_wasserstein_correlation_norm"),
    ("mutual_info_score", "unsupervised", "mutual_info_score", "unsupervised", "mutual_info_score"),
    ("modularity", "modularity_explicitness", "modularity_score", "modularity_explicitness", "modularity_score"),
    ("explicitness train", "modularity_explicitness", "explicitness_score_train", "modularity_explicitness",
     "explicitness_score_train"),
    ("explicitness test", "modularity_explicitness", "explicitness_score_test", "modularity_explicitness", "explicitness_score_test"),
    ("DCI disentanglement (gbt)", "dci", "disentanglement", "dci", "disentanglement"),
    ("DCI completeness (gbt)", "dci", "completeness", "dci", "completeness"),
    ("DCI informativeness train (gbt)", "dci", "informativeness_train", "dci", "informativeness_train"),
    ("DCI informativeness test (gbt)", "dci", "informativeness_test", "dci", "informativeness_test"),
    ("DCI disentanglement (fast vs peer gbt)", "dci_fast", "disentanglement", "dci", "disentanglement"),
    ("DCI completeness (fast vs peer gbt)", "dci_fast", "completeness", "dci", "completeness"),
    ("DCI informativeness train (fast vs peer gbt)", "dci_fast", "informativeness_train", "dci", "informativeness_train"),
    ("DCI informativeness test (fast vs peer gbt)", "dci_fast", "informativeness_test", "dci", "informativeness_test"),
    ("FactorVAE train acc. (compat)", "factor_vae", "train_accuracy", "factor_vae", "train_accuracy"),
    ("FactorVAE eval acc. (compat)", "factor_vae", "eval_accuracy", "factor_vae", "eval_accuracy"),
    ("FactorVAE num_active_dims (compat)", "factor_vae", "num_active_dims", "factor_vae", "num_active_dims"),
    ("FactorVAE eval acc. (fixed)", "factor_vae_fixed", "eval_accuracy", "factor_vae", "eval_accuracy"),
    ("FactorVAE num_active_dims (fixed)", "factor_vae_fixed", "num_active_dims", "factor_vae", "num_active_dims"),
    ("BetaVAE train acc.", "beta_vae", "train_accuracy", "beta_vae", "train_accuracy"),
    ("BetaVAE eval acc.", "beta_vae", "eval_accuracy", "beta_vae", "eval_accuracy"),
]


def _spread(rounds: list[dict], name: str) -> str:
    """"median (min-max)" CPU seconds of one call over the rounds."""
    times = [r[name]["seconds"] for r in rounds]
    return f"{np.median(times):.4f} ({min(times):.4f}-{max(times):.4f})"


def table(ours: list[dict], peer: list[dict] | None) -> str:
    """Values of the first round (every call is deterministic) and median (min-max) CPU seconds over the rounds."""
    lines = ["| metric | ours | peer | abs diff | our CPU s | peer CPU s | speed ratio (medians) |", "|---|---|---|---|---|---|---|"]
    timed = set()
    for label, ours_name, ours_key, peer_name, peer_key in ROWS:
        if ours_name not in ours[0]:
            continue
        a = float(ours[0][ours_name]["value"][ours_key])
        has = bool(peer) and peer_name in peer[0]  # the peer's GBT DCI is left out with --skip-gbt
        b = float(peer[0][peer_name]["value"][peer_key]) if has else None
        times = ["", "", ""]
        if ours_name not in timed:  # time once per call
            timed.add(ours_name)
            times = [_spread(ours, ours_name), _spread(peer, peer_name) if has else "no peer" if not peer else "skipped", ""]
            if has:
                ratio = np.median([r[peer_name]["seconds"] for r in peer]) / np.median([r[ours_name]["seconds"] for r in ours])
                times[2] = f"{ratio:.1f}x"
        peer_text, diff = (f"{b:.10g}", f"{abs(a - b):.2e}") if b is not None else ("n/a", "")
        lines.append(f"| {label} | {a:.10g} | {peer_text} | {diff} | " + " | ".join(times) + " |")
    return "\n".join(lines)


def _peer_round(data_path: Path, out: Path, skip: tuple[str, ...]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([str(PEER_PYTHON), __file__, "--peer", str(data_path), str(out), *(["--skip-gbt"] if skip else [])],
                   check=True, env=env)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", nargs=2, metavar=("INPUT_NPZ", "OUTPUT_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds: each times every metric once per side")
    parser.add_argument("--skip-gbt", action="store_true", help="leave out the GBT DCI on both sides")
    args = parser.parse_args()
    skip = GBT_CALLS if args.skip_gbt else ()
    if args.peer:
        data = dict(np.load(args.peer[0]))
        Path(args.peer[1]).write_text(json.dumps(run_peer(data, skip)))
        return
    has_peer = PEER_PYTHON.exists()
    if not has_peer:
        print(f"peer venv missing: {PEER_PYTHON} (see this file's docstring); timing our side only", file=sys.stderr)
    load_before = os.getloadavg()
    data = make_codes()
    ours, peer = [], []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **data)
        for r in range(args.rounds):  # A B A B: both sides see the same changes of the machine's load
            ours.append(run_ours(data, skip))
            if has_peer:
                peer.append(_peer_round(inputs, Path(tmp) / f"peer{r}.json", skip))
    load_after = os.getloadavg()
    print(f"{args.rounds} rounds, A B alternated (ours, then the peer's), one thread; CPU seconds median (min-max); "
          f"load average (1, 5, 15 min) {', '.join(f'{v:.1f}' for v in load_before)} before, "
          f"{', '.join(f'{v:.1f}' for v in load_after)} after{'' if has_peer else '; peer venv missing: our side only'}\n")
    print(table(ours, peer or None))


if __name__ == "__main__":
    main()
