"""Plain VAE (Kingma & Welling 2014): the base class as registered under `vae`."""

from mtc_core.models.base import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig"]
