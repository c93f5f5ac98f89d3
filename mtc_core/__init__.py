"""mtc_core: mean vs sampled total correlation in VAEs (models, estimators, metrics, training).

Never imports streamlit: the app (app.py, pages/, ui/) sits on top of this package.
"""

__version__ = "0.1.0"


def evaluate(model, dataset, **kwargs):
    """All estimators and metrics on the mean and sampled codes of `model` (see mtc_core.evaluation)."""
    from mtc_core.evaluation import evaluate as _evaluate  # deferred: sklearn is slow to import

    return _evaluate(model, dataset, **kwargs)


def analyse_codes(mean, logvar=None, factors=None, **kwargs):
    """Everything `evaluate` reports that needs no encoder, from any VAE's codes (see mtc_core.analysis)."""
    from mtc_core.analysis import analyse_codes as _analyse_codes  # deferred like evaluate

    return _analyse_codes(mean, logvar, factors, **kwargs)
