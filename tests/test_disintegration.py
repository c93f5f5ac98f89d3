import json
import math

import numpy as np
import pytest

from mtc_core.estimators import tc_knn
from mtc_core.metrics.disintegration import (
    carried,
    discretize,
    disintegration_report,
    factor_summary,
    latents_per_factor,
    mi_matrix,
    noise_floor,
    split_ratio,
    synthetic_split,
)


def peer_histogram_discretize(target, num_bins):
    """disentanglement_lib utils `_histogram_discretize` (codes x points)."""
    out = np.zeros_like(target)
    for i in range(target.shape[0]):
        out[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return out


def test_discretize_matches_disentanglement_lib(rng):
    codes = rng.standard_normal((300, 4)) * [1, 10, 0.1, 5]
    got = discretize(codes, num_bins=7)
    np.testing.assert_array_equal(got, peer_histogram_discretize(codes.T, 7).T)
    assert got.min() == 1 and got.max() == 7 and got.dtype.kind == "i"


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_synthetic_split_has_no_tc_but_a_split_factor(noise):
    codes, factors = synthetic_split(10_000, m=8, size=32, noise=noise, rng=0)
    assert codes.shape == (10_000, 4) and factors.shape == (10_000, 3)
    assert abs(tc_knn(codes)) < 0.05
    report = disintegration_report(codes, factors, factor_names=["position", "a", "b"])
    json.dumps(report)
    m = np.array(report["mi_matrix"])
    # u // 8 carries log 4 of u's log 32 nats, u % 8 the other log 8
    assert m[0, 0] == pytest.approx(math.log(4) / math.log(32), abs=0.02)
    assert m[0, 1] == pytest.approx(math.log(8) / math.log(32), abs=0.02)
    assert report["latents_per_factor"] == [2, 1, 1]
    assert report["split_ratio"][0] == pytest.approx(0.4, abs=0.03)
    assert max(report["split_ratio"][1:]) < 0.05
    assert report["best_latent"] == [1, 2, 3]


def test_permuted_factors_are_not_split(rng):
    factors = rng.integers(0, 10, size=(10_000, 4))
    codes = factors[:, [2, 0, 3, 1]] * 1.5 + 3.0
    m = mi_matrix(codes, factors)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m[[0, 1, 2, 3], [1, 3, 0, 2]], 1.0, atol=1e-12)
    np.testing.assert_array_equal(latents_per_factor(m), [1, 1, 1, 1])
    assert split_ratio(m).max() < 0.02  # plug-in MI bias of independent pairs, ~81 / (2N) nats each


def test_matrix_helpers_on_known_matrices():
    m = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(latents_per_factor(m, tau=0.1), [2, 1, 0])
    np.testing.assert_allclose(split_ratio(m), [0.5, 0.1, 0.0])


def test_bad_input_raises(rng):
    codes, factors = rng.standard_normal((50, 3)), rng.integers(0, 3, size=(50, 2))
    constant = factors.copy()
    constant[:, 1] = 4
    with pytest.raises(ValueError, match="factor 'shape'.*constant"):
        disintegration_report(codes, constant, factor_names=["colour", "shape"])
    with pytest.raises(ValueError, match="factor '1'.*constant"):
        mi_matrix(codes, constant)
    with pytest.raises(ValueError, match="different numbers of points"):
        mi_matrix(codes, factors[:40])
    with pytest.raises(ValueError, match="NaN"):
        mi_matrix(np.where(codes > 1, np.inf, codes), factors)
    with pytest.raises(ValueError, match="factor names"):
        disintegration_report(codes, factors, factor_names=["one"])
    with pytest.raises(ValueError, match="at least 2 points"):
        discretize(codes[:1])
    with pytest.raises(ValueError, match="num_bins"):
        discretize(codes, num_bins=0)
    with pytest.raises(ValueError, match="tau"):
        latents_per_factor(np.ones((2, 2)), tau=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        split_ratio(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        split_ratio(np.ones(3))
    with pytest.raises(ValueError, match="m >= 2 dividing size"):
        synthetic_split(100, m=5, size=32)
    with pytest.raises(ValueError, match="noise"):
        synthetic_split(100, noise=-1.0)


def test_a_factor_no_latent_reaches_is_carried_by_none():
    m = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.05, 0.04, 0.0]])
    summary = factor_summary(m, tau=0.1)
    assert summary["carried"] == [True, True, False]
    assert summary["split_ratio"][:2] == pytest.approx([0.5, 0.1]) and summary["split_ratio"][2] is None
    assert summary["best_latent"] == [0, 0, None]
    assert summary["best_m"] == pytest.approx([0.5, 0.9, 0.05])
    # a floor above tau raises that factor's threshold: 0.5 no longer reaches 0.6
    floor = np.array([0.6, 0.0, 0.0])
    np.testing.assert_array_equal(latents_per_factor(m, 0.1, floor), [0, 1, 0])
    np.testing.assert_array_equal(carried(m, 0.1, floor), [False, True, False])
    assert factor_summary(m, 0.1, floor)["threshold"] == pytest.approx([0.6, 0.1, 0.1])
    with pytest.raises(ValueError, match="noise floor"):
        latents_per_factor(m, 0.1, np.zeros(2))


def test_noise_floor_is_twice_the_plug_in_bias(rng):
    """Continuous codes independent of a 12-class factor: the plug-in MI over 20 bins is biased by about
    (20 - 1)(12 - 1) / (2N) nats (Miller-Madow), so the floor is about twice that over H(v) = log 12."""
    n = 5_000
    codes, factors = rng.standard_normal((n, 4)), rng.integers(0, 12, size=(n, 1))
    expected = 2 * 19 * 11 / (2 * n) / math.log(12)
    assert noise_floor(codes, factors)[0] == pytest.approx(expected, rel=0.2)


def test_codes_independent_of_a_factor_carry_it_nowhere(rng):
    """Two factors coded by a latent each, a third independent of every latent: it is carried by no latent, gets no
    split ratio and no best latent, even at a tau below the plug-in bias (the noise floor holds the line)."""
    factors = rng.integers(0, 12, size=(5_000, 3))
    codes = np.column_stack([factors[:, 0] + 0.1 * rng.standard_normal(5_000), factors[:, 1] * 2.0, rng.standard_normal(5_000)])
    for tau in (0.1, 0.001):
        report = disintegration_report(codes, factors, factor_names=["a", "b", "unseen"], tau=tau)
        json.dumps(report)
        assert report["carried"] == [True, True, False]
        assert report["latents_per_factor"][2] == 0
        assert report["split_ratio"][2] is None and report["best_latent"][2] is None
        assert report["best_latent"][:2] == [0, 1]
    assert max(np.array(report["mi_matrix"])[2]) < report["noise_floor"][2]  # what the floor is for
    assert latents_per_factor(np.array(report["mi_matrix"]), 0.001)[2] > 0  # tau alone would count noise
