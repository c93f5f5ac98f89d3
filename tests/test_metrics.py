import math
import signal

import numpy as np
import pytest
import scipy.linalg
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import mutual_info_score
from sklearn.svm import LinearSVC

from mtc_core.metrics import (
    beta_vae_score,
    dci,
    discrete_entropy,
    discrete_mutual_info,
    discretize,
    factor_vae_score,
    mig,
    modularity_explicitness,
    sap,
    unsupervised,
)
from mtc_core.metrics.dci import completeness, disentanglement
from mtc_core.metrics.sap import sap_score_matrix

SIZES = (4, 5, 6)


class FakeDataset:
    """Factor grid SIZES; an 'image' [1, 1, K] holds the factor values."""

    factor_sizes = SIZES
    num_factors = len(SIZES)

    def sample_factors(self, n, rng):
        return rng.integers(0, self.factor_sizes, size=(n, self.num_factors), dtype=np.int64)

    def render(self, factors):
        return np.asarray(factors, dtype=np.float32)[:, None, None, :]


def perfect_encode(images):
    """A scaled, shifted permutation of the factors."""
    return images[:, 0, 0, ::-1] * np.array([2.0, -3.0, 0.5]) + 1.0


def factors_and_codes(n, rng, noise=0.0):
    factors = rng.integers(0, SIZES, size=(n, len(SIZES)))
    codes = perfect_encode(FakeDataset().render(factors)) + noise * rng.standard_normal((n, len(SIZES)))
    return factors, codes


# ------------------------------------------------------------------ discretisation and MI


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_discretize_is_disentanglement_lib_histogram(rng, dtype):
    codes = rng.standard_normal((500, 4)).astype(dtype)
    codes[:, 3] = 2.5  # a constant latent: np.histogram widens the range by 0.5
    expected = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) for c in codes.T], axis=1)
    assert np.array_equal(discretize(codes), expected)


def test_vectorised_mi_equals_sklearn(rng):
    codes = np.stack([rng.integers(0, 20, 700), rng.integers(-3, 3, 700), np.full(700, 7), rng.integers(0, 2, 700) * 5], 1)
    factors = np.stack([rng.integers(0, 3, 700), codes[:, 0] // 4, rng.integers(10, 40, 700)], 1)
    expected = [[mutual_info_score(factors[:, k], codes[:, j]) for k in range(3)] for j in range(4)]
    np.testing.assert_allclose(discrete_mutual_info(codes, factors), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(discrete_entropy(factors), [mutual_info_score(f, f) for f in factors.T], rtol=0, atol=1e-10)


# ------------------------------------------------------------------ MIG and SAP, known answers


def test_mig_hand_computed():
    # v0 = [0,0,1,1], v1 = [0,1,0,1]; z0 = v0, z1 = v0 AND v1 (two bins each after discretising).
    # I(z0; v0) = ln 2, I(z0; v1) = 0; I(z1; v0) = I(z1; v1) = H(z1) - 1/2 ln 2 = 3/4 ln(4/3) = a.
    # MIG = mean((ln 2 - a) / ln 2, (a - 0) / ln 2) = 1/2.
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    codes = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    a = 0.75 * math.log(4 / 3)
    np.testing.assert_allclose(discrete_mutual_info(discretize(codes), factors), [[math.log(2), 0], [a, a]], atol=1e-12)
    assert mig(codes, factors) == pytest.approx(0.5, abs=1e-12)


def test_sap_hand_computed_continuous():
    # v0 = [0,1,2,3], v1 = [0,1,0,1]; z0 = v0, z1 = v1. corr^2(v0, v1) = 1^2 / (5 * 1) = 0.2
    # (centred v0 = [-1.5,-.5,.5,1.5], v1 = [-.5,.5,-.5,.5]: cross sum 1, squares 5 and 1).
    # Score matrix [[1, .2], [.2, 1]]; SAP = mean(1 - .2, 1 - .2) = 0.8.
    factors = np.array([[0, 0], [1, 1], [2, 0], [3, 1]])
    codes = factors.astype(float)
    np.testing.assert_allclose(sap_score_matrix(codes, factors, codes, factors, continuous=True), [[1, 0.2], [0.2, 1]])
    assert sap(codes, factors, codes, factors, continuous=True) == pytest.approx(0.8)


def test_sap_replays_liblinear_exactly(rng):
    n = 800
    factors = np.stack([rng.integers(0, 2, n) * 3 - 1, rng.integers(0, 4, n), rng.integers(5, 11, n)], axis=1)
    codes = np.stack([factors[:, 0] + rng.standard_normal(n), factors[:, 1] * 0.3 + 0.2 * rng.standard_normal(n),
                      np.round(rng.standard_normal(n), 1),  # ties
                      np.full(n, 0.7), 5 * rng.standard_normal(n) + 100], axis=1)
    test_factors = factors[:300]
    test_codes = codes[:300] + 0.1 * rng.standard_normal((300, 5))
    expected = np.zeros((5, 3))
    for j in range(5):
        for k in range(3):
            model = LinearSVC(C=0.01, class_weight="balanced").fit(codes[:, j:j + 1], factors[:, k])
            expected[j, k] = np.mean(model.predict(test_codes[:, j:j + 1]) == test_factors[:, k])
    assert np.array_equal(sap_score_matrix(codes, factors, test_codes, test_factors), expected)


# ------------------------------------------------------------------ perfect vs random codes


def test_perfect_codes_score_high_and_random_codes_low(rng):
    factors, codes = factors_and_codes(1500, rng)
    test_factors, test_codes = factors_and_codes(500, rng)
    noise, test_noise = rng.standard_normal(codes.shape), rng.standard_normal(test_codes.shape)
    assert mig(codes, factors) > 0.95
    assert mig(noise, factors) < 0.05
    assert sap(codes, factors, test_codes, test_factors) > 0.3
    assert sap(noise, factors, test_noise, test_factors) < 0.05
    good = dci(codes, factors, test_codes, test_factors, mode="fast")
    bad = dci(noise, factors, test_noise, test_factors, mode="fast")
    assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95 and good["informativeness_test"] > 0.99
    assert bad["disentanglement"] < 0.2 and bad["informativeness_test"] < 0.4
    assert modularity_explicitness(codes, factors, test_codes, test_factors)["modularity_score"] > 0.95
    # every latent a mix of all factors: modularity drops (it has no chance level near 0)
    mixed = (codes - codes.mean(0)) / codes.std(0) @ np.array([[1, 1, 1], [1, -1, 1], [1, 0, -2]])
    assert modularity_explicitness(mixed, factors, test_codes, test_factors)["modularity_score"] < 0.7


def test_dci_scores_of_known_importances():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0) and completeness(np.eye(3)) == pytest.approx(1.0)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    assert completeness(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)


def test_dci_gbt_is_the_peer_loop_after_seeding(rng):
    factors, codes = factors_and_codes(150, rng, noise=1.0)
    factors = factors[:, :2] % 3
    test_factors, test_codes = factors[:60], codes[:60]
    # disentanglement_lib: GradientBoostingClassifier() per factor, drawing from np.random after np.random.seed(0)
    state, importance, test_accuracy = np.random.RandomState(0), [], []
    for k in range(2):
        model = GradientBoostingClassifier(random_state=state).fit(codes, factors[:, k])
        importance.append(model.feature_importances_)
        test_accuracy.append(np.mean(model.predict(test_codes) == test_factors[:, k]))
    importance = np.stack(importance, axis=1)
    for n_jobs in (1, 2):
        scores = dci(codes, factors, test_codes, test_factors, mode="gbt", seed=0, n_jobs=n_jobs)
        assert scores["disentanglement"] == disentanglement(importance)
        assert scores["informativeness_test"] == np.mean(test_accuracy)


def test_unsupervised_known_answers(rng):
    independent = unsupervised(rng.standard_normal((4000, 3)))
    assert abs(independent["gaussian_total_correlation"]) < 0.01
    assert independent["mutual_info_score"] < 0.05
    rho = 0.8
    correlated = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=4000)
    scores = unsupervised(correlated)
    assert scores["gaussian_total_correlation"] == pytest.approx(-0.5 * math.log(1 - rho**2), rel=0.05)
    binned = discretize(correlated)
    assert scores["mutual_info_score"] == pytest.approx(mutual_info_score(binned[:, 0], binned[:, 1]), abs=1e-12)
    cov = np.cov(correlated, rowvar=False)
    wasserstein = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])).real
    assert scores["gaussian_wasserstein_correlation"] == pytest.approx(wasserstein, abs=1e-10)


# ------------------------------------------------------------------ intervention metrics


def test_factor_vae_perfect_and_random():
    small = {"batch_size": 16, "num_train": 300, "num_eval": 150, "num_variance_estimate": 1000}
    perfect = factor_vae_score(perfect_encode, FakeDataset(), **small)
    assert perfect == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3}
    noise = np.random.default_rng(1)
    random = factor_vae_score(lambda x: noise.standard_normal((len(x), 4)), FakeDataset(), **small)
    assert random["eval_accuracy"] < 0.5  # chance is 1/3


def test_factor_vae_compat_differs_only_where_documented():
    small = {"batch_size": 16, "num_train": 300, "num_eval": 150, "num_variance_estimate": 1000}

    def with_dead_latent(scale):
        def encode(images):
            codes = perfect_encode(images)
            return np.concatenate([scale * codes[:, :1], codes], axis=1)  # latent 0 has std < 0.05
        return encode

    # pruned latent at index 0: same accuracies (votes only relabelled), D reported instead of the active count
    fixed = factor_vae_score(with_dead_latent(1e-3), FakeDataset(), **small)
    compat = factor_vae_score(with_dead_latent(1e-3), FakeDataset(), compat=True, **small)
    assert fixed == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3}
    assert compat == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 4}
    # threshold 0 (disent) and a constant latent: the peers' 0 / 0 wins every vote, accuracy falls to chance
    fixed = factor_vae_score(with_dead_latent(0.0), FakeDataset(), prune_threshold=0.0, **small)
    compat = factor_vae_score(with_dead_latent(0.0), FakeDataset(), prune_threshold=0.0, compat=True, **small)
    assert fixed["eval_accuracy"] == 1.0 and fixed["num_active_dims"] == 3
    assert compat["eval_accuracy"] < 0.5 and compat["num_active_dims"] == 4


def test_beta_vae_perfect_and_random():
    small = {"batch_size": 16, "num_train": 300, "num_eval": 150}
    assert beta_vae_score(perfect_encode, FakeDataset(), **small)["eval_accuracy"] > 0.95
    noise = np.random.default_rng(1)
    assert beta_vae_score(lambda x: noise.standard_normal((len(x), 3)), FakeDataset(), **small)["eval_accuracy"] < 0.6


# ------------------------------------------------------------------ bad input


def bad_inputs(rng):
    factors, codes = factors_and_codes(50, rng, noise=0.1)
    nan_codes = codes.copy()
    nan_codes[3, 1] = np.nan
    inf_codes = codes.copy()
    inf_codes[0, 0] = np.inf
    constant = factors.copy()
    constant[:, 2] = 1
    return {
        "NaN": (nan_codes, factors),
        "inf": (inf_codes, factors),
        "at least 2 points": (codes[:1], factors[:1]),
        "D = 0": (codes[:, :0], factors),
        "different numbers of points": (codes[:40], factors),
        "constant": (codes, constant),
    }


@pytest.mark.parametrize("problem", ["NaN", "inf", "at least 2 points", "D = 0", "different numbers of points", "constant"])
def test_bad_array_input_raises(rng, problem):
    codes, factors = bad_inputs(rng)[problem]
    with pytest.raises(ValueError, match=problem):
        mig(codes, factors)
    with pytest.raises(ValueError, match=problem):
        sap(codes, factors, codes, factors)
    with pytest.raises(ValueError, match=problem):
        dci(codes, factors, codes, factors, mode="fast")
    with pytest.raises(ValueError, match=problem):
        modularity_explicitness(codes, factors, codes, factors)
    if problem not in ("different numbers of points", "constant"):
        with pytest.raises(ValueError, match=problem):
            unsupervised(codes)


def test_bad_intervention_input_raises():
    with pytest.raises(ValueError, match="batch_size"):
        factor_vae_score(perfect_encode, FakeDataset(), batch_size=1)
    with pytest.raises(ValueError, match="num_train"):
        beta_vae_score(perfect_encode, FakeDataset(), num_train=0)
    with pytest.raises(ValueError, match="NaN"):
        beta_vae_score(lambda x: np.full((len(x), 2), np.nan), FakeDataset(), num_train=5, num_eval=5)
    with pytest.raises(ValueError, match="codes"):
        factor_vae_score(lambda x: np.zeros(3), FakeDataset(), num_train=5, num_eval=5, num_variance_estimate=10)


def test_one_latent_or_unknown_mode_raises(rng):
    factors, codes = factors_and_codes(50, rng)
    with pytest.raises(ValueError, match="2 latent"):
        mig(codes[:, :1], factors)
    with pytest.raises(ValueError, match="mode"):
        dci(codes, factors, codes, factors, mode="lasso")


# ------------------------------------------------------------------ hostile inputs (issue 12)


class _Deadline:
    """Fails the test after `seconds` instead of hanging it (SIGALRM, main thread)."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def expire(*_):
            raise TimeoutError(f"no answer within {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def _noisy_split(rng, n=300, m=150):
    factors, codes = factors_and_codes(n, rng, noise=1.0)
    factors_test, codes_test = factors_and_codes(m, rng, noise=1.0)
    return codes, factors, codes_test, factors_test


def test_sap_on_huge_codes_returns_promptly_with_the_large_scale_value(rng):
    # TRON's products overflowed past ~1e75 and NaN never met its stopping tests: 1e200 did not return in 400 s.
    # Far above unit scale the one-latent SVMs stop depending on scale, so 1e200 gives the value of 1e10.
    codes, factors, codes_test, factors_test = _noisy_split(rng)
    reference = sap(codes * 1e10, factors, codes_test * 1e10, factors_test)
    assert reference != sap(codes, factors, codes_test, factors_test)  # the SVM is not scale-free at unit scale
    with _Deadline(30):
        for scale in (1e30, 1e80, 1e200, 1e300):
            assert sap(codes * scale, factors, codes_test * scale, factors_test) == reference
    assert sap(codes * 1e-300, factors, codes_test * 1e-300, factors_test) == 0.0  # the regulariser wins: no latent predicts


def test_scale_free_metrics_are_unchanged_by_extreme_scales(rng):
    codes, factors, codes_test, factors_test = _noisy_split(rng)
    expected = {
        "mig": mig(codes, factors),
        "sap_continuous": sap(codes, factors, codes_test, factors_test, continuous=True),
        "modularity": modularity_explicitness(codes, factors, codes_test, factors_test),
        "dci_fast": dci(codes, factors, codes_test, factors_test, mode="fast"),
    }
    for scale in (1.5e308 / np.abs(codes).max(), 1e200, 1e-200, 1e-310):
        with np.errstate(under="ignore"):
            scaled, scaled_test = codes * scale, codes_test * scale
        got = {
            "mig": mig(scaled, factors),
            "sap_continuous": sap(scaled, factors, scaled_test, factors_test, continuous=True),
            "modularity": modularity_explicitness(scaled, factors, scaled_test, factors_test),
            "dci_fast": dci(scaled, factors, scaled_test, factors_test, mode="fast"),
        }
        if scale < 1e-300:  # subnormal codes lose bits; the scores stay finite and close
            assert got["mig"] == pytest.approx(expected["mig"], abs=0.05)
            continue
        # below the peer's variance threshold (1e-12) a latent counts as constant in continuous SAP
        assert got["sap_continuous"] == (0.0 if scale < 1 else pytest.approx(expected["sap_continuous"], rel=1e-9))
        assert got["mig"] == pytest.approx(expected["mig"], rel=1e-12), scale
        assert got["modularity"] == pytest.approx(expected["modularity"], rel=1e-6), scale
        assert got["dci_fast"] == pytest.approx(expected["dci_fast"], rel=1e-9), scale


def test_dci_gbt_sees_codes_beyond_float32(rng):
    codes, factors, codes_test, factors_test = _noisy_split(rng, n=120, m=60)
    expected = dci(codes, factors, codes_test, factors_test, mode="gbt")
    assert dci(codes * 1e300, factors, codes_test * 1e300, factors_test, mode="gbt") == pytest.approx(expected, rel=1e-9)


def test_unsupervised_refuses_codes_whose_covariance_over_or_underflows(rng):
    codes = rng.standard_normal((200, 3))
    with pytest.raises(ValueError, match="overflows float64"):
        unsupervised(codes * 1e200)
    with pytest.raises(ValueError, match="dimension 0 underflows"):
        unsupervised(codes * 1e-300)


@pytest.mark.parametrize("metric", ["mig", "sap", "dci", "modularity", "unsupervised", "discretize"])
@pytest.mark.parametrize("kind", ["complex", "strings", "ragged"])
def test_metrics_refuse_non_real_codes(rng, metric, kind):
    codes, factors, codes_test, factors_test = _noisy_split(rng, n=40, m=20)
    bad = {"complex": codes + 1j, "strings": codes.astype(str), "ragged": [[1.0, 2.0], [3.0]] * 20}[kind]
    calls = {
        "mig": lambda: mig(bad, factors),
        "sap": lambda: sap(bad, factors, codes_test, factors_test),
        "dci": lambda: dci(bad, factors, codes_test, factors_test, mode="fast"),
        "modularity": lambda: modularity_explicitness(bad, factors, codes_test, factors_test),
        "unsupervised": lambda: unsupervised(bad),
        "discretize": lambda: discretize(bad),
    }
    with pytest.raises(ValueError, match="must hold real numbers|not a rectangular array"):
        calls[metric]()


def test_rescale_columns_is_exact_and_leaves_ordinary_columns_alone(rng):
    from mtc_core.metrics.utils import rescale_columns

    codes = rng.standard_normal((50, 3)) * np.array([1.0, 1e200, 1e-200])
    scaled, other = rescale_columns(codes, codes[:5])
    assert np.array_equal(scaled[:, 0], codes[:, 0]) and np.array_equal(other, scaled[:5])
    assert 0.5 <= np.abs(scaled[:, 1:]).max(axis=0).min() and np.abs(scaled[:, 1:]).max() < 1
    ratio = codes[:, 1:] / scaled[:, 1:]
    assert np.all(ratio == ratio[0]) and np.all(np.log2(ratio[0]) == np.round(np.log2(ratio[0])))  # powers of two
    with pytest.raises(ValueError, match="num_bins must be an integer in 1..10000"):
        discretize(codes, num_bins=10**9)
