"""Separated Attribute Predictability (SAP).

Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations", https://openreview.net/forum?id=H1kG7GZAW, Sec. 3; computed as
disentanglement_lib's `sap_score.py`.
"""

from __future__ import annotations

import numpy as np

from mtc_core.metrics.svc1d import one_feature_svc_accuracy
from mtc_core.metrics.utils import check_split, dense_labels


def sap_score_matrix(codes_train, factors_train, codes_test, factors_test, continuous: bool = False) -> np.ndarray:
    """Predictability S[D, K] of each factor from each single latent.

    Discrete factors (default): test accuracy of LinearSVC(C=0.01, class_weight="balanced")
    trained on the one latent (replayed exactly, see `svc1d`). continuous=True: squared
    correlation on the training set (0 for a latent with variance <= 1e-12), test set unused.
    """
    codes_train, factors_train, codes_test, factors_test = check_split(codes_train, factors_train, codes_test, factors_test)
    x = codes_train.astype(np.float64)
    if continuous:
        xc = x - x.mean(0)
        yc = factors_train - factors_train.mean(0)
        n = len(x) - 1
        var_x, var_y = (xc * xc).sum(0) / n, (yc * yc).sum(0) / n
        cov = xc.T @ yc / n
        score = cov**2 / (var_x[:, None] * var_y[None, :])
        return np.where(var_x[:, None] > 1e-12, score, 0.0)
    labels, sizes = dense_labels(factors_train)
    classes = [np.unique(factors_train[:, k]) for k in range(factors_train.shape[1])]
    return one_feature_svc_accuracy(x, labels, sizes, classes, codes_test.astype(np.float64), factors_test)


def sap(codes_train, factors_train, codes_test, factors_test, continuous: bool = False) -> float:
    """`sap(codes_train[N, D], factors_train[N, K], codes_test[M, D], factors_test[M, K], continuous=False) -> float`.

    Mean over factors of the gap between the two latents that predict it best
    (`sap_score_matrix`). Needs D >= 2 and no constant training factor.
    """
    matrix = sap_score_matrix(codes_train, factors_train, codes_test, factors_test, continuous)
    if matrix.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 latent dimensions, got {matrix.shape[0]}")
    top_two = -np.sort(-matrix, axis=0)[:2]
    return float(np.mean(top_two[0] - top_two[1]))
