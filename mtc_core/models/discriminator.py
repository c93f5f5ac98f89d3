"""FactorVAE's total-correlation discriminator (Kim & Mnih 2018, App. B): 6 x 1000 LeakyReLU(0.2)."""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, *, latent_dim: int, width: int = 1000, depth: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        size = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.LeakyReLU(0.2)]
            size = width
        layers.append(nn.Linear(size, 2))  # logits: [from q(z), from prod_j q(z_j)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of prod_j q(z_j): shuffle each latent independently across the batch (Kim & Mnih, Alg. 1)."""
    batch = z.shape[0]
    return torch.stack([z[torch.randperm(batch, generator=generator, device=z.device), j] for j in range(z.shape[1])], dim=1)
