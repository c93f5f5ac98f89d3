"""Minibatch TC estimators (torch, differentiable), in nats with every constant kept.

Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs" (https://arxiv.org/abs/1802.04942),
Sec. 3 / App. C.1 (MWS and MSS) on sampled codes, and the mean-code TC penalties of RTC-VAE (docs/design.md, "RTC-VAE").

Inputs are real floating-point tensors (anything else is a ValueError). Outside a training step they must be
finite and so is the result, or ValueError names the problem. Inside one (autograd records the inputs) they
are not inspected: a NaN reaches the loss, where the trainer stops the run as diverged, and the step gets no
extra device synchronisation.
"""

from __future__ import annotations

import math

import torch
from scipy.special import digamma

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar)); broadcasts."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def _log_importance_weights(batch_size: int, dataset_size: int, estimator: str, like: torch.Tensor) -> torch.Tensor:
    """log w[i, j], the weight of q(z_i | x_j) in the estimate of q(z_i).

    mws: w = 1 / (N B) everywhere, Chen et al.'s published estimator (paper App. C.1
    and their code). These weights sum to 1 / N per row, so where posteriors overlap
    (the early, unconverged regime) log q(z) is shifted by -log N and the TC by
    +(D - 1) log N nats; gradients are unaffected. `tc_mws` keeps the published
    convention (it is what beta-TCVAE implementations optimise and what
    disentanglement_lib's value plus (D - 1) log(B N) gives); `tc_mss`, whose rows sum
    to one, is the consistent estimate the trainer logs.
    mss: the stratified weights of Chen et al. App. C.1 (1/N on the diagonal,
    (N - M) / (N M) on one off-diagonal per row, 1/M elsewhere, M = B - 1); each
    row sums to one. (Their reference code fills column 0 instead of the diagonal:
    rtqichen/beta-tcvae PR #1; fixed here.)
    """
    n, b = dataset_size, batch_size
    if estimator == "mws":
        return torch.full((b, b), -math.log(n * b), dtype=like.dtype, device=like.device)
    if estimator == "mss":
        if b < 3:
            raise ValueError(f"the mss estimator needs a batch of at least 3 points, got {b}")
        m = b - 1
        w = torch.full((b, b), 1.0 / m, dtype=like.dtype, device=like.device)
        # z_i was drawn from x_i, so 1/N belongs on the diagonal; the stride-(M+1) slicing of Chen et al.'s
        # reference code puts it in column 0 instead (rtqichen/beta-tcvae PR #1). Rows then sum to
        # 1/N + (N - M)/(N M) + (M - 1)/M = 1.
        rows = torch.arange(b, device=like.device)
        w[rows, rows] = 1.0 / n
        w[rows, (rows + 1) % b] = (n - m) / (n * m)
        return w.log()
    raise ValueError(f"unknown minibatch estimator {estimator!r}; expected 'mws' or 'mss'")


def _in_training(*tensors: torch.Tensor) -> bool:
    """Autograd records these inputs: a training step, whose NaN the trainer catches (see the module docstring)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _check_real(**tensors: torch.Tensor) -> None:
    """Real floating-point tensors, and finite ones outside a training step; ValueError naming the first that is not."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must hold real floating-point numbers, got {t.dtype}")
    if not _in_training(*tensors.values()):
        for name, t in tensors.items():
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or inf")


def _finite(value: torch.Tensor, what: str, *inputs: torch.Tensor, logvar: torch.Tensor | None = None) -> torch.Tensor:
    """`value`, or ValueError when it is not finite outside a training step (finite inputs can still overflow)."""
    if not _in_training(*inputs) and not torch.isfinite(value).all():
        hint = "" if logvar is None else (f": logvar spans [{logvar.min().item():.3g}, {logvar.max().item():.3g}], and a posterior variance "
                                          "exp(logvar) that under- or overflows (|logvar| beyond ~80 in float32, ~700 in float64) "
                                          "makes the densities infinite")
        raise ValueError(f"the {what} is not finite ({value.item()}){hint}")
    return value


def _check_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> None:
    _check_real(z=z, mu=mu, logvar=logvar)
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int):
        raise ValueError(f"dataset_size must be an integer, got {dataset_size!r}")
    if z.ndim != 2 or mu.shape != z.shape or logvar.shape != z.shape:
        shapes = f"{tuple(z.shape)}, {tuple(mu.shape)}, {tuple(logvar.shape)}"
        raise ValueError(f"z, mu, logvar must share one [B, D] shape, got {shapes}")
    if z.shape[0] < 2:
        raise ValueError(f"need at least 2 points in the batch, got {z.shape[0]}")
    if z.shape[1] == 0:
        raise ValueError("need at least one latent dimension (D = 0)")
    if dataset_size < z.shape[0]:
        raise ValueError(f"dataset_size ({dataset_size}) must be at least the batch size ({z.shape[0]})")


def minibatch_log_densities(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int, estimator: str = "mws"
) -> dict[str, torch.Tensor]:
    """Per-point log densities for the beta-TCVAE decomposition (Chen et al. Eq. 2).

    z, mu, logvar: [B, D]. Returns tensors [B]: log q(z|x), log q(z),
    log prod_j q(z_j), log p(z) with p = N(0, I).
    """
    _check_posterior(z, mu, logvar, dataset_size)
    batch = z.shape[0]
    log_qz_given_xj = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # [B, B, D]
    log_w = _log_importance_weights(batch, dataset_size, estimator, z)  # [B, B]
    log_qz = torch.logsumexp(log_w + log_qz_given_xj.sum(2), dim=1)
    log_prod_qzj = torch.logsumexp(log_w[:, :, None] + log_qz_given_xj, dim=1).sum(1)
    return {
        "log_qz_given_x": gaussian_log_density(z, mu, logvar).sum(1),
        "log_qz": log_qz,
        "log_prod_qzj": log_prod_qzj,
        "log_pz": gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1),
    }


def tc_mws(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """Minibatch weighted sampling TC estimate (nats), differentiable. z, mu, logvar: [B, D].

    Equals disentanglement_lib's `total_correlation` plus (D - 1) log(B N): that library
    drops the log(1 / (B N)) weights. Where posteriors overlap it reads (D - 1) log N
    above the consistent `tc_mss` (see `_log_importance_weights`).
    """
    d = minibatch_log_densities(z, mu, logvar, dataset_size, "mws")
    return _finite((d["log_qz"] - d["log_prod_qzj"]).mean(), "MWS TC estimate", z, mu, logvar, logvar=logvar)


def tc_mss(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """Minibatch stratified sampling TC estimate (nats), differentiable. z, mu, logvar: [B, D]."""
    d = minibatch_log_densities(z, mu, logvar, dataset_size, "mss")
    return _finite((d["log_qz"] - d["log_prod_qzj"]).mean(), "MSS TC estimate", z, mu, logvar, logvar=logvar)


def _check_means(mu: torch.Tensor) -> None:
    _check_real(mu=mu)
    if mu.ndim != 2:
        raise ValueError(f"mean codes must be [B, D], got shape {tuple(mu.shape)}")
    if mu.shape[0] < 2:
        raise ValueError(f"need at least 2 points, got {mu.shape[0]}")
    if mu.shape[1] == 0:
        raise ValueError("need at least one latent dimension (D = 0)")


def _standardise(mu: torch.Tensor) -> torch.Tensor:
    """Columns of mu [B, D] in float64 centred to unit variance (a constant column stays 0).

    Each column is first divided by its largest magnitude, before and after centring, so that neither the
    squares of codes near 1e200 overflow nor those of a passive latent's spread near 1e-200 underflow; the
    scales are constants to autograd, and the result is the same function of mu (standardising ignores scale)."""
    x = mu.double()
    tiny = torch.finfo(torch.float64).tiny
    x = x / x.abs().amax(0, keepdim=True).clamp_min(tiny).detach()
    x = x - x.mean(0, keepdim=True)
    x = x / x.abs().amax(0, keepdim=True).clamp_min(tiny).detach()
    return x / torch.sqrt((x**2).mean(0, keepdim=True) + 1e-24)


def mean_tc_gaussian(mu: torch.Tensor, ridge: float = 1e-4) -> torch.Tensor:
    """Differentiable Gaussian TC of a batch of mean codes, corrected for its small-batch bias:
    -1/2 log det(R + ridge I) + D/2 log(1 + ridge) - E_0[-1/2 log det R].

    mu: [B, D]. R is the batch correlation matrix, computed in float64 from
    standardised codes so that a nearly constant (passive) dimension still
    counts at full weight: TC_G is scale-invariant per dimension (docs/design.md, "Why mean and sampled codes differ").
    The ridge keeps log det finite when B <= D or codes are collinear. A sample
    correlation matrix of independent codes has det R < 1, so the plain value
    reads above 0 (+0.38 nats at B = 64, D = 10; +0.09 at 256); its expectation
    under independence is subtracted (docs/design.md, "Reading a TC estimate": a penalty reads ~0 on
    independent codes at the training batch size). It is a constant for given
    (B, D), so gradients, and every model trained with this penalty, are unchanged.
    """
    _check_means(mu)
    if not 0 <= ridge < math.inf:
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge}")
    x = _standardise(mu)
    corr = x.T @ x / x.shape[0]
    eye = torch.eye(corr.shape[0], dtype=corr.dtype, device=corr.device)
    ridged = corr + ridge * eye
    logdet = torch.linalg.slogdet(ridged).logabsdet
    tc = 0.5 * (torch.log(torch.diagonal(ridged)).sum() - logdet) - gaussian_tc_null_mean(*mu.shape)
    return _finite(tc.to(mu.dtype), "Gaussian mean-TC", mu)


def gaussian_tc_null_mean(batch: int, dims: int) -> float:
    """E[-1/2 log det R] for the sample correlation matrix R of `batch` independent Gaussian points in `dims` dims.

    det R is distributed as a product of independent Beta((B - 1 - i) / 2, i / 2), i = 1..D-1 (the Bartlett
    decomposition of a Wishart matrix), and E log Beta(a, b) = psi(a) - psi(a + b); a test checks it against
    Monte-Carlo batches. Defined for B > D; 0 otherwise (the ridge, not the data, then sets log det R).
    """
    if batch <= dims:
        return 0.0
    return -0.5 * sum(float(digamma((batch - 1 - i) / 2) - digamma((batch - 1) / 2)) for i in range(1, dims))


def _kde_log_joint(x: torch.Tensor, h: float) -> torch.Tensor:
    """Leave-one-out log density of each row of x [B, D] under a Gaussian product kernel of bandwidth h: [B]."""
    b = x.shape[0]
    logvar = torch.full_like(x, 2 * math.log(h))
    log_k = gaussian_log_density(x[:, None, :], x[None, :, :], logvar[None, :, :]).sum(2)  # [B, B]
    mask = torch.where(torch.eye(b, dtype=torch.bool, device=x.device), -math.inf, 0.0).to(x)
    return torch.logsumexp(log_k + mask, dim=1) - math.log(b - 1)


def mean_tc_kde(mu: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Differentiable kernel-density TC of a batch of mean codes (nats), corrected for its small-batch bias.

    mu: [B, D]. Each dimension is standardised; log q(mu) is a leave-one-out Gaussian kernel
    density estimate with Silverman's bandwidth h = (4 / ((D + 2) B))^(1 / (D + 4)). A plain
    KDE of TC = E log q(mu) - sum_j E log q(mu_j) is biased where it is trained (batch 64,
    10 latents: -1.13 +- 0.19 nats on independent codes), because one bandwidth oversmooths
    the joint far more than the marginals. The same estimate on a copy of the batch whose
    columns are permuted independently (same marginals, zero TC, the same bias) is
    subtracted (docs/design.md, "Reading a TC estimate"). The marginal terms of the two are equal (each column holds the
    same values), so TC_hat = mean_i log q(mu_i) - mean_i log q(mu_perm_i). On independent
    codes at B = 64, D = 10 it reads +0.02 +- 0.30 (40 seeds) and it rises with the true TC of
    equicorrelated codes (`bench/estimator_bias.py`). `generator` drives the permutation
    (the model's own noise source in training, so a resumed run draws the same ones).
    """
    _check_means(mu)
    b, dims = mu.shape
    if b < 3:
        raise ValueError(f"the KDE mean-TC needs at least 3 points, got {b}")
    x = _standardise(mu) * math.sqrt((b - 1) / b)  # unit sample variance (ddof 1), as Silverman's rule assumes
    h = (4.0 / ((dims + 2) * b)) ** (1.0 / (dims + 4))
    order = torch.rand(b, dims, generator=generator, device=mu.device).argsort(0)
    permuted = torch.gather(x, 0, order)
    return _finite((_kde_log_joint(x, h).mean() - _kde_log_joint(permuted, h).mean()).to(mu.dtype), "KDE mean-TC", mu)
