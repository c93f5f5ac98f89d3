import math

import numpy as np
import pytest
import torch

from mtc_core.data import make_dataset
from mtc_core.models import MODELS, build_model
from mtc_core.models.base import gaussian_kl
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
    kl_vae, _ = vae.regulariser(out, 0)
    reg_tc, logs = tcvae.regulariser(out, 0)
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
    if method == "gaussian":  # against the closed form of DESIGN 1.1 at rho = 0.9
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
