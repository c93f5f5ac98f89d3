"""Separated Attribute Predictability (SAP).

Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations", https://openreview.net/forum?id=H1kG7GZAW, Sec. 3; computed as
disentanglement_lib's `sap_score.py`.
"""

from __future__ import annotations

import numpy as np

from mtc_core.metrics.sap_liblinear import one_feature_svc_accuracy
from mtc_core.metrics.utils import check_split, dense_labels, rescale_columns


def sap_score_matrix(codes_train, factors_train, codes_test, factors_test, continuous: bool = False) -> np.ndarray:
    """Predictability S[D, K] of each factor from each single latent.

    Discrete factors (default): test accuracy of LinearSVC(C=0.01, class_weight="balanced")
    trained on the one latent (replayed exactly, see `svc1d`). continuous=True: squared
    correlation on the training set (0 for a latent with variance <= 1e-12), test set unused.
    """
    codes_train, factors_train, codes_test, factors_test = check_split(codes_train, factors_train, codes_test, factors_test)
    x = codes_train.astype(np.float64)
    if continuous:
        with np.errstate(over="ignore", invalid="ignore"):  # the peer's threshold is on the raw variance; overflow is > 1e-12
            raw_var = np.var(x, axis=0, ddof=1)
        (x,) = rescale_columns(x)  # the squared correlation ignores scale
        xc = x - x.mean(0)
        yc = factors_train - factors_train.mean(0)
        n = len(x) - 1
        var_x, var_y = (xc * xc).sum(0) / n, (yc * yc).sum(0) / n
        cov = xc.T @ yc / n
        with np.errstate(divide="ignore", invalid="ignore"):
            score = cov**2 / (var_x[:, None] * var_y[None, :])
        return np.where((raw_var[:, None] > 1e-12) & (var_x[:, None] > 0), score, 0.0)
    # The SVM is not scale-free, but far beyond unit scale its predictions no longer change with scale (the weight's
    # regulariser vanishes against the data term), while TRON's products overflow float64 past ~1e70 and it
    # never stops (the old hang at 1e200): such columns are brought down to ~2^100, which gives the same answer.
    x, x_test = rescale_columns(x, codes_test.astype(np.float64), low=0.0, target=100)
    labels, sizes = dense_labels(factors_train)
    classes = [np.unique(factors_train[:, k]) for k in range(factors_train.shape[1])]
    return one_feature_svc_accuracy(x, labels, sizes, classes, x_test, factors_test)


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
