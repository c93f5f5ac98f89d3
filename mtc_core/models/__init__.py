"""VAE variants. `MODELS` is the one registry: the UI, the loader and the tests read it.

Each class carries its own metadata (`display_name`, `colour`, `swept_field`); the tables below are derived from it,
here only, for the call sites that look a model up by key or by name."""

from __future__ import annotations

from typing import Any

from mtc_core.models.base import VAE, VAEConfig
from mtc_core.models.beta_tcvae import BetaTCVAE, BetaTCVAEConfig
from mtc_core.models.beta_vae import BetaVAE, BetaVAEConfig
from mtc_core.models.dip_vae import DIPVAE, DIPVAEConfig
from mtc_core.models.factor_vae import FactorVAE, FactorVAEConfig
from mtc_core.models.rtc_vae import RTCVAE, RTCVAEConfig

MODELS: dict[str, type[VAE]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "beta_tcvae": BetaTCVAE,
    "factor_vae": FactorVAE,
    "dip_vae": DIPVAE,
    "rtc_vae": RTCVAE,
}
FAMILIES = {key: cls.display_name for key, cls in MODELS.items()}  # model key -> the name a chart's legend shows
REGULARISERS = {key: cls.swept_field for key, cls in MODELS.items() if cls.swept_field}  # model key -> its strength field
FAMILY_COLOURS = {cls.display_name: cls.colour for cls in MODELS.values()}  # display name -> chart colour


def model_class(name: str) -> type[VAE]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, params: dict[str, Any] | None = None) -> VAE:
    """A fresh model from its registry key and config fields (unknown fields -> ValueError)."""
    cls = model_class(name)
    return cls(cls.Config.from_dict(dict(params or {})))


__all__ = [
    "MODELS",
    "FAMILIES",
    "FAMILY_COLOURS",
    "REGULARISERS",
    "VAE",
    "VAEConfig",
    "BetaVAE",
    "BetaVAEConfig",
    "BetaTCVAE",
    "BetaTCVAEConfig",
    "FactorVAE",
    "FactorVAEConfig",
    "DIPVAE",
    "DIPVAEConfig",
    "RTCVAE",
    "RTCVAEConfig",
    "build_model",
    "model_class",
]
