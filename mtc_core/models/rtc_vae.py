"""RTC-VAE (rectified TC), OUR RECONSTRUCTION of the remedy proposed by Cheng et al.,
"Revisiting Factorizing Aggregated Posterior in Learning Disentangled
Representations" (https://arxiv.org/abs/2009.05739). The paper's exact loss is not
available; this is the loss of docs/design.md, "RTC-VAE":

loss = recon + KL + (beta - 1) TC_hat(z) + lambda_t TC_mean(mu_batch)

TC_hat: the beta-TCVAE minibatch estimator on sampled codes; TC_mean: a
differentiable, scale-invariant estimate of the TC of the batch of mean codes
(`gaussian` or `kde`, mtc_core.estimators), its weight ramped up linearly over
`warmup_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtc_core.estimators import mean_tc_gaussian, mean_tc_kde
from mtc_core.models.base import VAE, VAEConfig, check_at_least
from mtc_core.models.beta_tcvae import ESTIMATORS, kl_decomposition

MEAN_TC_ESTIMATORS = ("gaussian", "kde")


@dataclass(frozen=True)
class RTCVAEConfig(VAEConfig):
    beta: float = 6.0  # weight of the sampled-code TC (as beta-TCVAE)
    lambda_t: float = 2.0  # weight of the mean-code TC penalty
    mean_tc: str = field(default="gaussian", metadata={"choices": MEAN_TC_ESTIMATORS})  # mean-TC estimator: gaussian | kde
    ridge: float = 1e-4  # ridge on the batch correlation (gaussian estimator)
    warmup_steps: int = 0  # linear ramp of lambda_t from 0
    estimator: str = field(default="mws", metadata={"choices": ESTIMATORS})  # minibatch estimator for the sampled TC: mws | mss
    dataset_size: int = 737_280  # N in the minibatch weights

    def __post_init__(self):
        super().__post_init__()
        check_at_least("beta", self.beta)
        check_at_least("lambda_t", self.lambda_t)
        check_at_least("ridge", self.ridge, 1e-12)
        check_at_least("warmup_steps", self.warmup_steps)
        check_at_least("dataset_size", self.dataset_size, 2)


def mean_tc_penalty(mu: torch.Tensor, method: str, ridge: float = 1e-4, generator: torch.Generator | None = None) -> torch.Tensor:
    """The TC_mean term of RTC-VAE on a batch of means mu [B, D] (nats); `generator` drives the KDE's permutation."""
    if method == "gaussian":
        return mean_tc_gaussian(mu, ridge=ridge)
    if method == "kde":
        return mean_tc_kde(mu, generator=generator)
    raise ValueError(f"unknown mean-TC estimator {method!r}; expected one of {MEAN_TC_ESTIMATORS}")


class RTCVAE(VAE):
    Config = RTCVAEConfig
    display_name, colour, swept_field = "RTC-VAE", "#2ca02c", "lambda_t"

    def regulariser(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        tc = kl_decomposition({"z": z, "mu": mu, "logvar": logvar}, c.dataset_size, c.estimator)["tc"]
        tc_mean = mean_tc_penalty(mu, c.mean_tc, c.ridge, self.noise)
        ramp = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        reg = kl + (c.beta - 1) * tc + ramp * c.lambda_t * tc_mean
        return reg, {"tc": tc.detach(), "tc_mean": tc_mean.detach()}
