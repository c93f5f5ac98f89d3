"""mtc_core: mean vs sampled total correlation in VAEs (models, estimators, metrics, training).

Never imports streamlit: the app (app.py, app_pages/, ui/) sits on top of this package.
"""

__version__ = "0.1.0"


def evaluate(model, dataset, **kwargs):
    """All estimators and metrics on the mean and sampled codes of `model` (see mtc_core.evaluation)."""
    from mtc_core.evaluation import evaluate as _evaluate  # deferred: sklearn is slow to import

    return _evaluate(model, dataset, **kwargs)
