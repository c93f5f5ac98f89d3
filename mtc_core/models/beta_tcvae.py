"""beta-TCVAE: Chen et al. 2018, "Isolating Sources of Disentanglement in Variational
Autoencoders" (https://arxiv.org/abs/1802.04942).

KL decomposes (Eq. 2) into index-code MI + total correlation + dimension-wise KL.
loss = recon + KL + (alpha - 1) MI + (beta - 1) TC + (gamma - 1) dwKL, which is
Chen et al.'s alpha MI + beta TC + gamma dwKL with the analytic KL in place of
its one-sample estimate (lower variance; with alpha = gamma = 1 it is exactly
disentanglement_lib's beta-TCVAE loss, KL + (beta - 1) TC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtc_core.estimators import minibatch_log_densities
from mtc_core.models.base import VAE, VAEConfig, check_at_least

ESTIMATORS = ("mws", "mss")


@dataclass(frozen=True)
class BetaTCVAEConfig(VAEConfig):
    alpha: float = 1.0  # weight of the index-code mutual information
    beta: float = 6.0  # weight of the total correlation
    gamma: float = 1.0  # weight of the dimension-wise KL
    estimator: str = field(default="mws", metadata={"choices": ESTIMATORS})  # minibatch estimator of log q(z): mws | mss
    dataset_size: int = 737_280  # N in the minibatch weights (the dataset's size)

    def __post_init__(self):
        super().__post_init__()
        for name in ("alpha", "beta", "gamma"):
            check_at_least(name, getattr(self, name))
        check_at_least("dataset_size", self.dataset_size, 2)


def kl_decomposition(out: dict[str, torch.Tensor], dataset_size: int, estimator: str) -> dict[str, torch.Tensor]:
    """Batch means of MI, TC and dimension-wise KL (Chen et al. Eq. 2), each a scalar tensor."""
    d = minibatch_log_densities(out["z"], out["mu"], out["logvar"], dataset_size, estimator)
    return {
        "mi": (d["log_qz_given_x"] - d["log_qz"]).mean(),
        "tc": (d["log_qz"] - d["log_prod_qzj"]).mean(),
        "dwkl": (d["log_prod_qzj"] - d["log_pz"]).mean(),
    }


class BetaTCVAE(VAE):
    Config = BetaTCVAEConfig
    display_name, colour, swept_field = "beta-TCVAE", "#1f77b4", "beta"

    def regulariser(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        parts = kl_decomposition({"z": z, "mu": mu, "logvar": logvar}, c.dataset_size, c.estimator)
        reg = kl + (c.alpha - 1) * parts["mi"] + (c.beta - 1) * parts["tc"] + (c.gamma - 1) * parts["dwkl"]
        return reg, {k: v.detach() for k, v in parts.items()}
