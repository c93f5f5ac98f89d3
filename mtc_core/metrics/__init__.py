"""Disentanglement metrics: pure functions on arrays [points, dims], values as disentanglement_lib.

The FactorVAE and BetaVAE scores intervene on the factors, so they take an `encode`
function and a dataset instead of arrays.
"""

from mtc_core.metrics.beta_vae import beta_vae_score
from mtc_core.metrics.dci import dci
from mtc_core.metrics.disintegration import latents_per_factor, mi_matrix, split_ratio
from mtc_core.metrics.factor_vae import factor_vae_score
from mtc_core.metrics.mig import mig
from mtc_core.metrics.modularity import modularity_explicitness
from mtc_core.metrics.sap import sap
from mtc_core.metrics.unsupervised import unsupervised
from mtc_core.metrics.utils import discrete_entropy, discrete_mutual_info, discretize

__all__ = [
    "beta_vae_score",
    "dci",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "factor_vae_score",
    "latents_per_factor",
    "mi_matrix",
    "mig",
    "modularity_explicitness",
    "sap",
    "split_ratio",
    "unsupervised",
]
