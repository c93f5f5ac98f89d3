"""Modularity and explicitness.

Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings With the F-Statistic Loss",
https://arxiv.org/abs/1802.05312, Sec. 3; computed as disentanglement_lib's
`modularity_explicitness.py`.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mtc_core.metrics.utils import check_split, discrete_mutual_info, discretize, fit_rows, rescale_columns


def modularity(mutual_information: np.ndarray) -> float:
    """Mean over latents of 1 - (sum_k m_jk^2 - max_k m_jk^2) / (max_k m_jk^2 (K - 1)), MI [D, K]; 0 for a latent with no MI."""
    squared = np.square(mutual_information)
    largest = squared.max(axis=1)
    informative = largest > 0
    score = np.zeros(len(squared))
    score[informative] = 1.0 - (squared.sum(axis=1) - largest)[informative] / (largest[informative] * (squared.shape[1] - 1.0))
    return float(np.mean(score))


def _explicitness(x_train, y_train, x_test, y_test, factor: int) -> tuple[float, float]:
    """Macro ROC-AUC (one column per class) of a logistic regression on all latents, train and test."""
    model = LogisticRegression().fit(x_train, y_train)
    missing = np.setdiff1d(model.classes_, y_test)
    if missing.size or not np.isin(y_test, model.classes_).all():
        raise ValueError(f"factors_test column {factor} must contain exactly the classes of factors_train "
                         f"{model.classes_.tolist()}: ROC-AUC per class is undefined otherwise")
    scores = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        indicator = (y[:, None] == model.classes_[None, :]).astype(int)
        scores.append(float(roc_auc_score(indicator, model.predict_proba(x))))
    return scores[0], scores[1]


def modularity_explicitness(codes_train, factors_train, codes_test, factors_test, num_bins: int = 20,
                            fit_points: int | None = None, seed: int = 0) -> dict:
    """`modularity_explicitness(codes_train[N, D], factors_train[N, K], codes_test[M, D], factors_test[M, K]) -> dict`.

    modularity_score: from the MI of histogram-discretised training codes and factors.
    explicitness_score_train / _test: mean over factors of the ROC-AUC of a logistic regression
    on the standardised codes (train mean and std). Keys as disentanglement_lib. A constant
    latent is left at 0 after centring (the peer divides by its zero std and fails).
    fit_points: with more training points than this, the regressions are fitted on a seeded subsample of that many
    (`utils.fit_rows`, `seed`; explicitness_score_train is scored there) and the result says "explicitness_fit_points";
    modularity always uses every point. None (default): all points.
    """
    codes_train, factors_train, codes_test, factors_test = check_split(codes_train, factors_train, codes_test, factors_test)
    if factors_train.shape[1] < 2:
        raise ValueError("modularity needs at least 2 factors (it divides by K - 1)")
    mutual_information = discrete_mutual_info(discretize(codes_train, num_bins), factors_train)
    codes_train, codes_test = rescale_columns(codes_train, codes_test)  # standardised below; keeps the std from overflowing
    rows = fit_rows(factors_train, fit_points, seed)
    if rows is not None:  # standardised with the fitted points' mean and std
        codes_train, factors_train = codes_train[rows], factors_train[rows]
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    explicit = np.array([_explicitness(x_train, factors_train[:, k], x_test, factors_test[:, k], k)
                         for k in range(factors_train.shape[1])])
    out = {
        "modularity_score": modularity(mutual_information),
        "explicitness_score_train": float(explicit[:, 0].mean()),
        "explicitness_score_test": float(explicit[:, 1].mean()),
    }
    if rows is not None:
        out["explicitness_fit_points"] = int(fit_points)
    return out
