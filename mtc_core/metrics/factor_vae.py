"""The FactorVAE disentanglement score.

Kim & Mnih 2018, "Disentangling by Factorising", https://arxiv.org/abs/1802.05983, Sec. 4:
fix one factor over a batch, normalise each latent by its global standard deviation, and
let the latent with the least variance vote for the factor; the score is the accuracy of
the majority-vote classifier. Sampling follows disentanglement_lib's `factor_vae.py` draw
for draw (factor index, then the batch), so one seed gives the peer's numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mtc_core.metrics.interventions import check_sampling, encode_factors

# Groups sampled per encode round (bounded memory; the draws are the same in any chunking).
_GROUPS_PER_ROUND = 512


def _votes(encode, dataset, rng, batch_size: int, num_points: int, global_variances: np.ndarray, active: np.ndarray,
           compat: bool) -> np.ndarray:
    """votes[K, D]: how often fixing factor k made latent j the least-varying active latent."""
    active_index = np.flatnonzero(active)
    votes = np.zeros((dataset.num_factors, len(global_variances)), dtype=np.int64)
    for start in range(0, num_points, _GROUPS_PER_ROUND):
        count = min(_GROUPS_PER_ROUND, num_points - start)
        fixed = np.empty(count, dtype=np.int64)
        factors = []
        for g in range(count):
            fixed[g] = rng.integers(dataset.num_factors)
            batch = dataset.sample_factors(batch_size, rng)
            batch[:, fixed[g]] = batch[0, fixed[g]]
            factors.append(batch)
        codes = encode_factors(encode, dataset, np.stack(factors))
        local_variances = np.var(codes, axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # compat keeps the peers' 0 / 0 for a dead latent
            argmin = np.argmin(local_variances[:, active] / global_variances[active], axis=1)
        np.add.at(votes, (fixed, argmin if compat else active_index[argmin]), 1)
    return votes


def factor_vae_score(encode: Callable[[np.ndarray], np.ndarray], dataset, batch_size: int = 64, num_train: int = 10000,
                     num_eval: int = 5000, num_variance_estimate: int = 10000, prune_threshold: float = 0.05,
                     compat: bool = False, seed: int = 0) -> dict:
    """`factor_vae_score(encode, dataset, ...) -> {train_accuracy, eval_accuracy, num_active_dims}`.

    Latents whose global standard deviation is below `prune_threshold` are pruned (0.05 as
    disentanglement_lib's configs; disent uses 0.0).

    The peers' bug (disentanglement_lib 1.5 `factor_vae.py`, copied by disent): the argmin is
    taken over the *active* latents only, but the vote is recorded at that position as if it
    were a latent index, so after pruning votes land on the wrong latents (the first
    num_active columns); and num_active_dims is `len(active_dims)` of a boolean mask, i.e. D.
    Relabelling columns changes no majority vote, so the accuracies are unaffected as long
    as no active latent has zero variance; only num_active_dims (and which latent is credited)
    is wrong. But with threshold 0.0 a latent of zero variance stays active, 0 / 0 = NaN wins
    every argmin, and the score collapses to the frequency of the most common factor.

    compat=False (the fix): votes go to the latent the argmin points at, num_active_dims
    counts the active latents, and zero-variance latents are always pruned.
    compat=True reproduces the peers' values (and their NaN votes) for cross-checks.
    """
    check_sampling(dataset, batch_size, num_train=num_train, num_eval=num_eval, num_variance_estimate=num_variance_estimate)
    rng = np.random.default_rng(seed)
    factors = dataset.sample_factors(num_variance_estimate, rng)
    codes = encode_factors(encode, dataset, factors[:, None])[:, 0]
    global_variances = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not compat:
        active &= global_variances > 0
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = _votes(encode, dataset, rng, batch_size, num_train, global_variances, active, compat)
    classifier = np.argmax(train_votes, axis=0)  # majority factor of each latent
    columns = np.arange(train_votes.shape[1])
    eval_votes = _votes(encode, dataset, rng, batch_size, num_eval, global_variances, active, compat)
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": len(active) if compat else int(active.sum()),
    }
