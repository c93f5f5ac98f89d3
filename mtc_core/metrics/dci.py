"""Disentanglement, Completeness and Informativeness (DCI).

Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of Disentangled
Representations", https://openreview.net/forum?id=By-7dz-AZ; computed as disentanglement_lib's
`dci.py`: one gradient-boosted classifier per factor, its feature importances form R[D, K].
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from mtc_core.metrics.utils import check_split, fit_rows, rescale_columns

MODES = ("gbt", "fast")
_RAND_R_MAX = 2**31 - 1  # sklearn's tree splitters seed themselves with one randint(0, RAND_R_MAX) per tree
_GBT_ROUNDS = 100  # GradientBoostingClassifier's default n_estimators


def _gbt_states(seed: int, factors_train: np.ndarray) -> list[np.random.RandomState]:
    """Per factor, the RandomState a single shared RandomState(seed) would be in when the
    sequential loop reaches that factor: every GBT draws one seed per tree (one tree per round
    for a binary factor, one per class otherwise). So fits can run in parallel and still equal
    the peer's sequential fits after np.random.seed(seed)."""
    states, used = [], 0
    for k in range(factors_train.shape[1]):
        state = np.random.RandomState(seed)
        if used:
            state.randint(0, _RAND_R_MAX, size=used)
        states.append(state)
        num_classes = len(np.unique(factors_train[:, k]))
        used += _GBT_ROUNDS * (1 if num_classes == 2 else num_classes)
    return states


def _histogram_gain_importances(model: HistGradientBoostingClassifier, num_features: int) -> np.ndarray:
    """Total split gain per feature over all trees, normalised to sum 1 (sklearn keeps no public importances here)."""
    gain = np.zeros(num_features)
    try:
        trees = [tree for stage in model._predictors for tree in stage]
        for tree in trees:
            split = ~tree.nodes["is_leaf"].astype(bool)
            np.add.at(gain, tree.nodes["feature_idx"][split], tree.nodes["gain"][split])
    except (AttributeError, KeyError, ValueError) as err:  # private layout of sklearn's histogram trees
        raise RuntimeError("this scikit-learn version changed HistGradientBoosting's tree layout; use mode='gbt'") from err
    total = gain.sum()
    return gain / total if total > 0 else gain


def _fit_factor(x_train, y_train, x_test, y_test, mode: str, seed) -> tuple[np.ndarray, float, float]:
    """Importances [D], train and test accuracy of the classifier of one factor."""
    if mode == "gbt":
        model = GradientBoostingClassifier(n_estimators=_GBT_ROUNDS, random_state=seed).fit(x_train, y_train)
        importance = np.abs(model.feature_importances_)
    else:
        # depth-3 trees on 255-bin histograms; 30 rounds at learning rate 0.3 came closer to the
        # GBT's importances than its own 100 rounds at 0.1, in a third of the time
        model = HistGradientBoostingClassifier(max_iter=30, max_depth=3, max_leaf_nodes=8, learning_rate=0.3,
                                               early_stopping=False, random_state=seed).fit(x_train, y_train)
        importance = _histogram_gain_importances(model, x_train.shape[1])
    return importance, float(np.mean(model.predict(x_train) == y_train)), float(np.mean(model.predict(x_test) == y_test))


def importance_matrix(codes_train, factors_train, codes_test, factors_test, mode: str = "gbt", seed: int = 0,
                      n_jobs: int = 1, fit_points: int | None = None) -> tuple[np.ndarray, float, float]:
    """(R[D, K], mean train accuracy, mean test accuracy) of one classifier per factor; see `dci`."""
    if mode not in MODES:
        raise ValueError(f"unknown DCI mode {mode!r}; expected one of {MODES}")
    codes_train, factors_train, codes_test, factors_test = check_split(codes_train, factors_train, codes_test, factors_test)
    rows = fit_rows(factors_train, fit_points, seed)
    if rows is not None:
        codes_train, factors_train = codes_train[rows], factors_train[rows]
    # trees see only the order of each latent's values, but sklearn copies them to float32, where codes beyond 3e38 are inf
    codes_train, codes_test = rescale_columns(codes_train, codes_test)
    seeds = _gbt_states(seed, factors_train) if mode == "gbt" else [seed] * factors_train.shape[1]
    # Parallel over factors in threads (tree building releases the GIL). The histogram GBT's own
    # OpenMP threads stay at 1: on a busy machine their spin-waits made it 50x slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        fits = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(_fit_factor)(codes_train, factors_train[:, k], codes_test, factors_test[:, k], mode, seeds[k])
            for k in range(factors_train.shape[1])
        )
    importance = np.stack([fit[0] for fit in fits], axis=1)
    return importance, float(np.mean([fit[1] for fit in fits])), float(np.mean([fit[2] for fit in fits]))


def disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over latents of 1 - H_K(R[j, :] / sum_k R[j, k])."""
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    weight = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_code * weight.sum(axis=1) / weight.sum()))


def completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - H_D(R[:, k] / sum_j R[j, k])."""
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=importance.shape[0])
    weight = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_factor * weight.sum(axis=0) / weight.sum()))


def dci(codes_train, factors_train, codes_test, factors_test, mode: str = "gbt", seed: int = 0, n_jobs: int = 1,
        fit_points: int | None = None) -> dict:
    """`dci(codes_train[N, D], factors_train[N, K], codes_test[M, D], factors_test[M, K]) -> dict`.

    Returns disentanglement, completeness, informativeness_train, informativeness_test
    (mean classification accuracies), as disentanglement_lib.

    mode="gbt": sklearn GradientBoostingClassifier() per factor, as disentanglement_lib.
      Its random_state matters: features are visited in random order and ties are common
      (a split cutting off the same extreme point on two latents). The peer leaves it unset,
      i.e. draws from numpy's global RandomState; this mode equals the peer run right after
      np.random.seed(seed), also with n_jobs > 1 (factors fitted in parallel threads, each
      from the RandomState the sequential loop would have reached). The GBT fits are >99% of
      the cost, so on one core this mode is as slow as the peer.
    mode="fast": HistGradientBoostingClassifier (30 rounds, depth 3, learning rate 0.3) on
      255-bin histograms; importances = total split gain per latent. 50-70x faster than "gbt".
      Its values are close to, not equal to, "gbt": on bench/metrics_vs_peer.py's codes
      disentanglement and completeness come out ~0.01 lower (gain importances are a little less
      concentrated than impurity importances), train informativeness ~0.02 lower (fewer rounds),
      test informativeness within 0.003. Compare models within one mode.
    fit_points: with more training points than this, the classifiers are fitted on a seeded subsample of that many
      (`utils.fit_rows`; informativeness_train is their accuracy there) and the result says "fit_points"; the cost of
      a fit grows with its points, the estimates' noise shrinks only as 1 / sqrt(points). None (default): all points.
    """
    codes_train, factors_train, codes_test, factors_test = check_split(codes_train, factors_train, codes_test, factors_test)
    if codes_train.shape[1] < 2 or factors_train.shape[1] < 2:
        raise ValueError(f"DCI needs at least 2 latents and 2 factors (entropy bases), got D = {codes_train.shape[1]}, "
                         f"K = {factors_train.shape[1]}")
    importance, train_accuracy, test_accuracy = importance_matrix(codes_train, factors_train, codes_test, factors_test,
                                                                  mode, seed, n_jobs, fit_points)
    out = {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness_train": train_accuracy,
        "informativeness_test": test_accuracy,
    }
    if fit_rows(factors_train, fit_points, seed) is not None:
        out["fit_points"] = int(fit_points)
    return out
