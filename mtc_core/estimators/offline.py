"""Dataset-level TC estimators (numpy or tensor in, float out), in nats with every constant kept.

The Gaussian TC of a covariance, the Monte-Carlo TC of the aggregated posterior, and a k-nearest-neighbour
TC (Kraskov, Stoegbauer & Grassberger 2004). Conventions follow disentanglement_lib
(`unsupervised_metrics.py`) where it defines the same quantity.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma, ndtri

from mtc_core.estimators.minibatch import LOG_2PI
from mtc_core.estimators.sampling import sampled_codes


def validate_points(x, name: str = "codes", min_points: int = 2, keep_float32: bool = False) -> np.ndarray:
    """`x[N, D]` (array or tensor) -> float64 array (float32 kept if asked), or ValueError naming what is wrong.

    Real numbers only: complex values are refused, not cast (numpy would drop the imaginary part silently)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bfloat16
    try:
        x = np.asarray(x)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name} is not a rectangular array ({e})") from None
    if x.dtype.kind not in "biuf":
        what = "complex numbers" if x.dtype.kind == "c" else f"dtype {x.dtype}"
        raise ValueError(f"{name} must hold real numbers, got {what}")
    if not (keep_float32 and x.dtype == np.float32):
        x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [points, dims], got shape {x.shape}")
    if x.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got {x.shape[0]}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no dimensions (D = 0)")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _validate_cov(cov) -> np.ndarray:
    if isinstance(cov, torch.Tensor):
        cov = cov.detach().cpu()
        cov = (cov.float() if cov.dtype == torch.bfloat16 else cov).numpy()
    cov = np.asarray(cov)
    if cov.dtype.kind not in "biuf":
        raise ValueError(f"covariance must hold real numbers, got {'complex numbers' if cov.dtype.kind == 'c' else f'dtype {cov.dtype}'}")
    cov = cov.astype(np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise ValueError(f"covariance must be a non-empty square matrix, got shape {cov.shape}")
    if not np.isfinite(cov).all():
        raise ValueError("covariance contains NaN or inf")
    scale = np.abs(np.diag(cov)).max()
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12 * scale):
        raise ValueError("covariance is not symmetric")
    if np.linalg.eigvalsh(cov).min() < -1e-10 * scale:
        raise ValueError("covariance is not positive semi-definite")
    return cov


def drop_constant_dims(codes) -> tuple[np.ndarray, list[int]]:
    """`codes[N, D] -> (codes[N, D'], dropped)`: remove exactly constant dimensions, returning their indices.

    A constant latent makes the Gaussian TC undefined (log 0; disentanglement_lib returns
    inf or NaN); a constant variable is independent of everything, so dropping it is
    the honest way to compute TC over the rest, as long as the caller reports it.
    """
    codes = validate_points(codes)
    constant = np.all(codes == codes[:1], axis=0)
    return codes[:, ~constant], [int(j) for j in np.flatnonzero(constant)]


def gaussian_tc(cov) -> float:
    """`gaussian_tc(cov[D, D]) -> float`: TC of N(0, C) = 1/2 (sum_j log C_jj - log det C) = -1/2 log det R.

    disentanglement_lib's `gaussian_total_correlation`, in float64 with slogdet.
    A zero-variance dimension raises ValueError naming it (see `drop_constant_dims`);
    a singular C with positive variances (a latent that is an exact linear copy of
    others) has infinite TC and returns inf.
    """
    cov = _validate_cov(cov)
    diag = np.diag(cov)
    if (diag <= 0).any():
        raise ValueError(f"dimension {int(np.flatnonzero(diag <= 0)[0])} has zero variance: Gaussian TC is undefined")
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return math.inf
    return float(0.5 * (np.log(diag).sum() - logdet))


def log_det_correlation(cov) -> float:
    """log det R of the correlation matrix R of `cov[D, D]` (positive variances): 0 for fewer than 2 dims, -inf when
    R is singular. The Gaussian TC is -1/2 of it (`gaussian_tc`); the active/passive split combines three of them."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape[0] < 2:
        return 0.0
    sd = np.sqrt(np.diag(cov))
    sign, logdet = np.linalg.slogdet(cov / np.outer(sd, sd))
    return float(logdet) if sign > 0 else -math.inf


def torch_covariance(x: torch.Tensor) -> torch.Tensor:
    """`x[..., N, D]` -> covariance `[..., D, D]` (ddof 1, as np.cov), batched over leading dims, in x's dtype and device."""
    centred = x - x.mean(dim=-2, keepdim=True)
    return centred.transpose(-1, -2) @ centred / (x.shape[-2] - 1)


def torch_log_det_correlation(cov: torch.Tensor) -> torch.Tensor:
    """`log_det_correlation` of `cov[..., D, D]` in torch, batched over leading dims (-inf where R is singular; 0 for
    D < 2): the same log det R on the covariance's device, to float tolerance."""
    if cov.shape[-1] < 2:
        return torch.zeros(cov.shape[:-2], dtype=cov.dtype, device=cov.device)
    sd = torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1))
    sign, logdet = torch.linalg.slogdet(cov / (sd[..., :, None] * sd[..., None, :]))
    return torch.where(sign > 0, logdet, torch.full_like(logdet, -math.inf))


def gaussian_tc_bias(n: int, d: int) -> float:
    """E[plug-in Gaussian TC] - TC for n Gaussian points in d dims, whatever their correlation R (nats, >= 0).

    The sample covariance of n Gaussian points is Wishart with n - 1 degrees of freedom, so
    E[log det S] = log det C + sum_{i=1..d} psi((n - i) / 2) + d log(2 / (n - 1)) and E[log S_jj] = log C_jj +
    psi((n - 1) / 2) + log(2 / (n - 1)); the plug-in TC = -1/2 log det R_hat therefore overshoots by
    1/2 sum_{i=1..d} [psi((n - 1) / 2) - psi((n - i) / 2)], about d (d - 1) / (4 n) (docs/design.md, "Reading a TC
    estimate"). Exact for Gaussian codes; 0 for fewer than 2 dims."""
    if d < 2:
        return 0.0
    if n <= d:
        raise ValueError(f"the Gaussian TC of {d} dims needs more than {d} points, got {n}")
    from scipy.special import digamma  # here: scipy.special is slow to import and most callers never need it

    i = np.arange(1, d + 1)
    return float(0.5 * np.sum(digamma((n - 1) / 2) - digamma((n - i) / 2)))


def gaussian_wasserstein_correlation(cov, normalize: bool = False) -> float:
    """`gaussian_wasserstein_correlation(cov[D, D], normalize=False) -> float`.

    Squared 2-Wasserstein distance between N(0, C) and N(0, diag C), as
    disentanglement_lib: 2 tr C - 2 tr sqrtm(C * diag(C)[:, None]); `normalize`
    divides by tr C (its `gaussian_wasserstein_correlation_norm`).
    """
    cov = _validate_cov(cov)
    # The distance is 1-homogeneous in C: it is computed on C / 2^k (largest variance near 1) and scaled back
    # exactly, so that C * diag C cannot overflow for variances near 1e308 (it returned -inf) or underflow.
    exponent = int(np.frexp(np.abs(np.diag(cov)).max())[1])
    cov = np.ldexp(cov, -exponent)
    total = float(np.sum(np.diag(cov)))
    if normalize and total <= 0:
        raise ValueError("covariance has zero trace: the normalised Wasserstein correlation is undefined")
    sqrtm = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    score = float(2 * total - 2 * np.trace(sqrtm).real)
    if normalize:
        return score / total
    with np.errstate(over="ignore"):
        score = float(np.ldexp(score, exponent))
    if not math.isfinite(score):
        raise ValueError(f"the Wasserstein correlation overflows float64 (variances up to {np.ldexp(np.diag(cov).max(), exponent):.3g})")
    return score


def _validate_posterior(mu, logvar) -> tuple[np.ndarray, np.ndarray]:
    mu, logvar = validate_points(mu, "mu"), validate_points(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {mu.shape} and {logvar.shape}")
    return mu, logvar


def sampled_cov(mu, logvar) -> np.ndarray:
    """`sampled_cov(mu[N, D], logvar[N, D]) -> cov[D, D]` of the sampled codes z = mu + exp(logvar / 2) eps.

    Law of total covariance: Cov(z) = Cov(mu) + E_x diag sigma^2(x), with np.cov's ddof=1.
    """
    mu, logvar = _validate_posterior(mu, logvar)
    with np.errstate(over="ignore", invalid="ignore"):
        cov = np.cov(mu, rowvar=False, ddof=1).reshape(mu.shape[1], mu.shape[1]) + np.diag(np.exp(logvar).mean(0))
    if not np.isfinite(cov).all():
        raise ValueError(f"the covariance of the sampled codes overflows float64 (|mu| up to {np.abs(mu).max():.3g}, logvar up to "
                         f"{logvar.max():.3g}): rescale the codes")
    return cov


def tc_dataset(mu, logvar, num_samples: int = 10_000, rng=None, chunk_size: int | None = None) -> float:
    """`tc_dataset(mu[N, D], logvar[N, D], num_samples) -> float`: Monte-Carlo TC of the aggregated posterior.

    Draws z ~ q(z|x_i) for `num_samples` random i and averages log q(z) - sum_j log q(z_j),
    with q(z) = 1/N sum_n q(z|x_n) over all N encodings (and likewise per dimension),
    as in Chen et al. 2018's evaluation of the full-dataset TC. Consistent as N grows;
    for finite N it is the TC of the N-component mixture itself. Runs in float64 torch
    on the inputs' device (tensors on CUDA stay there; numpy arrays use the CPU, where
    the cost is about 1.7 ns x samples x N x D on one core: N = 10k, D = 64, 3,000 samples ~ 10 s).
    The densities are computed in cache-sized [D, samples, components] blocks (`_mixture_tc_sum`);
    `chunk_size` sets the samples per block. `rng`: seed or np.random.Generator.
    """
    device = mu.device if isinstance(mu, torch.Tensor) else torch.device("cpu")
    mu_np, logvar_np = _validate_posterior(mu, logvar)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    n, d = mu_np.shape
    rng = np.random.default_rng(rng)
    idx = rng.choice(n, size=num_samples, replace=num_samples > n)
    eps = rng.standard_normal((num_samples, d))
    mu_t = torch.as_tensor(mu_np, device=device)
    logvar_t = torch.as_tensor(logvar_np, device=device)
    idx_t = torch.as_tensor(idx, device=device)
    z = sampled_codes(mu_t[idx_t], logvar_t[idx_t], torch.as_tensor(eps, device=device))
    total = _mixture_tc_sum(z, mu_t, logvar_t, chunk_size)
    value = float(total) / num_samples
    if not math.isfinite(value):
        raise ValueError(f"the Monte-Carlo TC is not finite ({value}): logvar spans [{logvar_np.min():.3g}, {logvar_np.max():.3g}] and |mu| "
                         f"reaches {np.abs(mu_np).max():.3g}; posterior variances exp(logvar) that under- or overflow float64 "
                         "(|logvar| beyond ~700) make the densities infinite")
    return value


MC_BLOCK = 2**16  # elements of one [D, samples, components] block of log densities: cache-sized (0.5 MB)
MC_COMPONENTS = 4096  # mixture components per block; their log-sum-exps are combined exactly across blocks


def _mixture_tc_sum(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """sum over the samples z[S, D] of log q(z) - sum_j log q(z_j), q the mixture of N(mu_n, diag exp(logvar_n)), plus
    (D - 1) log N per sample (the 1/N of each mixture: log q = logsumexp - log N). Blocks of about MC_BLOCK elements
    stay in the cache: 5x faster on a CPU than whole [D, chunk, N] slabs of 2e7 elements (bench/RESULTS.md, "evaluate
    at scale"); the per-block log-sum-exps are merged with logaddexp, equal to one logsumexp up to rounding."""
    n, d = mu.shape
    on_cpu = mu.device.type == "cpu"  # a GPU wants large blocks (few kernel launches): 2e7 elements, all components
    components = min(n, MC_COMPONENTS) if on_cpu else n
    chunk = chunk_size or max(1, (MC_BLOCK if on_cpu else int(2e7)) // (d * components))
    # [D, 1, N] layouts so each block is [D, chunk, components], reduced along its contiguous last axis; the square is
    # taken of the difference (not expanded) so confident posteriors lose no precision
    mu_d, inv_std = mu.T[:, None, :], torch.exp(-logvar / 2).T[:, None, :]
    const = -0.5 * (LOG_2PI + logvar).T[:, None, :]
    total = torch.zeros((), dtype=torch.float64, device=mu.device)
    with torch.no_grad():
        for start in range(0, z.shape[0], chunk):
            zc = z[start : start + chunk].T[:, :, None]
            joint = marginal = None
            for low in range(0, n, components):
                part = slice(low, low + components)
                log_q = zc - mu_d[:, :, part]
                log_q.mul_(inv_std[:, :, part]).square_().mul_(-0.5).add_(const[:, :, part])  # log N(z_j; mu_nj, var_nj)
                j, m = torch.logsumexp(log_q.sum(0), dim=1), torch.logsumexp(log_q, dim=2)
                joint, marginal = (j, m) if joint is None else (torch.logaddexp(joint, j), torch.logaddexp(marginal, m))
            total += (joint - marginal.sum(0)).sum() + (d - 1) * math.log(n) * zc.shape[1]
    return total


def _normal_scores(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copula transform: ranks -> standard-normal quantiles, ties broken at random.

    TC is invariant to monotone maps of each dimension, so this loses nothing and
    removes heavy tails and bounded supports, where k-NN estimators are weakest.
    Random tie-breaking turns a discrete dimension into disjoint intervals with
    independent positions inside them, so discrete codes get their discrete TC.
    """
    n = x.shape[0]
    scores = np.empty_like(x)
    grid = ndtri(np.arange(1, n + 1) / (n + 1))
    for j in range(x.shape[1]):
        order = np.lexsort((rng.random(n), x[:, j]))
        scores[order, j] = grid
    return scores


def _ksg_tc(x: np.ndarray, k: int) -> float:
    """KSG multi-information, `x[N, D] -> float`: Kraskov, Stoegbauer & Grassberger 2004 (Phys. Rev. E 69,
    066138, https://arxiv.org/abs/cond-mat/0305641), first estimator in its m-variable form.

    TC = psi(k) + (D - 1) psi(N) - < sum_j psi(n_j + 1) >, where eps_i is the max-norm
    distance to the k-th neighbour in the joint space and n_j counts points strictly
    within eps_i along dimension j: Kozachenko-Leonenko entropies evaluated with the
    same radius in the joint and the marginals, so their biases largely cancel.
    """
    n = x.shape[0]
    eps = cKDTree(x).query(x, k=k + 1, p=np.inf)[0][:, -1]
    radius = np.nextafter(eps, 0)  # strict inequality, as sklearn's KSG
    marginal = 0.0
    for j in range(x.shape[1]):
        s = np.sort(x[:, j])
        count = np.searchsorted(s, x[:, j] + radius, "right") - np.searchsorted(s, x[:, j] - radius, "left") - 1
        marginal += digamma(count + 1).mean()
    return float(digamma(k) + (x.shape[1] - 1) * digamma(n) - marginal)


def tc_knn(samples, k: int = 3, *, references: int = 2, rng=0) -> float:
    """`tc_knn(samples[N, D], k=3) -> float`: non-parametric TC (nats).

    1. Exactly constant dimensions are dropped (independent of everything; fewer than
       two left gives 0.0). 2. Each dimension goes to normal scores (`_normal_scores`).
    3. The KSG estimator (`_ksg_tc`) is applied, and its bias is removed with Gaussian
       surrogates (our construction, not from the KSG paper):
       TC = KSG(x) - mean_r [KSG(y_r) - TC_G(Corr x)], y_r ~ N(0, Corr x) with the same N.
       KSG underestimates strong dependence in many dimensions (-0.1 to -0.3 nats for a
       10-D Gaussian with TC ~ 1.5 at N = 10k); that bias depends mostly on N, D and the
       correlations, so the surrogates measure it against their own exact TC, TC_G(Corr x).
       (Report version 2 subtracted TC_G(Corr y_r), the surrogates' *sample* TC, instead; that
       adds the plug-in's own bias, about D(D - 1) / 4N, to the result: +0.06 nats at
       N = 400, D = 10, most of the +0.08 it read on independent codes.) The result is unbiased for Gaussian
       copulas (any monotone map of a Gaussian) and keeps KSG's sensitivity to nonlinear
       dependence; for other copulas the correction is an approximation (-0.03 nats on a
       2-D uniform-plus-uniform-noise pair with TC 0.94). `references=0` gives plain KSG
       on normal scores. A pairwise MI above ~log N cannot be resolved by any k-NN method.
    Cost: (1 + references) KD-tree queries, about a second for N = 10k, D = 10.
    `rng` (seed or Generator) drives tie-breaking and the surrogates; the default is fixed
    so repeated calls agree.
    """
    x = validate_points(samples, "samples")
    if not 1 <= k < x.shape[0] - 1:
        raise ValueError(f"k must be in [1, N - 2] = [1, {x.shape[0] - 2}], got {k}")
    if references < 0:
        raise ValueError(f"references must be >= 0, got {references}")
    x = x[:, ~np.all(x == x[:1], axis=0)]
    if x.shape[1] < 2:
        return 0.0
    if references and x.shape[0] <= x.shape[1]:  # the surrogates' sample correlation is singular: TC_G = inf
        raise ValueError(f"the Gaussian-surrogate bias correction needs more points than varying dimensions (N = {x.shape[0]}, "
                         f"D = {x.shape[1]}); pass references=0 for plain KSG")
    rng = np.random.default_rng(rng)
    scores = _normal_scores(x, rng)
    estimate = _ksg_tc(scores, k)
    if references:
        corr = np.corrcoef(scores, rowvar=False)
        # eigen square root rather than Cholesky: exact copies of a dimension make Corr singular
        vals, vecs = np.linalg.eigh(corr)
        root = vecs * np.sqrt(np.clip(vals, 1e-12, None))
        truth = gaussian_tc(root @ root.T)  # the surrogates' exact TC (Corr x, its clipped eigenvalues included)
        bias = []
        for _ in range(references):
            y = rng.standard_normal(x.shape) @ root.T
            bias.append(_ksg_tc(y, k) - truth)
        estimate -= float(np.mean(bias))
    return estimate
