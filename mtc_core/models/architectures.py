"""Encoder / decoder networks.

conv64: the standard architecture of Locatello et al. 2019 (disentanglement_lib
`conv_encoder` / `deconv_decoder`): 4x conv (32, 32, 64, 64; 4x4, stride 2) ->
FC 256 -> 2 x latent; decoder the mirror image. Images are 64x64.
mlp: a small fully connected net for the toy dataset (any image size).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ARCHITECTURES = ("conv64", "mlp")


class ConvEncoder(nn.Module):
    def __init__(self, *, channels: int, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),  # 32x32
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),  # 16x16
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
            nn.Linear(256, 2 * latent_dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    def __init__(self, *, channels: int, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # 16x16
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),  # 32x32
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # 64x64 logits
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPEncoder(nn.Module):
    def __init__(self, *, image_shape: tuple[int, int, int], latent_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(image_shape), hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, *, image_shape: tuple[int, int, int], latent_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, math.prod(image_shape)),
            nn.Unflatten(1, tuple(image_shape)),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_networks(architecture: str, image_shape: tuple[int, int, int], latent_dim: int, hidden: int) -> tuple[nn.Module, nn.Module]:
    if architecture == "conv64":
        if tuple(image_shape[1:]) != (64, 64):
            raise ValueError(f"the conv64 architecture needs 64x64 images, got {tuple(image_shape)}; use architecture='mlp'")
        return ConvEncoder(channels=image_shape[0], latent_dim=latent_dim), ConvDecoder(channels=image_shape[0], latent_dim=latent_dim)
    if architecture == "mlp":
        return (
            MLPEncoder(image_shape=image_shape, latent_dim=latent_dim, hidden=hidden),
            MLPDecoder(image_shape=image_shape, latent_dim=latent_dim, hidden=hidden),
        )
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
