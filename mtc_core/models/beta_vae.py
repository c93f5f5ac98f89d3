"""beta-VAE: Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework" (https://openreview.net/forum?id=Sy2fzU9gl).

loss = recon + beta KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtc_core.models.base import VAE, VAEConfig, check_at_least


@dataclass(frozen=True)
class BetaVAEConfig(VAEConfig):
    beta: float = 4.0  # weight of the KL term

    def __post_init__(self):
        super().__post_init__()
        check_at_least("beta", self.beta)


class BetaVAE(VAE):
    Config = BetaVAEConfig
    display_name, colour, swept_field = "beta-VAE", "#bcbd22", "beta"

    def regulariser(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.config.beta * kl, {}
