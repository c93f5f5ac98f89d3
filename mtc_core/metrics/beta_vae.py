"""The BetaVAE disentanglement score.

Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", https://openreview.net/forum?id=Sy2fzU9gl, Sec. 3: a linear classifier predicts
which factor two batches share from the mean absolute difference of their codes. As
disentanglement_lib's `beta_vae.py` (sklearn variant), draw for draw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression

from mtc_core.metrics.interventions import check_sampling, encode_factors

# Pairs sampled per encode round (bounded memory; the draws are the same in any chunking).
_PAIRS_PER_ROUND = 256


def _features(encode, dataset, rng, batch_size: int, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(features [num_points, D], labels [num_points]): mean |z1 - z2| of two batches sharing factor `label`."""
    features, labels = [], []
    for start in range(0, num_points, _PAIRS_PER_ROUND):
        count = min(_PAIRS_PER_ROUND, num_points - start)
        shared = np.empty(count, dtype=np.int64)
        factors = []
        for g in range(count):
            shared[g] = rng.integers(dataset.num_factors)
            first = dataset.sample_factors(batch_size, rng)
            second = dataset.sample_factors(batch_size, rng)
            second[:, shared[g]] = first[:, shared[g]]
            factors += [first, second]
        codes = encode_factors(encode, dataset, np.stack(factors)).reshape(count, 2, batch_size, -1)
        features.append(np.mean(np.abs(codes[:, 0] - codes[:, 1]), axis=1))
        labels.append(shared)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(encode: Callable[[np.ndarray], np.ndarray], dataset, batch_size: int = 64, num_train: int = 10000,
                   num_eval: int = 5000, seed: int = 0) -> dict:
    """`beta_vae_score(encode, dataset, ...) -> {train_accuracy, eval_accuracy}` of sklearn's LogisticRegression."""
    check_sampling(dataset, batch_size, num_train=num_train, num_eval=num_eval)
    rng = np.random.default_rng(seed)
    train_x, train_y = _features(encode, dataset, rng, batch_size, num_train)
    if len(np.unique(train_y)) < 2:
        raise ValueError("all training points share the same factor: raise num_train")
    model = LogisticRegression(random_state=seed).fit(train_x, train_y)
    eval_x, eval_y = _features(encode, dataset, rng, batch_size, num_eval)
    return {
        "train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
        "eval_accuracy": float(model.score(eval_x, eval_y)),
    }
