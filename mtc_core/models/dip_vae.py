"""DIP-VAE: Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from
Unlabeled Observations" (https://arxiv.org/abs/1711.00848).

loss = recon + KL + lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2,
C = Cov(mu) (type i) or Cov(mu) + E[diag exp(logvar)] (type ii), on the batch.
Defaults follow disentanglement_lib: lambda_d = 10 lambda_od (i), lambda_od (ii).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtc_core.models.base import VAE, VAEConfig, check_at_least

DIP_TYPES = ("i", "ii")


@dataclass(frozen=True)
class DIPVAEConfig(VAEConfig):
    dip_type: str = field(default="i", metadata={"choices": DIP_TYPES})  # i: Cov(mu); ii: Cov(mu) + E[diag sigma^2]
    lambda_od: float = 10.0  # weight of the off-diagonal penalty
    lambda_d: float | None = None  # weight of the diagonal penalty; None: 10 lambda_od (i) or lambda_od (ii)

    def __post_init__(self):
        super().__post_init__()
        check_at_least("lambda_od", self.lambda_od)
        if self.lambda_d is None:
            object.__setattr__(self, "lambda_d", self.lambda_od * (10.0 if self.dip_type == "i" else 1.0))
        check_at_least("lambda_d", self.lambda_d)


def dip_penalty(mu: torch.Tensor, logvar: torch.Tensor, dip_type: str, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """The DIP regulariser of a batch; mu, logvar [B, D]. Zero when the chosen covariance is I."""
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]  # disentanglement_lib's biased batch covariance
    if dip_type == "ii":
        cov = cov + torch.diag(torch.exp(logvar).mean(0))
    diag = torch.diagonal(cov)
    off_diag = cov - torch.diag(diag)
    return lambda_od * (off_diag**2).sum() + lambda_d * ((diag - 1) ** 2).sum()


class DIPVAE(VAE):
    Config = DIPVAEConfig
    display_name, colour, swept_field = "DIP-VAE", "#9467bd", "lambda_od"

    def regulariser(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        dip = dip_penalty(mu, logvar, c.dip_type, c.lambda_od, c.lambda_d)
        return kl + dip, {"dip": dip.detach()}
