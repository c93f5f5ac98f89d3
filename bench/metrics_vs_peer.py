"""mtc_core.metrics vs disentanglement_lib 1.5 on identical inputs: values and single-thread times.

Setup of the peer (once; its venv is gitignored):
    python3 -m venv .peer-venv
    .peer-venv/bin/pip install --no-deps disentanglement-lib==1.5
    .peer-venv/bin/pip install numpy scipy scikit-learn six absl-py gin-config==0.4.0
Run from the repository root:
    .venv/bin/python bench/metrics_vs_peer.py            # prints a markdown table
The script saves the codes to a temporary .npz and runs itself under the peer's python with
--peer, which imports disentanglement_lib (with an empty `gin.tf`: its metrics only need
gin.configurable) and times the peer's functions on the same arrays (dims x points there).
Both sides run with one BLAS/OpenMP thread.
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
REPEATS = 5  # fast metrics: best of REPEATS


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


def _best_time(fn, repeats: int):
    """(value, least CPU seconds): everything runs on one thread, and CPU time does not count the
    other processes of a shared machine the way wall time does."""
    times, value = [], None
    for _ in range(repeats):
        start = time.process_time()
        value = fn()
        times.append(time.process_time() - start)
    return value, min(times)


# ------------------------------------------------------------------------------------------ ours


def run_ours(data: dict) -> dict:
    from mtc_core import metrics

    tr, ft, te, fe = data["codes_train"], data["factors_train"], data["codes_test"], data["factors_test"]
    results = {}
    calls = {
        "mig": (lambda: {"discrete_mig": metrics.mig(tr, ft)}, REPEATS),
        "sap": (lambda: {"SAP_score": metrics.sap(tr, ft, te, fe)}, REPEATS),
        "unsupervised": (lambda: metrics.unsupervised(tr), REPEATS),
        "modularity_explicitness": (lambda: metrics.modularity_explicitness(tr, ft, te, fe), REPEATS),
        "dci": (lambda: metrics.dci(tr, ft, te, fe, mode="gbt", seed=SEED), 1),
        "dci_fast": (lambda: metrics.dci(tr, ft, te, fe, mode="fast", seed=SEED), 3),
        "factor_vae": (lambda: metrics.factor_vae_score(toy_encode, ToyDataset(), compat=True, seed=SEED, **INTERVENTION), 1),
        "factor_vae_fixed": (lambda: metrics.factor_vae_score(toy_encode, ToyDataset(), seed=SEED, **INTERVENTION), 1),
        "beta_vae": (lambda: metrics.beta_vae_score(toy_encode, ToyDataset(), seed=SEED, **INTERVENTION), 1),
    }
    for name, (fn, repeats) in calls.items():
        with threadpool_limits(limits=1):
            value, seconds = _best_time(fn, repeats)
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
        "mig": (lambda: lib.mig._compute_mig(mus, ys), REPEATS),
        "sap": (lambda: lib.sap_score._compute_sap(mus, ys, mus_test, ys_test, False), REPEATS),
        "unsupervised": (lambda: _peer_unsupervised(lib, mus), REPEATS),
        "modularity_explicitness": (lambda: _peer_modularity(lib, mus, ys, mus_test, ys_test), REPEATS),
        "dci": (dci_seeded, 1),
        "factor_vae": (lambda: lib.factor_vae.compute_factor_vae(
            PeerToyData(), toy_encode, GeneratorState(SEED), num_variance_estimate=10000, **INTERVENTION), 1),
        "beta_vae": (lambda: lib.beta_vae.compute_beta_vae_sklearn(PeerToyData(), toy_encode, GeneratorState(SEED), **INTERVENTION), 1),
    }


def run_peer(data: dict) -> dict:
    """Runs inside the peer venv: disentanglement_lib's own functions on dims x points arrays."""
    lib = _peer_metrics()
    results = {}
    for name, (fn, repeats) in _peer_calls(lib, data).items():
        with threadpool_limits(limits=1):
            value, seconds = _best_time(fn, repeats)
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


def table(ours: dict, peer: dict) -> str:
    lines = ["| metric | ours | peer | abs diff | our CPU s | peer CPU s | speed ratio |", "|---|---|---|---|---|---|---|"]
    timed = set()
    for label, ours_name, ours_key, peer_name, peer_key in ROWS:
        a, b = float(ours[ours_name]["value"][ours_key]), float(peer[peer_name]["value"][peer_key])
        times = ["", "", ""]
        if ours_name not in timed:  # time once per call
            timed.add(ours_name)
            t_ours, t_peer = ours[ours_name]["seconds"], peer[peer_name]["seconds"]
            times = [f"{t_ours:.4f}", f"{t_peer:.4f}", f"{t_peer / t_ours:.1f}x"]
        lines.append(f"| {label} | {a:.10g} | {b:.10g} | {abs(a - b):.2e} | " + " | ".join(times) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", nargs=2, metavar=("INPUT_NPZ", "OUTPUT_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        data = dict(np.load(args.peer[0]))
        Path(args.peer[1]).write_text(json.dumps(run_peer(data)))
        return
    if not PEER_PYTHON.exists():
        sys.exit(f"peer venv missing: {PEER_PYTHON} (see this file's docstring)")
    data = make_codes()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "peer.json"
        np.savez(inputs, **data)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run([str(PEER_PYTHON), __file__, "--peer", str(inputs), str(outputs)], check=True, env=env)
        peer = json.loads(outputs.read_text())
    print(table(run_ours(data), peer))


if __name__ == "__main__":
    main()
