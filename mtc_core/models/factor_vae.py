"""FactorVAE: Kim & Mnih 2018, "Disentangling by Factorising" (https://arxiv.org/abs/1802.05983).

loss = recon + KL + gamma TC, with TC estimated by the density-ratio trick:
TC ~ E[logit_real(z) - logit_fake(z)] from a discriminator that tells q(z) from
prod_j q(z_j) (permuted-dims samples). The discriminator has its own Adam
(lr 1e-4, betas (0.5, 0.9)) and is trained after each VAE step on the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtc_core.models.base import VAE, VAEConfig, check_at_least
from mtc_core.models.discriminator import Discriminator, permute_dims


@dataclass(frozen=True)
class FactorVAEConfig(VAEConfig):
    gamma: float = 35.0  # weight of the discriminator's TC estimate (dSprites: 10..100)
    disc_lr: float = 1e-4  # discriminator learning rate
    disc_width: int = 1000  # discriminator hidden width
    disc_depth: int = 6  # discriminator hidden layers

    def __post_init__(self):
        super().__post_init__()
        check_at_least("gamma", self.gamma)
        check_at_least("disc_lr", self.disc_lr, 1e-12)
        check_at_least("disc_width", self.disc_width, 1)
        check_at_least("disc_depth", self.disc_depth, 1)


class FactorVAE(VAE):
    Config = FactorVAEConfig
    display_name, colour, swept_field = "FactorVAE", "#ff7f0e", "gamma"
    auxiliary_prefixes = ("discriminator.",)

    def __init__(self, config: FactorVAEConfig):
        super().__init__(config)
        self.discriminator = Discriminator(latent_dim=config.latent_dim, width=config.disc_width, depth=config.disc_depth)
        self._disc_optimizer: torch.optim.Optimizer | None = None

    @property
    def disc_optimizer(self) -> torch.optim.Optimizer:
        """The discriminator's Adam, made on first use: a model loaded to encode never needs one, and the first optimizer
        a process builds imports torch's compiler (~1.4 s, a model switch in the app)."""
        if self._disc_optimizer is None:
            self._disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.config.disc_lr, betas=(0.5, 0.9))
        return self._disc_optimizer

    def regulariser(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        return kl + self.config.gamma * tc, {"tc_disc": tc.detach()}

    def vae_parameters(self) -> list[torch.nn.Parameter]:
        disc = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in disc]

    def auxiliary_step(self, out: dict[str, torch.Tensor], *, lazy: bool = False) -> dict[str, float]:
        z = out["z"].detach()
        logits_real, logits_fake = self.discriminator(z), self.discriminator(permute_dims(z, self.noise))
        real = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        loss = 0.5 * (F.cross_entropy(logits_real, real) + F.cross_entropy(logits_fake, 1 - real))
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_optimizer.step()
        return {"disc_loss": loss.detach() if lazy else loss.item()}
