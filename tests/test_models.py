import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from mtc_core.data import make_dataset
from mtc_core.models import MODELS, build_model
from mtc_core.models.base import field_choices, gaussian_kl
from mtc_core.models.beta_tcvae import kl_decomposition
from mtc_core.models.dip_vae import dip_penalty
from mtc_core.models.rtc_vae import mean_tc_penalty

TOY = make_dataset("toy")


def toy_model(name, **params):
    base = {"architecture": "mlp", "image_shape": list(TOY.image_shape), "latent_dim": 6, "hidden": 64}
    if name in ("beta_tcvae", "rtc_vae"):
        base["dataset_size"] = len(TOY)
    return build_model(name, {**base, **params})


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_and_finite_loss(name):
    torch.manual_seed(0)
    model = toy_model(name)
    x = torch.from_numpy(TOY.render(TOY.sample_factors(8, np.random.default_rng(0))))
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (8, 6)
    assert model.decode(mu).shape == x.shape
    loss, logs, out = model.loss(x)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert logs["loss"] == pytest.approx(loss.item())
    assert out["z"].shape == (8, 6)


@pytest.mark.parametrize("name", list(MODELS))
def test_conv64_shapes(name):
    params = {"dataset_size": 1000} if name in ("beta_tcvae", "rtc_vae") else {}
    model = build_model(name, {"architecture": "conv64", "image_shape": [1, 64, 64], "latent_dim": 10, **params})
    x = torch.zeros(4, 1, 64, 64)
    assert model.encode(x)[0].shape == (4, 10)
    assert model.decode(torch.zeros(4, 10)).shape == (4, 1, 64, 64)


@pytest.mark.parametrize("name", list(MODELS))
def test_fifty_steps_lower_the_loss(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = toy_model(name)
    opt = torch.optim.Adam(model.vae_parameters(), lr=1e-3)
    x_fixed = torch.from_numpy(TOY.render(TOY.sample_factors(256, np.random.default_rng(1))))

    def held_out_loss():
        torch.manual_seed(123)  # same reparameterisation noise before and after
        with torch.no_grad():
            return model.loss(x_fixed)[0].item()

    before = held_out_loss()
    for step in range(50):
        x = torch.from_numpy(TOY.render(TOY.sample_factors(64, rng)))
        loss, _, out = model.loss(x, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.auxiliary_step(out)
    after = held_out_loss()
    assert after < 0.8 * before, f"{name}: held-out loss {before:.1f} -> {after:.1f}"


def test_beta_tcvae_with_unit_weights_is_the_vae_kl():
    torch.manual_seed(0)
    vae, tcvae = toy_model("vae"), toy_model("beta_tcvae", alpha=1.0, beta=1.0, gamma=1.0)
    tcvae.load_state_dict(vae.state_dict())
    x = torch.from_numpy(TOY.render(TOY.sample_factors(32, np.random.default_rng(0))))
    torch.manual_seed(1)
    out = vae(x)
    kl_vae, _ = vae.regularisation(out, 0)
    reg_tc, logs = tcvae.regularisation(out, 0)
    # alpha = beta = gamma = 1: the correction terms vanish, the regulariser is the analytic KL.
    assert reg_tc.item() == pytest.approx(kl_vae.item(), rel=1e-6)


def test_kl_decomposition_is_an_unbiased_kl_estimate():
    # MI + TC + dwKL telescopes to mean(log q(z|x) - log p(z)), a one-sample Monte-Carlo estimate of the KL;
    # its error is within 4 standard errors of that estimate.
    g = torch.Generator().manual_seed(0)
    b, d = 512, 5
    mu = torch.randn(b, d, generator=g) * 1.5
    logvar = torch.randn(b, d, generator=g) * 0.3 - 1.0
    z = mu + torch.exp(0.5 * logvar) * torch.randn(b, d, generator=g)
    parts = kl_decomposition({"z": z, "mu": mu, "logvar": logvar}, dataset_size=10_000, estimator="mws")
    total = parts["mi"] + parts["tc"] + parts["dwkl"]
    per_point = (-0.5 * (logvar + (z - mu) ** 2 / logvar.exp()) + 0.5 * z**2).sum(1)  # log q(z|x) - log p(z)
    assert total.item() == pytest.approx(per_point.mean().item(), abs=1e-4)
    analytic = gaussian_kl(mu, logvar).sum(1).mean().item()
    stderr = per_point.std().item() / math.sqrt(b)
    assert abs(total.item() - analytic) < 4 * stderr


def test_dip_penalty_zero_at_identity_covariance():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(200, 4, generator=g, dtype=torch.float64)
    mu = mu - mu.mean(0)
    cov = mu.T @ mu / mu.shape[0]
    mu = mu @ torch.linalg.inv(torch.linalg.cholesky(cov)).T  # whiten: batch covariance exactly I
    logvar = torch.zeros_like(mu)
    assert dip_penalty(mu, logvar, "i", 10.0, 100.0).item() == pytest.approx(0.0, abs=1e-9)
    # type ii counts E[sigma^2]: Cov(mu) = 0.5 I plus sigma^2 = 0.5 is I again
    assert dip_penalty(mu * math.sqrt(0.5), torch.full_like(mu, math.log(0.5)), "ii", 10.0, 10.0).item() == pytest.approx(0.0, abs=1e-9)
    # and it is positive away from I: off-diagonal 0.5 gives lambda_od * 2 * 0.25
    mixed = mu.clone()
    mixed[:, 1] = 0.5 * mu[:, 0] + math.sqrt(0.75) * mu[:, 1]
    assert dip_penalty(mixed, logvar, "i", 10.0, 0.0).item() == pytest.approx(10.0 * 2 * 0.25, rel=1e-6)


@pytest.mark.parametrize("method", ["gaussian", "kde"])
def test_rtc_mean_tc_penalty_grows_with_correlation(method):
    g = torch.Generator().manual_seed(0)
    b, d = 512, 3
    base = torch.randn(b, d, generator=g, dtype=torch.float64)
    values = []
    for rho in (0.0, 0.3, 0.6, 0.9):
        chol = torch.linalg.cholesky((1 - rho) * torch.eye(d, dtype=torch.float64) + rho)
        values.append(mean_tc_penalty((base @ chol.T).float(), method).item())
    assert abs(values[0]) < 0.05
    assert values == sorted(values) and values[-1] > 1.0
    if method == "gaussian":  # against the closed form of docs/design.md, "The theorem" at rho = 0.9
        closed = -0.5 * (2 * math.log(0.1) + math.log(1 + 2 * 0.9))
        assert values[-1] == pytest.approx(closed, rel=0.1)


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="beta"):
        toy_model("beta_vae", beta=-1.0)
    with pytest.raises(ValueError, match="estimator"):
        toy_model("beta_tcvae", estimator="xyz")
    with pytest.raises(ValueError, match="dip_type"):
        toy_model("dip_vae", dip_type="iii")
    with pytest.raises(ValueError, match="mean_tc"):
        toy_model("rtc_vae", mean_tc="nope")
    with pytest.raises(ValueError, match="unknown"):
        toy_model("vae", not_a_field=1)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope")
    with pytest.raises(ValueError, match="64x64"):
        build_model("vae", {"architecture": "conv64", "image_shape": [1, 32, 32]})


def kl_weight(model):
    """How much of the KL the variant's loss holds: beta for beta-VAE, the KL itself for every other variant."""
    return model.config.beta if isinstance(model, MODELS["beta_vae"]) else 1.0


@pytest.mark.parametrize("name", list(MODELS))
def test_the_base_computes_the_kl_once_and_the_variant_counts_it_once(name):
    # The base computes the KL and hands it to the variant's hook (disentanglement_lib's regularizer(kl_loss, ...)):
    # the hook receives exactly that tensor, with its gradient; the hook's term moves with it by the variant's weight
    # (0: it ignores the KL it was given, 2: it adds its own as well); the base adds nothing to what the hook returns.
    g = torch.Generator().manual_seed(0)
    batch = {"mu": torch.randn(16, 6, generator=g, dtype=torch.float64), "logvar": torch.randn(16, 6, generator=g, dtype=torch.float64) * 0.5}
    batch["z"] = batch["mu"] + torch.exp(0.5 * batch["logvar"]) * torch.randn(16, 6, generator=g, dtype=torch.float64)
    mu, logvar, z = (batch[k].requires_grad_(True) for k in ("mu", "logvar", "z"))
    model = toy_model(name, **({"beta": 3.5} if name == "beta_vae" else {})).double()
    hook, seen = model.regulariser, []

    def spy(kl, *args):
        seen.append(kl)
        return hook(kl, *args)

    def variant(kl):  # the hook alone, with the same noise (RTC-VAE's KDE draws from it)
        model.noise = torch.Generator().manual_seed(1)
        return hook(kl, mu, logvar, z, 3)[0]

    model.regulariser = spy
    model.noise = torch.Generator().manual_seed(1)
    reg, logs = model.regularisation(batch, 3)
    [kl] = seen
    own_kl = gaussian_kl(mu, logvar).sum(1).mean()
    assert torch.equal(kl, own_kl)
    assert list(logs)[0] == "kl" and logs["kl"] == kl.item()
    assert torch.equal(reg, variant(own_kl))
    grads = torch.autograd.grad(reg, (mu, logvar), allow_unused=True)
    expected = torch.autograd.grad(variant(own_kl), (mu, logvar), allow_unused=True)
    for got, want in zip(grads, expected, strict=True):  # the KL reaches the loss with its gradient (not detached)
        assert want is not None and got is not None and torch.equal(got, want)

    free = torch.tensor(kl.item(), dtype=torch.float64, requires_grad=True)
    (weight,) = torch.autograd.grad(variant(free), free, allow_unused=True)
    assert weight is not None, f"{name}'s regulariser ignores the KL the base passes it"
    assert weight.item() == pytest.approx(kl_weight(model), rel=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_loss_is_the_reconstruction_plus_the_regularisation(name):
    model = toy_model(name)
    x = torch.from_numpy(TOY.render(TOY.sample_factors(8, np.random.default_rng(0))))
    model.noise = torch.Generator().manual_seed(0)
    loss, logs, out = model.loss(x, 2)
    model.noise = torch.Generator().manual_seed(0)
    model(x)  # the same draws as the loss's forward pass before the hook's own (RTC-VAE's KDE)
    reg, reg_logs = model.regularisation(out, 2)
    assert torch.equal(loss, model.reconstruction(x, out["logits"]) + reg)
    assert list(logs) == ["loss", "recon", *reg_logs]


def test_every_model_carries_its_metadata():
    from mtc_core.evaluation import sweep_results
    from mtc_core.models import FAMILIES, FAMILY_COLOURS, REGULARISERS
    from mtc_core.visualize import charts

    names = [cls.display_name for cls in MODELS.values()]
    colours = [cls.colour for cls in MODELS.values()]
    assert all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names), names  # a variant that forgot its own
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours) and len(set(colours)) == len(colours), colours
    for key, cls in MODELS.items():
        fields = {f.name: f for f in dataclasses.fields(cls.Config)}
        if cls.swept_field is not None:
            assert cls.swept_field in fields, f"{key}: swept_field {cls.swept_field!r} is not a field of {cls.Config.__name__}"
            assert isinstance(fields[cls.swept_field].default, float), f"{key}: a strength is a number"
        assert "display_name" in vars(cls) or cls is MODELS["vae"], f"{key} shows the base VAE's name"
    assert MODELS["vae"].swept_field is None and all(MODELS[k].swept_field for k in MODELS if k != "vae")
    # the tables the app reads are derived from the classes, defined once
    assert FAMILIES == {k: cls.display_name for k, cls in MODELS.items()}
    assert REGULARISERS == {k: cls.swept_field for k, cls in MODELS.items() if cls.swept_field}
    assert FAMILY_COLOURS == {cls.display_name: cls.colour for cls in MODELS.values()}
    assert charts.FAMILY_COLOURS is FAMILY_COLOURS and sweep_results.REGULARISERS is REGULARISERS


@pytest.mark.parametrize(("name", "field"), [(k, f) for k, cls in MODELS.items() for f in field_choices(cls.Config)])
def test_fields_with_choices_declare_them_and_refuse_others(name, field):
    options = field_choices(MODELS[name].Config)[field]
    default = next(f.default for f in dataclasses.fields(MODELS[name].Config) if f.name == field)
    assert default in options and len(options) >= 2
    for value in options:
        assert getattr(MODELS[name].Config.from_dict({field: value}), field) == value
    for bad in ("nope", options[0].upper(), None, 1):
        with pytest.raises(ValueError, match=f"^{field} must be one of"):
            MODELS[name].Config.from_dict({field: bad})
