"""The base VAE: Gaussian encoder q(z|x) = N(mu, diag exp(logvar)), Bernoulli decoder.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (https://arxiv.org/abs/1312.6114).
The base owns encode, reparameterise, decode, the reconstruction term and the KL term; a variant
overrides one hook, `regulariser(kl, mu, logvar, z, step) -> (loss term, logs)`, which receives the KL
the base computed (as disentanglement_lib's `regularizer(kl_loss, z_mean, z_logvar, z_sampled)`) and
adds what is special to it. Each variant also names itself for the app (`display_name`, `colour`) and
its regularisation strength (`swept_field`): `mtc_core.models` derives every table of these from them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtc_core.estimators.sampling import sampled_codes
from mtc_core.models.architectures import ARCHITECTURES, build_networks

# Bounds on every size in a model config (docs/design.md, "Run folders"), checked before anything is allocated, so that a config of a few
# bytes cannot make a loader build a model of many GB. They sit far above what the project trains (Shapes2D: 1x64x64
# images, 10 latents, FC 256; FactorVAE's discriminator 6 x 1000; the toy: 1x32x32, hidden 256) and low enough that
# every config within them builds in a few hundred MB. A variant's fields with these names are checked by the base.
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "channels": (1, 4),  # image channels (grey, RGB, RGBA)
    "image_side": (1, 256),  # image height and width, px
    "latent_dim": (1, 512),
    "hidden": (1, 4096),  # width of the mlp layers
    "disc_width": (1, 4096),  # FactorVAE's discriminator width
    "disc_depth": (1, 16),  # FactorVAE's discriminator hidden layers
    "dataset_size": (2, 10**9),  # N in the minibatch TC weights (dSprites: 737,280)
    "warmup_steps": (0, 10**8),  # RTC-VAE's warm-up of its mean-TC weight
}
MAX_PARAMETERS = 25_000_000  # all nets of a model together: 100 MB of float32 weights (conv64 VAE: 0.76 M; FactorVAE: 5.8 M)


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """Size guard: an integer (not a bool, not a float) in low..high, else ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high} and an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 10  # number of latent dimensions
    architecture: str = field(default="conv64", metadata={"choices": ARCHITECTURES})  # conv64 (64x64 images) | mlp (any size)
    image_shape: tuple[int, int, int] = (1, 64, 64)  # (C, H, W) of the dataset
    hidden: int = 256  # width of the mlp layers

    def __post_init__(self):
        # JSON gives lists; the dataclass stores tuples so that configs stay hashable.
        shape = self.image_shape
        if not isinstance(shape, list | tuple) or len(shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {shape!r}")
        check_int("image_shape channels", shape[0], *SIZE_LIMITS["channels"])
        for side in shape[1:]:
            check_int("image_shape height and width", side, *SIZE_LIMITS["image_side"])
        object.__setattr__(self, "image_shape", tuple(shape))
        for f in dataclasses.fields(self):
            if f.name in SIZE_LIMITS:
                check_int(f.name, getattr(self, f.name), *SIZE_LIMITS[f.name])
        check_choices(self)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> VAEConfig:
        return dataclass_from_dict(cls, params)


def field_choices(cls: type) -> dict[str, tuple[str, ...]]:
    """The fields of a config dataclass that take one of a fixed set of values (`metadata={"choices": ...}`) -> the values."""
    return {f.name: tuple(f.metadata["choices"]) for f in dataclasses.fields(cls) if "choices" in f.metadata}


def check_choices(config: Any) -> None:
    """Choice guard: every field with `choices` metadata holds one of them, else ValueError naming the field."""
    for name, options in field_choices(type(config)).items():
        value = getattr(config, name)
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{name} must be one of {options}, got {value!r}")


def dataclass_from_dict(cls: type, params: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys (a foreign or mistyped config)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    return cls(**params)


def check_at_least(name: str, value: float, low: float = 0.0) -> None:
    """Hyperparameter guard: a finite number >= low, else ValueError naming it."""
    if not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")


def meta_model(cls: type[VAE], config: VAEConfig) -> VAE:
    """The model with every tensor on the meta device: names, shapes and dtypes without allocating any memory."""
    with torch.device("meta"):
        return cls(config)


def check_parameter_count(cls: type[VAE], config: VAEConfig) -> None:
    """ValueError when the model `config` describes would exceed MAX_PARAMETERS (counted on a meta twin, before allocating)."""
    count = sum(t.numel() for t in meta_model(cls, config).state_dict().values())
    if count > MAX_PARAMETERS:
        raise ValueError(f"this {cls.__name__} config describes {count:,} parameters, over the limit of {MAX_PARAMETERS:,}; "
                         f"use a smaller hidden, latent_dim, image or discriminator")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per point and dim: [B, D]."""
    return 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1)


class VAE(nn.Module):
    """Plain VAE: loss = recon + KL."""

    Config = VAEConfig
    display_name: str = "VAE"  # the name a chart's legend and the run tables show
    colour: str = "#7f7f7f"  # the family's colour in the charts
    swept_field: str | None = None  # the Config field that sets the regularisation strength (sweep plots); None: no regulariser
    auxiliary_prefixes: tuple[str, ...] = ()  # state-dict names of nets used only in training (not needed to encode/decode)

    def __init__(self, config: VAEConfig):
        super().__init__()
        assert isinstance(config, self.Config), f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}"
        if torch.get_default_device().type != "meta":
            check_parameter_count(type(self), config)
        self.config = config
        self.encoder, self.decoder = build_networks(config.architecture, config.image_shape, config.latent_dim, config.hidden)
        # Source of the model's own noise (reparameterisation, FactorVAE's permutations). The trainer sets a
        # seeded generator per run, so runs in threads side by side stay reproducible; None: torch's global RNG.
        self.noise: torch.Generator | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] -> mu, logvar [B, D]."""
        assert x.shape[1:] == self.config.image_shape, f"expected images {self.config.image_shape}, got {tuple(x.shape[1:])}"
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def reparameterise(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=self.noise, device=mu.device, dtype=mu.dtype)
        return sampled_codes(mu, logvar, eps)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> Bernoulli logits [B, C, H, W]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterise(mu, logvar)
        return {"mu": mu, "logvar": logvar, "z": z, "logits": self.decode(z)}

    def reconstruction(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Bernoulli negative log-likelihood, summed over pixels, averaged over the batch (nats)."""
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]

    def regulariser(self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The variant's hook: the loss term beside the reconstruction, given the batch-mean KL `kl` (a scalar tensor the
        base computed), the posterior mu, logvar [B, D], the sampled codes z [B, D] and the step; (term, logs of what is
        special to the variant, as detached scalar tensors: reading one as a number waits for the device, so the base
        does it only when asked). Plain VAE: the KL itself."""
        return kl, {}

    def regularisation(self, out: dict[str, torch.Tensor], step: int, *,
                       lazy: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        """Everything but the reconstruction: the KL, computed once here, through the variant's `regulariser`;
        (term, logs with "kl" first). lazy=True: the logs stay detached scalar tensors on the model's device."""
        kl = gaussian_kl(out["mu"], out["logvar"]).sum(1).mean()
        reg, logs = self.regulariser(kl, out["mu"], out["logvar"], out["z"], step)
        logs = {"kl": kl.detach(), **logs}
        return reg, logs if lazy else read_logs(logs)

    def loss(self, x: torch.Tensor, step: int = 0, *,
             lazy: bool = False) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
        """Returns (loss, logs, forward outputs) for a batch x [B, C, H, W] in [0, 1]. The logs are numbers, or with
        lazy=True detached scalar tensors left on the device (the trainer reads them only when it records them)."""
        out = self(x)
        recon = self.reconstruction(x, out["logits"])
        reg, logs = self.regularisation(out, step, lazy=True)
        loss = recon + reg
        logs = {"loss": loss.detach(), "recon": recon.detach(), **logs}
        return loss, logs if lazy else read_logs(logs), out

    def vae_parameters(self) -> list[nn.Parameter]:
        """Parameters of the main optimiser (a variant with its own auxiliary nets excludes them)."""
        return list(self.parameters())

    def auxiliary_step(self, out: dict[str, torch.Tensor], *, lazy: bool = False) -> dict[str, float]:
        """Hook run after the main optimiser step (FactorVAE trains its discriminator here); its logs as `loss`'s."""
        return {}


def read_logs(logs: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Logs as numbers: each scalar tensor read (`.item()`, which waits for the device), numbers kept."""
    return {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in logs.items()}
