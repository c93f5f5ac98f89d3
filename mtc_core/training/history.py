"""What history.jsonl records at each evaluation step of a training, and how a record's TCs are read back.

The TCs of the mean and of the sampled codes use one estimator on the same points (the Gaussian TC of np.cov over the
held-out batch, as `evaluate`'s), so the curves compare like with like (docs/design.md, "Reading a TC estimate").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mtc_core.estimators import drop_constant_dims, gaussian_tc, gaussian_tc_bias
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
        **_batch_tcs(mu_np, z_np),
        "tc_n": x.shape[0],
        "tc_estimator": TC_ESTIMATOR,
        "active_dims": int(is_active(mu.var(0)).sum().item()),
    }


def _batch_tcs(mu: np.ndarray, z: np.ndarray) -> dict[str, Any]:
    """The record's two Gaussian TCs; one that is not finite (a covariance singular to float precision) is stored as
    null, with "tc_note" saying why, rather than as a value JSON cannot hold."""
    out: dict[str, Any] = {}
    infinite = []
    for code, codes in (("mean", mu), ("sampled", z)):
        value = batch_gaussian_tc(codes)
        if value is not None and not math.isfinite(value):
            infinite.append(code)
            value = None
        out[f"tc_gaussian_{code}"] = value
    if infinite:
        out["tc_note"] = (f"Gaussian TC of the {' and '.join(infinite)} codes not finite (their covariance over {mu.shape[0]} points "
                          f"is singular), stored as null")
    return out


TC_ESTIMATOR = "gaussian, bias-corrected, clipped at 0"  # recorded with every record's TCs (module docstring of tc_report)


def batch_gaussian_tc(codes: np.ndarray) -> float | None:
    """Gaussian TC of codes [B, D] over their non-constant latents, less its small-sample bias and raised to 0 where
    noise takes it below (as `evaluate`'s TC report, at the batch's size); None when fewer than two vary, or when the
    codes are not finite (a run diverging at an eval step: the next step's loss check stops it as "diverged")."""
    if not np.isfinite(codes).all():
        return None
    kept, _ = drop_constant_dims(codes)
    if kept.shape[1] < 2 or kept.shape[0] <= kept.shape[1]:
        return None
    plugin = gaussian_tc(np.cov(kept, rowvar=False))
    if not math.isfinite(plugin):
        return plugin
    corrected = plugin - gaussian_tc_bias(kept.shape[0], kept.shape[1])
    return corrected if corrected > 0 else 0.0


def history_tc(record: dict, code: str) -> float | None:
    """The Gaussian TC of the `code` ("mean" | "sampled") codes of one history record, None when not logged.

    Records with "tc_estimator" hold the bias-corrected Gaussian TC (`batch_gaussian_tc`). Records without it (the
    shipped zoo's histories) hold the plug-in Gaussian TC, about D(D - 1) / 4B above it at batch size B (0.044 nats
    for 10 latents at B = 512). Older histories still kept the Gaussian TC of the mean codes as "tc_mean" (a ridge
    of 1e-8 apart); their "tc_sampled" was the minibatch MSS, biased at batch 512 against the dataset size
    (negative in most records), so it is not read; "tc_mean" / "tc_sampled" beside a "tc_estimator" are read as
    that estimator's values.
    """
    value = record.get(f"tc_gaussian_{code}")
    if value is None and ("tc_estimator" in record or code == "mean"):  # "tc_sampled" counts only beside its estimator
        value = record.get(f"tc_{code}")
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def history_tc_estimator(history: list[dict]) -> str:
    """In words, the estimator behind a history's TCs (`history_tc`), for a chart's legend or caption: the
    bias-corrected Gaussian TC of the held-out batch, or, in a history without "tc_estimator" (the shipped zoo's),
    the plug-in Gaussian TC."""
    record = next((r for r in reversed(history) if history_tc(r, "mean") is not None or history_tc(r, "sampled") is not None), None)
    if record is None:
        return "no TC recorded"
    size = f", held-out batch of {record['tc_n']}" if isinstance(record.get("tc_n"), int) else ""
    if "tc_estimator" in record:
        return f"Gaussian, bias-corrected{size}"
    return f"Gaussian plug-in, not bias-corrected{size}: an older history"

