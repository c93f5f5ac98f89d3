"""mtc_core.visualize.charts helpers that do not need a running app."""

import pytest

from mtc_core.visualize.charts import _error, extent, short_name


def test_short_name_drops_the_dataset_whatever_its_case():
    assert short_name("beta-TCVAE (beta 6), Shapes3D", "shapes3d") == "beta-TCVAE (beta 6)"
    assert short_name("RTC-VAE (ours, KDE mean-TC, lambda 2), Shapes2D", "shapes2d") == "RTC-VAE (ours, KDE mean-TC, lambda 2)"
    assert short_name("VAE, toy", "toy") == "VAE"
    # only a whole ", <dataset>" part goes: a model setting that starts with the same letters stays
    assert short_name("Custom, toyish", "toy") == "Custom, toyish"


def value(mean, sd=None, ci=None) -> dict:
    return {"mean": mean, "sd": sd, "per_seed": [], "ci": ci}


def test_error_bars_are_the_sd_or_the_single_seeds_interval():
    assert extent(value(1.2, 0.1)) == pytest.approx((1.1, 1.3))
    assert extent(value(0.05, None, ci=(0.04, 0.07))) == (0.04, 0.07)
    assert extent(value(0.05, None, ci=(0.06, 0.07))) == (0.05, 0.07)  # a percentile interval above its estimate
    assert extent(value(None)) is None and extent(value(0.3)) is None
    # plotly's error bar is the same extent around the mean
    bar = _error(value(0.05, None, ci=(0.04, 0.07)))
    assert (bar["arrayminus"][0], bar["array"][0]) == pytest.approx((0.01, 0.02))
    assert _error(value(0.3)) == {"visible": False}
