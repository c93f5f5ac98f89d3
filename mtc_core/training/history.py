"""What history.jsonl records at each evaluation step of a training, and how a record's TCs are read back.

The TCs of the mean and of the sampled codes use one estimator on the same points (the Gaussian TC of np.cov over the
held-out batch, as `evaluate`'s), so the curves compare like with like (docs/design.md, "Reading a TC estimate").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtc_core.estimators import drop_constant_dims, gaussian_tc
from mtc_core.metrics.activity import is_active
from mtc_core.models import VAE
from mtc_core.models.base import gaussian_kl


@torch.no_grad()
def eval_record(model: VAE, x: torch.Tensor) -> dict[str, Any]:
    """Loss terms and the two TCs on a held-out batch: what history.jsonl records.

    The TCs of the mean and of the sampled codes use one estimator on the same points (the Gaussian TC of
    np.cov over the batch, as `evaluate`'s; docs/design.md, "Reading a TC estimate"), so the curves compare like with like. The minibatch
    MSS/MWS estimates are training signals, biased at a batch far smaller than the dataset, and not logged.
    """
    was_training = model.training
    model.eval()
    mu, logvar = model.encode(x)
    z = model.reparameterise(mu, logvar)
    recon = model.reconstruction(x, model.decode(z)).item()
    kl_per_dim = gaussian_kl(mu, logvar).mean(0)
    model.train(was_training)
    mu_np, z_np = mu.detach().double().cpu().numpy(), z.detach().double().cpu().numpy()
    return {
        "recon": recon,
        "kl": kl_per_dim.sum().item(),
        "elbo": -(recon + kl_per_dim.sum().item()),
        "kl_per_dim": kl_per_dim.tolist(),
        **{f"tc_gaussian_{code}": batch_gaussian_tc(codes) for code, codes in (("mean", mu_np), ("sampled", z_np))},
        "tc_n": x.shape[0],
        "active_dims": int(is_active(mu.var(0)).sum().item()),
    }


def batch_gaussian_tc(codes: np.ndarray) -> float | None:
    """Gaussian TC of codes [B, D] over their non-constant latents; None when fewer than two vary, or when the codes
    are not finite (a run diverging at an eval step: the next step's loss check stops it as "diverged")."""
    if not np.isfinite(codes).all():
        return None
    kept, _ = drop_constant_dims(codes)
    if kept.shape[1] < 2:
        return None
    return gaussian_tc(np.cov(kept, rowvar=False))


def history_tc(record: dict, code: str) -> float | None:
    """The Gaussian TC of the `code` ("mean" | "sampled") codes of one history record, None when not logged.

    Histories written before the TCs were logged alike kept the same Gaussian TC of the mean codes as "tc_mean"
    (a ridge of 1e-8 apart); their "tc_sampled" was the minibatch MSS, biased at batch 512 against the dataset
    size (negative on most Shapes2D runs), so it is not read.
    """
    value = record.get(f"tc_gaussian_{code}", record.get("tc_mean") if code == "mean" else None)
    return value if isinstance(value, int | float) else None
