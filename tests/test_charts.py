"""ui.charts helpers that do not need a running app."""

from ui.charts import short_name


def test_short_name_drops_the_dataset_whatever_its_case():
    assert short_name("beta-TCVAE (beta 6), Shapes3D", "shapes3d") == "beta-TCVAE (beta 6)"
    assert short_name("RTC-VAE (ours, KDE mean-TC, lambda 2), Shapes2D", "shapes2d") == "RTC-VAE (ours, KDE mean-TC, lambda 2)"
    assert short_name("VAE, toy", "toy") == "VAE"
    # only a whole ", <dataset>" part goes: a model setting that starts with the same letters stays
    assert short_name("Custom, toyish", "toy") == "Custom, toyish"
