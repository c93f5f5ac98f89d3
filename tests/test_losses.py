"""Each model's regulariser against an independent computation of its formula (docs/design.md, "Models" and "Tests").

The references below are written from the papers with explicit loops in numpy (float64), not with the
package's helpers, so that a wrong sign, a dropped term, an ignored weight or swapped estimator weights
changes the value by far more than the tolerance. `bench/mutation.py` breaks each term on purpose and
checks that this file (with test_models.py and test_estimators.py) goes red.
"""

import copy
import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, logsumexp

import mtc_core.models.factor_vae as factor_vae_module
from mtc_core.models import MODELS, build_model
from mtc_core.models.discriminator import permute_dims

B, D, N = 12, 4, 100  # a small batch, and a small dataset size so that the minibatch weights matter
TINY = {"architecture": "mlp", "image_shape": [1, 4, 4], "hidden": 8, "latent_dim": D}


def tiny_model(name, **params):
    return build_model(name, {**TINY, **params})


def fixed_batch(seed=0, b=B, d=D, dtype=torch.float64):
    """mu with correlated columns, uneven posterior variances, and z = mu + sigma eps: every term clearly nonzero."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(d) + 0.8 * rng.standard_normal((d, d))
    mu = rng.standard_normal((b, d)) @ mixing.T
    logvar = rng.uniform(-2.5, 0.5, (b, d))
    z = mu + np.exp(logvar / 2) * rng.standard_normal((b, d))
    return {k: torch.tensor(v, dtype=dtype) for k, v in (("mu", mu), ("logvar", logvar), ("z", z))}


def as_numpy(out):
    return {k: v.detach().double().numpy() for k, v in out.items()}


# ------------------------------------------------------------------ independent references


def ref_kl(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, 1)) summed over dims, averaged over the batch, by torch.distributions."""
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(logvar / 2)))
    p = torch.distributions.Normal(torch.zeros(mu.shape, dtype=torch.float64), torch.ones(mu.shape, dtype=torch.float64))
    return torch.distributions.kl_divergence(q, p).sum(1).mean().item()


def log_normal(x, mean, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / math.exp(logvar))


def chen_weights(b, n, estimator):
    """w[i, j], the weight of q(z_i | x_j) in the estimate of q(z_i) (Chen et al. 2018, App. C.1).

    MWS: every pair 1 / (N M) with M = B the batch size. MSS: the batch is z_i's own point plus
    M = B - 1 others; its own point weighs 1 / N, one stratum point (N - M) / (N M) (here the next index,
    i + 1 mod B), every other point 1 / M, so that each row sums to one.
    """
    w = np.empty((b, b))
    for i in range(b):
        for j in range(b):
            if estimator == "mws":
                w[i, j] = 1.0 / (n * b)
            elif j == i:
                w[i, j] = 1.0 / n
            elif j == (i + 1) % b:
                w[i, j] = (n - (b - 1)) / (n * (b - 1))
            else:
                w[i, j] = 1.0 / (b - 1)
    return w


def ref_decomposition(z, mu, logvar, n, estimator):
    """Chen et al. Eq. 2 on a batch: MI = E[log q(z|x) - log q(z)], TC = E[log q(z) - log prod_j q(z_j)],
    dwKL = E[log prod_j q(z_j) - log p(z)], with q(z) and q(z_j) the weighted minibatch mixtures."""
    b, d = z.shape
    w = chen_weights(b, n, estimator)
    mi, tc, dwkl = [], [], []
    for i in range(b):
        log_q_given_x = sum(log_normal(z[i, k], mu[i, k], logvar[i, k]) for k in range(d))
        log_p = sum(log_normal(z[i, k], 0.0, 0.0) for k in range(d))
        joint = [sum(log_normal(z[i, k], mu[j, k], logvar[j, k]) for k in range(d)) for j in range(b)]
        log_qz = logsumexp(joint, b=w[i])
        log_prod = sum(logsumexp([log_normal(z[i, k], mu[j, k], logvar[j, k]) for j in range(b)], b=w[i]) for k in range(d))
        mi.append(log_q_given_x - log_qz)
        tc.append(log_qz - log_prod)
        dwkl.append(log_prod - log_p)
    return {"mi": np.mean(mi), "tc": np.mean(tc), "dwkl": np.mean(dwkl), "kl_one_sample": np.mean(mi) + np.mean(tc) + np.mean(dwkl)}


def ref_gaussian_mean_tc(mu, ridge, debias=False):
    """-1/2 log det(R + ridge I) + D/2 log(1 + ridge), R the correlation matrix of the batch of means; `debias`
    subtracts E[-1/2 log det R] of B independent points, det R ~ prod_i Beta((B - 1 - i) / 2, i / 2), i = 1..D-1."""
    r = np.corrcoef(mu, rowvar=False)
    value = 0.5 * (len(r) * math.log(1 + ridge) - np.linalg.slogdet(r + ridge * np.eye(len(r)))[1])
    if debias:
        b, d = mu.shape
        value += 0.5 * sum(digamma((b - 1 - i) / 2) - digamma((b - 1) / 2) for i in range(1, d))
    return value


def ref_kde_mean_tc(mu, order):
    """Leave-one-out product-kernel KDE of log q on standardised means minus the same on the column-permuted
    copy (docs/design.md, "Reading a TC estimate"); Silverman's bandwidth h = (4 / ((D + 2) B))^(1 / (D + 4)). `order[:, j]` permutes column j."""
    b, d = mu.shape
    x = (mu - mu.mean(0)) / mu.std(0, ddof=1)
    permuted = np.stack([x[order[:, j], j] for j in range(d)], axis=1)
    h = (4.0 / ((d + 2) * b)) ** (1.0 / (d + 4))

    def mean_log_density(points):
        total = 0.0
        for i in range(b):
            kernels = [sum(log_normal(points[i, k], points[j, k], 2 * math.log(h)) for k in range(d)) for j in range(b) if j != i]
            total += logsumexp(kernels) - math.log(b - 1)
        return total / b

    return mean_log_density(x) - mean_log_density(permuted)


def ref_dip(mu, logvar, dip_type, lambda_od, lambda_d):
    """Kumar et al. 2018: lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2, C = Cov(mu) (biased, as
    disentanglement_lib) for DIP-VAE-I, Cov(mu) + E[diag sigma^2] for DIP-VAE-II."""
    cov = np.cov(mu, rowvar=False, bias=True)
    if dip_type == "ii":
        cov = cov + np.diag(np.exp(logvar).mean(0))
    d = len(cov)
    off = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    diag = sum((cov[i, i] - 1) ** 2 for i in range(d))
    return lambda_od * off + lambda_d * diag, off, diag


# ------------------------------------------------------------------ values on a fixed batch


def test_fixed_batch_has_every_term_clearly_nonzero():
    # Guard for the tests below: a dropped or reweighted term must move the regulariser by far more than rel 1e-9.
    b = as_numpy(fixed_batch())
    for estimator in ("mws", "mss"):
        parts = ref_decomposition(b["z"], b["mu"], b["logvar"], N, estimator)
        assert min(abs(parts["mi"]), abs(parts["tc"]), abs(parts["dwkl"])) > 0.1, parts
    assert ref_gaussian_mean_tc(b["mu"], 0.05) > 0.3
    _, off, diag = ref_dip(b["mu"], b["logvar"], "i", 1.0, 1.0)
    assert off > 0.5 and diag > 0.5


def test_chen_mss_weights_rows_sum_to_one():
    w = chen_weights(7, 50, "mss")
    assert np.allclose(w.sum(1), 1.0) and np.allclose(np.diag(w), 1 / 50)
    assert np.allclose(chen_weights(7, 50, "mws").sum(1), 1 / 50)


def test_vae_regulariser_is_the_analytic_kl():
    out = fixed_batch()
    b = as_numpy(out)
    reg, logs = tiny_model("vae").regularisation(out, 0)
    assert reg.item() == pytest.approx(ref_kl(b["mu"], b["logvar"]), rel=1e-10)
    assert logs["kl"] == pytest.approx(reg.item(), rel=1e-10)


def test_beta_vae_regulariser_is_beta_times_kl():
    out = fixed_batch()
    b = as_numpy(out)
    reg, _ = tiny_model("beta_vae", beta=3.5).regularisation(out, 0)
    assert reg.item() == pytest.approx(3.5 * ref_kl(b["mu"], b["logvar"]), rel=1e-10)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
@pytest.mark.parametrize(("alpha", "beta", "gamma"), [(1.0, 6.0, 1.0), (2.5, 6.0, 0.5), (0.3, 1.0, 4.0)])
def test_beta_tcvae_regulariser_is_alpha_mi_plus_beta_tc_plus_gamma_dwkl(estimator, alpha, beta, gamma):
    # Chen et al.'s objective alpha MI + beta TC + gamma dwKL, with the one-sample KL estimate MI + TC + dwKL
    # replaced by the analytic KL (module docstring): reg = alpha MI + beta TC + gamma dwKL - KL_hat + KL.
    out = fixed_batch()
    b = as_numpy(out)
    model = tiny_model("beta_tcvae", alpha=alpha, beta=beta, gamma=gamma, estimator=estimator, dataset_size=N)
    reg, logs = model.regularisation(out, 0)
    parts = ref_decomposition(b["z"], b["mu"], b["logvar"], N, estimator)
    expected = alpha * parts["mi"] + beta * parts["tc"] + gamma * parts["dwkl"] - parts["kl_one_sample"] + ref_kl(b["mu"], b["logvar"])
    assert reg.item() == pytest.approx(expected, rel=1e-9)
    for key in ("mi", "tc", "dwkl"):
        assert logs[key] == pytest.approx(parts[key], rel=1e-9, abs=1e-12)


def test_factor_vae_tc_term_is_gamma_times_the_mean_logit_of_d():
    # D(z) = P(z came from q(z)) = softmax(logits)[0] (class 0 = joint, the label auxiliary_step gives real
    # codes); the density-ratio trick reads TC ~ E log D / (1 - D) = E logit(D(z)) (Kim & Mnih 2018, Eq. 3).
    torch.manual_seed(0)
    out = fixed_batch(dtype=torch.float32)
    model = tiny_model("factor_vae", gamma=7.0, disc_width=16, disc_depth=2)
    with torch.no_grad():
        for p in model.discriminator.parameters():  # a discriminator whose logit(D) is far from 0 on this batch
            p.mul_(3.0)
        prob_joint = torch.softmax(model.discriminator(out["z"]).double(), dim=1)[:, 0].numpy()
    tc = np.mean(np.log(prob_joint) - np.log1p(-prob_joint))
    assert abs(tc) > 0.1
    reg, logs = model.regularisation(out, 0)
    b = as_numpy(out)
    assert logs["tc_disc"] == pytest.approx(tc, rel=1e-5)
    assert reg.item() == pytest.approx(ref_kl(b["mu"], b["logvar"]) + 7.0 * tc, rel=1e-5)


def test_factor_vae_discriminator_loss_on_joint_and_permuted_codes(monkeypatch):
    torch.manual_seed(0)
    out = fixed_batch(b=64, dtype=torch.float32)
    model = tiny_model("factor_vae", disc_width=16, disc_depth=2)
    model.noise = torch.Generator().manual_seed(3)
    seen = []

    def spy(z, generator=None):
        seen.append((z.clone(), permute_dims(z, generator)))
        return seen[-1][1]

    monkeypatch.setattr(factor_vae_module, "permute_dims", spy)
    before = copy.deepcopy(model.discriminator)
    loss = model.auxiliary_step(out)["disc_loss"]
    [(z, permuted)] = seen
    assert torch.equal(z, out["z"])
    assert_column_permutation(z, permuted)
    with torch.no_grad():
        log_p_real = torch.log_softmax(before(z).double(), 1).numpy()
        log_p_fake = torch.log_softmax(before(permuted).double(), 1).numpy()
    # cross-entropy of the labels joint = 0, permuted = 1, averaged over the two halves
    expected = 0.5 * (-log_p_real[:, 0].mean() - log_p_fake[:, 1].mean())
    assert loss == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # one Adam step of the discriminator lowered its own loss on the same samples
        after_real = torch.log_softmax(model.discriminator(z).double(), 1).numpy()
        after_fake = torch.log_softmax(model.discriminator(permuted).double(), 1).numpy()
    assert 0.5 * (-after_real[:, 0].mean() - after_fake[:, 1].mean()) < expected
    for p_before, p_after in zip(before.parameters(), model.discriminator.parameters(), strict=True):
        assert not torch.equal(p_before, p_after)
    assert all(p.grad is None or not p.grad.abs().sum() for p in model.vae_parameters())  # only the discriminator learnt
    # its own Adam (made at the first step: a model loaded to encode has none) holds the discriminator's parameters only
    group = model.disc_optimizer.param_groups[0]
    assert [id(p) for p in group["params"]] == [id(p) for p in model.discriminator.parameters()]
    assert (group["lr"], group["betas"]) == (model.config.disc_lr, (0.5, 0.9))
    assert tiny_model("factor_vae", disc_width=16, disc_depth=2)._disc_optimizer is None


@pytest.mark.parametrize(("dip_type", "lambda_od", "lambda_d"), [("i", 3.0, 7.0), ("ii", 3.0, 7.0), ("i", 2.0, None), ("ii", 2.0, None)])
def test_dip_vae_regulariser_is_kl_plus_off_diagonal_plus_diagonal(dip_type, lambda_od, lambda_d):
    out = fixed_batch()
    b = as_numpy(out)
    params = {"dip_type": dip_type, "lambda_od": lambda_od} | ({} if lambda_d is None else {"lambda_d": lambda_d})
    reg, logs = tiny_model("dip_vae", **params).regularisation(out, 0)
    if lambda_d is None:  # disentanglement_lib's defaults
        lambda_d = 10 * lambda_od if dip_type == "i" else lambda_od
    dip, _, _ = ref_dip(b["mu"], b["logvar"], dip_type, lambda_od, lambda_d)
    assert logs["dip"] == pytest.approx(dip, rel=1e-10)
    assert reg.item() == pytest.approx(ref_kl(b["mu"], b["logvar"]) + dip, rel=1e-10)


def test_dip_vae_ii_counts_the_posterior_variance():
    out = fixed_batch()
    b = as_numpy(out)
    _, off_i, diag_i = ref_dip(b["mu"], b["logvar"], "i", 1.0, 1.0)
    _, off_ii, diag_ii = ref_dip(b["mu"], b["logvar"], "ii", 1.0, 1.0)
    assert off_i == pytest.approx(off_ii) and abs(diag_i - diag_ii) > 0.5  # E sigma^2 sits on the diagonal only
    reg_i = tiny_model("dip_vae", dip_type="i", lambda_od=0.0, lambda_d=1.0).regularisation(out, 0)[1]["dip"]
    reg_ii = tiny_model("dip_vae", dip_type="ii", lambda_od=0.0, lambda_d=1.0).regularisation(out, 0)[1]["dip"]
    assert (reg_i, reg_ii) == (pytest.approx(diag_i, rel=1e-10), pytest.approx(diag_ii, rel=1e-10))


def kde_order(seed, b=B, d=D):
    """The column permutations that `mean_tc_kde` draws from a generator seeded `seed` (uniforms, argsorted per column)."""
    return torch.rand(b, d, generator=torch.Generator().manual_seed(seed)).argsort(0).numpy()


def ref_rtc(b, *, beta, lambda_t, mean_tc, estimator, ramp, ridge=0.05, seed=0):
    sampled = ref_decomposition(b["z"], b["mu"], b["logvar"], N, estimator)["tc"]
    penalty = ref_gaussian_mean_tc(b["mu"], ridge, debias=True) if mean_tc == "gaussian" else ref_kde_mean_tc(b["mu"], kde_order(seed))
    return ref_kl(b["mu"], b["logvar"]) + (beta - 1) * sampled + ramp * lambda_t * penalty, penalty


@pytest.mark.parametrize(("mean_tc", "estimator"), [("gaussian", "mws"), ("kde", "mss"), ("kde", "mws")])
def test_rtc_vae_regulariser_is_beta_tcvae_tc_plus_lambda_times_mean_tc(mean_tc, estimator):
    out = fixed_batch()
    b = as_numpy(out)
    model = tiny_model("rtc_vae", beta=4.0, lambda_t=3.0, mean_tc=mean_tc, ridge=0.05, estimator=estimator, dataset_size=N)
    model.noise = torch.Generator().manual_seed(5)
    reg, logs = model.regularisation(out, 0)
    expected, penalty = ref_rtc(b, beta=4.0, lambda_t=3.0, mean_tc=mean_tc, estimator=estimator, ramp=1.0, seed=5)
    assert abs(penalty) > 0.05
    assert logs["tc_mean"] == pytest.approx(penalty, rel=1e-9)
    assert reg.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("mean_tc", ["gaussian", "kde"])
def test_rtc_vae_warmup_ramps_lambda_linearly(mean_tc):
    # lambda_t's weight is min(1, (step + 1) / warmup): 1/10 at step 0, 6/10 at step 5 (warmup / 2), 1 from step 9 on.
    out = fixed_batch()
    b = as_numpy(out)
    model = tiny_model("rtc_vae", beta=4.0, lambda_t=3.0, mean_tc=mean_tc, ridge=0.05, warmup_steps=10, dataset_size=N)
    for step, ramp in [(0, 0.1), (5, 0.6), (9, 1.0), (10, 1.0), (1000, 1.0)]:
        model.noise = torch.Generator().manual_seed(step)
        expected, _ = ref_rtc(b, beta=4.0, lambda_t=3.0, mean_tc=mean_tc, estimator="mws", ramp=ramp, seed=step)
        assert model.regularisation(out, step)[0].item() == pytest.approx(expected, rel=1e-9), f"step {step}"


def test_kde_penalty_is_exactly_zero_in_one_dimension():
    # A permuted copy of one column is the same set of points, so the correction cancels the estimate exactly.
    mu = fixed_batch()["mu"][:, :1]
    model = tiny_model("rtc_vae", mean_tc="kde", latent_dim=1)
    assert model.regularisation({"mu": mu, "logvar": torch.zeros_like(mu), "z": mu}, 0)[1]["tc_mean"] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ permute_dims


def assert_column_permutation(z, permuted):
    assert permuted.shape == z.shape
    for j in range(z.shape[1]):
        assert torch.equal(torch.sort(permuted[:, j]).values, torch.sort(z[:, j]).values), f"column {j} is not a permutation"
        assert not torch.equal(permuted[:, j], z[:, j]), f"column {j} was left in place"


def test_permute_dims_permutes_each_column_independently():
    b, d = 64, 5
    z = torch.arange(b, dtype=torch.float64)[:, None] + 1000.0 * torch.arange(d)  # row index + 1000 * column
    permuted = permute_dims(z, torch.Generator().manual_seed(0))
    assert_column_permutation(z, permuted)
    orders = (permuted - 1000.0 * torch.arange(d)).long()  # the permutation applied to each column
    assert len({tuple(orders[:, j].tolist()) for j in range(d)}) == d  # a different permutation per column
    # and independent: perfectly correlated columns lose their correlation
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2000, 1, generator=g, dtype=torch.float64)
    mixed = permute_dims(torch.cat([base, 2 * base, -base], dim=1), g)
    corr = np.corrcoef(mixed.numpy(), rowvar=False)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.1


# ------------------------------------------------------------------ terms move the way they must


def optimise_regulariser(model, out, steps, lr):
    """Plain gradient descent on free mu and logvar (z = mu + sigma eps, eps fixed) under the regulariser alone.

    SGD, not Adam: Adam normalises each parameter's step, so a larger weight on one term would not mean a larger
    push on it (with Adam, KL + 7 TC_hat lowers the true TC *less* than the KL alone, which drives every term to 0).
    """
    mu = out["mu"].clone().requires_grad_(True)
    logvar = out["logvar"].clone().requires_grad_(True)
    eps = (out["z"] - out["mu"]) * torch.exp(-0.5 * out["logvar"])
    opt = torch.optim.SGD([mu, logvar], lr=lr)
    for step in range(steps):
        reg, _ = model.regularisation({"mu": mu, "logvar": logvar, "z": mu + torch.exp(0.5 * logvar) * eps}, step)
        opt.zero_grad()
        reg.backward()
        opt.step()
    return as_numpy({"mu": mu, "logvar": logvar})


def batch_mixture_terms(mu, logvar, samples=50, seed=0):
    """MI, TC and dwKL of the batch taken as the whole dataset, q(z) = 1/B sum_n q(z|x_n): Monte Carlo with
    `samples` fresh draws per point (not the fixed eps the optimiser saw), exact mixture densities."""
    rng = np.random.default_rng(seed)
    b, d = mu.shape
    z = (mu[:, None] + np.exp(logvar / 2)[:, None] * rng.standard_normal((b, samples, d))).reshape(-1, d)
    log_k = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / np.exp(logvar[None]))  # [B S, B, D]
    log_q_given_x = log_k[np.arange(len(z)), np.repeat(np.arange(b), samples)].sum(1)
    log_qz = logsumexp(log_k.sum(2), axis=1) - math.log(b)
    log_prod = (logsumexp(log_k, axis=1) - math.log(b)).sum(1)
    log_p = (-0.5 * (math.log(2 * math.pi) + z**2)).sum(1)
    return {"mi": np.mean(log_q_given_x - log_qz), "tc": np.mean(log_qz - log_prod), "dwkl": np.mean(log_prod - log_p)}


@pytest.mark.parametrize(("weight", "term"), [("alpha", "mi"), ("beta", "tc"), ("gamma", "dwkl")])
def test_beta_tcvae_a_larger_weight_lowers_its_term(weight, term):
    # The batch is the dataset (dataset_size = B), so the batch mixture's MI / TC / dwKL are the true values.
    # Measured: weight 1 -> 8 lowers MI 2.56 -> 2.28, TC 0.85 -> 0.62, dwKL 0.97 -> 0.39 (start 2.71, 1.00, 1.38).
    out = fixed_batch(seed=1, b=32)
    ends = {}
    for value in (1.0, 8.0):
        weights = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, weight: value}
        final = optimise_regulariser(tiny_model("beta_tcvae", **weights, estimator="mss", dataset_size=32), out, steps=100, lr=0.03)
        ends[value] = batch_mixture_terms(final["mu"], final["logvar"])[term]
    assert ends[8.0] < ends[1.0] - 0.1, ends


@pytest.mark.parametrize("lambda_d", [5.0, 2.0])
def test_dip_vae_i_converges_to_its_known_fixed_point(lambda_d):
    # KL + lambda_od sum_{i!=j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2 over mu (DIP-VAE-I, biased batch covariance C):
    # d/dmu = mu (I + 4 lambda_od offdiag(C) + 4 lambda_d (diag(C) - I)) / B = 0 at full rank, so the minimum has
    # C = (1 - 1 / (4 lambda_d)) I exactly: decorrelated, and the variance a weighed balance of KL and the diagonal term.
    out = fixed_batch(seed=2, b=64, d=3)
    mu = out["mu"].clone().requires_grad_(True)
    model = tiny_model("dip_vae", dip_type="i", lambda_od=2.0, lambda_d=lambda_d, latent_dim=3)
    opt = torch.optim.LBFGS([mu], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        reg, _ = model.regularisation({"mu": mu, "logvar": out["logvar"], "z": mu}, 0)
        reg.backward()
        return reg

    opt.step(closure)
    cov = np.cov(mu.detach().numpy(), rowvar=False, bias=True)
    assert np.allclose(cov, (1 - 1 / (4 * lambda_d)) * np.eye(3), atol=1e-5), cov


@pytest.mark.parametrize("mean_tc", ["gaussian", "kde"])
def test_rtc_vae_penalty_lowers_the_mean_code_tc(mean_tc):
    # Known answer for lambda_t = 0 (and beta = 1): the regulariser is the KL, whose gradient in mu is mu / B, so gradient
    # descent only rescales the means and their correlation (their Gaussian TC) stays exactly as it was.
    # Measured: start 1.46 nats; lambda_t = 5 ends at 0.24 (gaussian) and 0.36 (kde).
    out = fixed_batch(seed=3, b=48)
    start = ref_gaussian_mean_tc(as_numpy(out)["mu"], 0.0)
    ends = {}
    for lambda_t in (0.0, 5.0):
        model = tiny_model("rtc_vae", beta=1.0, lambda_t=lambda_t, mean_tc=mean_tc, dataset_size=N)
        model.noise = torch.Generator().manual_seed(0)
        ends[lambda_t] = ref_gaussian_mean_tc(optimise_regulariser(model, out, steps=100, lr=0.1)["mu"], 0.0)
    assert ends[0.0] == pytest.approx(start, abs=1e-9)
    assert ends[5.0] < 0.3 * start, ends


def test_factor_vae_discriminator_learns_the_tc_of_correlated_codes():
    # z ~ N(0, [[1, rho], [rho, 1]]): TC = -1/2 log(1 - rho^2) = 0.83 nats at rho = 0.9. Trained on joint vs
    # permuted samples, the discriminator's mean logit on joint samples estimates it, and the VAE's TC term reads it.
    rho = 0.9
    torch.manual_seed(0)
    model = tiny_model("factor_vae", latent_dim=2, gamma=1.0, disc_width=32, disc_depth=2, disc_lr=1e-3)
    model.noise = torch.Generator().manual_seed(0)
    g = torch.Generator().manual_seed(1)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    for _ in range(300):
        logs = model.auxiliary_step({"z": torch.randn(256, 2, generator=g) @ chol.T})
    assert logs["disc_loss"] < 0.6  # log 2 = 0.69 is chance
    z = torch.randn(2000, 2, generator=g) @ chol.T
    tc_joint = model.regularisation({"z": z, "mu": z, "logvar": torch.zeros_like(z)}, 0)[1]["tc_disc"]
    indep = torch.randn(2000, 2, generator=g)
    tc_indep = model.regularisation({"z": indep, "mu": indep, "logvar": torch.zeros_like(indep)}, 0)[1]["tc_disc"]
    assert tc_joint == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.3)
    assert tc_indep < 0.0 < tc_joint


def test_every_registered_model_is_covered():
    covered = {"vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae", "rtc_vae"}
    assert set(MODELS) == covered, f"new model(s) {set(MODELS) - covered}: add a test of its regulariser here"
