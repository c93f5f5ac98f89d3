"""`mtc_core.evaluate`: every estimator and metric on the mean AND the sampled codes of a model.

One JSON-serialisable dict, read by the app, the CLI and the zoo:
{
  "tc":      tc_report.tc_report of the training points: Gaussian and kNN TC of the mean and of the sampled codes
             (same points, same sizes, 95% intervals), the sampled codes' dataset Monte-Carlo TC, and the split of
             the Gaussian TC into active latents, passive latents and what lies between them,
  "mean":    {dropped_latents, gaussian_wasserstein_correlation(_norm), mutual_info_score,
              mig, sap, dci{...}, modularity, explicitness, factor_vae{...}, beta_vae{...}, disintegration{...}},
  "sampled": {the same},
  "activity": {var_mu[D], mean_sigma2[D], kl[D], active_latents},
  "recon": mean Bernoulli NLL of test images (nats),
  "settings": {sizes and seed used}, "seconds": wall time
}
Every TC lives in "tc" only: read it with `evaluation.tc_report.value` / `describe`, so a quantity has one value.
Mean codes are mu(x); sampled codes are mu(x) + exp(logvar / 2) eps (disentanglement_lib's convention).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from mtc_core import estimators, metrics
from mtc_core.data import GroundTruthDataset
from mtc_core.estimators.sampling import draw_sampled_codes
from mtc_core.evaluation import tc_report
from mtc_core.metrics import disintegration
from mtc_core.models import VAE
from mtc_core.runs import json_safe
from mtc_core.visualize.traversal import encode_numpy, latent_activity, model_device

REPRESENTATIONS = ("mean", "sampled")
ENCODE_CHUNK = 4096  # images rendered and encoded at a time by `_sample` (a multiple of encode_numpy's batch of 512)
RECON_IMAGES = 1000  # held-out images the reconstruction is measured on, the only images `evaluate` keeps
FIT_POINTS = 10_000  # training points the DCI and explicitness classifiers are fitted on at most (evaluate's default N)
Progress = Callable[[str, dict], None]  # progress(stage, partial): called after each stage with the results so far


def _teller(progress: Progress | None, result: dict) -> Callable[..., None]:
    """tell(stage, overlay=None): progress(stage, a JSON-safe copy of `result` updated by `overlay`), if given."""
    def tell(stage: str, overlay: dict | None = None) -> None:
        if progress is not None:
            progress(stage, json_safe({**result, **(overlay or {})}))

    return tell


class _SharedEncoder:
    """Encodes each distinct image batch once: the mean and the sampled pass of an intervention
    metric draw the same images (same seed), so the second pass is served from this cache."""

    def __init__(self, model: VAE, seed: int, capacity: int = 4096):
        self.model, self.seed, self.capacity = model, seed, capacity
        self.cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        key = hashlib.blake2b(images.tobytes(), digest_size=16).digest() + str(images.shape).encode()
        if key not in self.cache:
            self.cache[key] = encode_numpy(self.model, images)
            if len(self.cache) > self.capacity:
                self.cache.popitem(last=False)
        return self.cache[key]

    def function(self, representation: str) -> Callable[[np.ndarray], np.ndarray]:
        def encode(images: np.ndarray) -> np.ndarray:
            mu, logvar = self._posterior(images)
            if representation == "mean":
                return mu
            # Noise seeded by the batch content: the same images always get the same sample.
            digest = hashlib.blake2b(mu.tobytes(), digest_size=8).digest()
            rng = np.random.default_rng([self.seed, int.from_bytes(digest, "little")])
            return draw_sampled_codes(mu, logvar, rng)

        return encode


def _sample(dataset: GroundTruthDataset, n: int, rng: np.random.Generator, model: VAE, keep_images: int = 0) -> dict[str, np.ndarray]:
    """n points drawn with `rng`: factors, codes, and the first `keep_images` images. The images are rendered and
    encoded ENCODE_CHUNK at a time (a multiple of encode_numpy's batch, so every batch and value is as if encoded at
    once) and dropped, so memory grows with the codes only."""
    factors = dataset.sample_factors(n, rng)
    mus, logvars, kept = [], [], []
    for start in range(0, n, ENCODE_CHUNK):
        images = dataset.render(factors[start:start + ENCODE_CHUNK])
        mu, logvar = encode_numpy(model, images)
        mus.append(mu)
        logvars.append(logvar)
        if start < keep_images:
            kept.append(images[:keep_images - start])
    mu = np.concatenate(mus) if mus else np.zeros((0, model.config.latent_dim))
    logvar = np.concatenate(logvars) if logvars else np.zeros_like(mu)
    z = draw_sampled_codes(mu, logvar, rng)
    images = np.concatenate(kept) if kept else np.zeros((0, *dataset.image_shape), np.float32)
    return {"factors": factors, "images": images, "mean": mu, "logvar": logvar, "sampled": z}


@torch.no_grad()
def _reconstruction(model: VAE, images: np.ndarray) -> float:
    x = torch.as_tensor(images[:RECON_IMAGES], dtype=torch.float32, device=model_device(model))
    mu, _ = model.encode(x)
    return model.reconstruction(x, model.decode(mu)).item()


def unsupervised_codes(codes: np.ndarray) -> dict:
    """The scores of one representation that need no factors: constant latents, Wasserstein correlation, MI score."""
    kept, dropped = estimators.drop_constant_dims(codes)
    out: dict = {"dropped_latents": dropped}
    if kept.shape[1] >= 2:  # needs two latents that vary
        out.update(metrics.unsupervised(kept))
        del out["gaussian_total_correlation"]  # the same number as tc_report's Gaussian TC: kept in one place
    return out


def representation_metrics(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray, factors_test: np.ndarray,
                   factor_names: tuple[str, ...], dci_mode: str = "fast",
                   after: Callable[[str, dict], None] | None = None) -> dict:
    """The array-level metrics of one representation (no model needed); its TCs come from `tc_report.tc_report`.
    `after(group, out)`, when given, is called after each metric group with the scores so far. The DCI and
    explicitness classifiers are fitted on at most FIT_POINTS training points (a seeded subsample above it; the
    entries then say "fit_points" / "explicitness_fit_points"), so their cost stays bounded as N grows."""
    done = after or (lambda group, out: None)
    out = unsupervised_codes(codes_train)
    done("unsupervised", out)
    out["mig"] = metrics.mig(codes_train, factors_train)
    done("mig", out)
    out["sap"] = metrics.sap(codes_train, factors_train, codes_test, factors_test)
    done("sap", out)
    out["dci"] = metrics.dci(codes_train, factors_train, codes_test, factors_test, mode=dci_mode, fit_points=FIT_POINTS)
    done("dci", out)
    out.update(metrics.modularity_explicitness(codes_train, factors_train, codes_test, factors_test, fit_points=FIT_POINTS))
    done("modularity_explicitness", out)
    out["disintegration"] = disintegration.disintegration_report(codes_train, factors_train, factor_names=list(factor_names))
    done("disintegration", out)
    return out


def encoded_points(model: VAE, dataset: GroundTruthDataset, *, num_train: int = 10_000, num_test: int = 5_000,
                   seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, test): the points `evaluate` scores, drawn as it draws them (one generator seeded by `seed`: the
    training factors, their sampling noise, then the held-out ones). Each a dict of factors [N, K] and the mean,
    logvar and sampled codes [N, D]; "images" holds the first RECON_IMAGES held-out images only (none of the training
    ones): the images are encoded batch by batch and not kept. Saved with `codes_file.save_codes`, `analyse_codes`
    scores them exactly as `evaluate` does."""
    model.eval()
    rng = np.random.default_rng(seed)
    return _sample(dataset, num_train, rng, model), _sample(dataset, num_test, rng, model, keep_images=RECON_IMAGES)


def score_points(train: dict, test: dict | None, factor_names: tuple[str, ...] | None, *, seed: int = 0, dci_mode: str = "fast",
                 dataset_tc_samples: int = 2_000, progress: Progress | None = None, device=None) -> dict:
    """What `evaluate` reports that needs no encoder: {"mean", "sampled", "tc", "activity"} of encoded points.

    train / test: {"mean", "logvar", "sampled": [N, D], "factors": [N, K] or None}. Without factors each
    representation gets only the scores that need none (`unsupervised_codes`) and `test` is not read.
    progress(stage, partial), when given, is called after each stage ("tc", "activity", then "mean: unsupervised",
    "mean: mig", ..., "sampled: disintegration") with a JSON-safe copy of the results so far: the TCs come first,
    since they are what a reader waits for (the metrics take most of the time).
    device: where the TC report's matrix algebra runs (`tc_report.tc_report`; None: numpy on the CPU).
    """
    result: dict = {}
    tell = _teller(progress, result)
    result["tc"] = tc_report.tc_report(train["mean"], train["logvar"], train["sampled"], seed=seed,
                                        dataset_mc_samples=dataset_tc_samples, device=device)
    tell("tc")
    var_mu = train["mean"].var(0, ddof=1)
    result["activity"] = {
        "var_mu": var_mu.tolist(),
        "mean_sigma2": np.exp(train["logvar"]).mean(0).tolist(),
        "kl": latent_activity(train["mean"], train["logvar"]).tolist(),
        "active_latents": len(result["tc"]["active"]),  # at the report's cut (read from the data)
    }
    tell("activity")
    for rep in REPRESENTATIONS:
        if train.get("factors") is None:
            result[rep] = unsupervised_codes(train[rep])
            tell(f"{rep}: unsupervised")
        else:
            result[rep] = representation_metrics(train[rep], train["factors"], test[rep], test["factors"], factor_names, dci_mode,
                                                 after=lambda group, out, rep=rep: tell(f"{rep}: {group}", {rep: out}))
    return {key: result[key] for key in (*REPRESENTATIONS, "tc", "activity")}  # the order stored files have always had


def _gpu(model: VAE) -> torch.device | None:
    """The model's device when it is a GPU (the TC report's matrix algebra runs there), else None (numpy)."""
    device = model_device(model)
    return None if device.type == "cpu" else device


def refresh_tc_report(model: VAE, dataset: GroundTruthDataset, evaluation: dict) -> dict:
    """A stored evaluation whose TC report is of an earlier version (`tc_report.REPORT_VERSION`), with the report
    recomputed on the training points `evaluate` drew for it (its settings' seed and sizes); everything else it holds
    is kept, so the zoo's evaluations follow the report without re-running every metric."""
    settings = evaluation["settings"]
    train = _sample(dataset, settings["num_train"], np.random.default_rng(settings["seed"]), model)  # drawn first, as in evaluate
    tc = tc_report.tc_report(train["mean"], train["logvar"], train["sampled"], seed=settings["seed"],
                             dataset_mc_samples=settings.get("dataset_tc_samples", 2_000), device=_gpu(model))
    return json_safe({**evaluation, "tc": tc, "activity": {**evaluation.get("activity", {}), "active_latents": len(tc["active"])}})


def evaluate(model: VAE, dataset: GroundTruthDataset, *, num_train: int = 10_000, num_test: int = 5_000, seed: int = 0,
             dci_mode: str = "fast", intervention_points: int = 100, intervention_batch: int = 64,
             variance_points: int = 5_000, dataset_tc_samples: int = 2_000, progress: Progress | None = None) -> dict:
    """All estimators and metrics on mean and sampled codes; see the module docstring for the result.

    num_train / num_test: points for the array metrics (defaults: docs/design.md, "Metrics"). The FactorVAE and
    BetaVAE scores encode `intervention_batch` images (BetaVAE: pairs) per point, so they use
    `intervention_points` training points, half as many evaluation points and `variance_points`
    images for FactorVAE's global variances: about 34k encodings, shared by the mean and the
    sampled pass, which keeps one 64x64 model under a minute on a 2-core CPU. Pass 10_000 (and
    10_000 variance points) for the peers' sizes. dci_mode "gbt" is peer-exact but ~70 s per call.
    progress(stage, partial), when given, is called after each stage with a JSON-safe copy of the results so far:
    "encoding", then `score_points`' stages, "mean: factor_vae", "mean: beta_vae", the same for "sampled", "recon".
    """
    t0 = time.perf_counter()
    train, test = encoded_points(model, dataset, num_train=num_train, num_test=num_test, seed=seed)
    if progress is not None:
        progress("encoding", {})
    result = score_points(train, test, dataset.factor_names, seed=seed, dci_mode=dci_mode,
                          dataset_tc_samples=dataset_tc_samples, progress=progress, device=_gpu(model))
    tell = _teller(progress, result)
    shared = _SharedEncoder(model, seed)
    for rep in REPRESENTATIONS:
        encode = shared.function(rep)
        result[rep]["factor_vae"] = metrics.factor_vae_score(
            encode, dataset, batch_size=intervention_batch, num_train=intervention_points,
            num_eval=max(intervention_points // 2, 1), num_variance_estimate=variance_points, seed=seed)
        tell(f"{rep}: factor_vae")
        result[rep]["beta_vae"] = metrics.beta_vae_score(
            encode, dataset, batch_size=intervention_batch, num_train=intervention_points,
            num_eval=max(intervention_points // 2, 1), seed=seed)
        tell(f"{rep}: beta_vae")
    result["recon"] = _reconstruction(model, test["images"])
    tell("recon")
    result["settings"] = {"num_train": num_train, "num_test": num_test, "seed": seed, "dci_mode": dci_mode,
                          "intervention_points": intervention_points, "intervention_batch": intervention_batch,
                          "variance_points": variance_points,
                          "dataset_tc_samples": dataset_tc_samples}
    result["seconds"] = time.perf_counter() - t0
    return json_safe(result)
