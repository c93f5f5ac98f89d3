"""Latent traversals: decode a base code with one latent swept over a range at a time."""

from __future__ import annotations

import numpy as np
import torch

from mtc_core.models import VAE
from mtc_core.models.base import gaussian_kl

RANGE_MODES = ("prior", "quantile")
MAX_STEPS = 100  # values per latent
MAX_EXTENT = 100.0  # prior standard deviations; far beyond where a decoder has seen codes
MAX_SCALE = 16  # pixels per image pixel in the PNG / GIF
MAX_GRID_PIXELS = 2**26  # pixels of one traversal grid as drawn (64 M: 256 MB as RGBA), which also bounds the decoded images


def check_grid_size(num_latents: int, steps: int, image_shape: tuple[int, ...], scale: int = 1) -> None:
    """ValueError before decoding when a grid of `num_latents` rows x `steps` images, drawn `scale` times larger, would
    pass MAX_GRID_PIXELS (`traverse --steps 100000` once reached 10.7 GB)."""
    height, width = image_shape[-2:]
    pixels = num_latents * steps * height * width * scale**2
    if pixels > MAX_GRID_PIXELS:
        raise ValueError(f"a traversal of {num_latents} latents x {steps} steps of {height}x{width} images at scale {scale} has "
                         f"{pixels:,} pixels, more than {MAX_GRID_PIXELS:,}: lower the steps or the scale")


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_numpy(model: VAE, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """images [N, C, H, W] -> (mu, logvar) numpy [N, D], in batches, on the model's device."""
    device = model_device(model)
    mus, logvars = [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = model.encode(torch.as_tensor(images[i : i + batch_size], dtype=torch.float32, device=device))
        mus.append(mu.cpu().numpy())
        logvars.append(logvar.cpu().numpy())
    return np.concatenate(mus).astype(np.float64), np.concatenate(logvars).astype(np.float64)


def latent_activity(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean KL(q(z_j|x) || N(0, 1)) per latent, [D], from codes [N, D]: the activity order of the traversal grid."""
    return gaussian_kl(torch.as_tensor(mu), torch.as_tensor(logvar)).mean(0).numpy()


def traversal_values(mu: np.ndarray, steps: int, mode: str = "prior", extent: float = 2.0, quantile: float = 0.05) -> np.ndarray:
    """Values to sweep per latent, [D, steps].

    prior: linspace(-extent, extent) for every latent (prior standard deviations);
    quantile: from the `quantile` to the `1 - quantile` quantile of each latent's mean codes mu [N, D].
    """
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or not 2 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in 2..{MAX_STEPS}, got {steps!r}")
    if mode == "prior":
        if not 0 < extent <= MAX_EXTENT:  # False for NaN
            raise ValueError(f"extent must be in (0, {MAX_EXTENT:g}] prior standard deviations, got {extent}")
        return np.tile(np.linspace(-extent, extent, steps), (mu.shape[1], 1))
    if mode == "quantile":
        if not 0 <= quantile < 0.5:
            raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
        low, high = np.quantile(mu, quantile, axis=0), np.quantile(mu, 1 - quantile, axis=0)
        return np.linspace(low, high, steps).T
    raise ValueError(f"range mode must be one of {RANGE_MODES}, got {mode!r}")


@torch.no_grad()
def traverse(model: VAE, base_code: np.ndarray, latents: list[int] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Decoded images [L, S, C, H, W] in [0, 1]: row l sweeps latent latents[l] over values[latents[l]]
    with the other latents held at base_code [D]."""
    base = np.asarray(base_code, dtype=np.float32)
    latents = [int(j) for j in latents]
    if any(not 0 <= j < base.shape[0] for j in latents):
        raise ValueError(f"latent indices must be in 0..{base.shape[0] - 1}, got {latents}")
    steps = values.shape[1]
    codes = np.repeat(base[None, None, :], len(latents), 0).repeat(steps, 1)  # [L, S, D]
    for row, j in enumerate(latents):
        codes[row, :, j] = values[j]
    z = torch.as_tensor(codes.reshape(-1, base.shape[0]), device=model_device(model))
    images = torch.sigmoid(model.decode(z)).cpu().numpy()
    return images.reshape(len(latents), steps, *images.shape[1:])


@torch.no_grad()
def reconstruct(model: VAE, images: np.ndarray) -> np.ndarray:
    """Reconstructions of images [N, C, H, W] from their mean codes, in [0, 1]."""
    mu, _ = model.encode(torch.as_tensor(images, dtype=torch.float32, device=model_device(model)))
    return torch.sigmoid(model.decode(mu)).cpu().numpy()
