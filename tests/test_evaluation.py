import json

import numpy as np
import pytest

import mtc_core
from mtc_core import estimators, metrics, runs
from mtc_core.data import make_dataset
from mtc_core.evaluation import tc_report
from mtc_core.evaluation.scoring import _SharedEncoder
from mtc_core.visualize.traversal import encode_numpy

SMALL = {"num_train": 600, "num_test": 300, "intervention_points": 8, "variance_points": 200, "dataset_tc_samples": 200}


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    model, config = runs.load_run(tiny_run)
    dataset = make_dataset(config["dataset"])
    return model, dataset, mtc_core.evaluate(model, dataset, seed=3, **SMALL)


def test_result_is_json_and_complete(evaluated):
    _, _, result = evaluated
    json.dumps(result, allow_nan=False)
    for rep in ("mean", "sampled"):
        for key in ("mig", "sap", "dci", "modularity_score", "factor_vae", "beta_vae", "disintegration"):
            assert key in result[rep], (rep, key)
        assert "gaussian_tc" not in result[rep] and "knn_tc" not in result[rep]  # every TC lives in result["tc"] only
        for estimator in ("gaussian", "knn"):
            entry = result["tc"][rep][estimator]
            assert entry["ci"][0] <= entry["value"] + 0.05 and entry["value"] - 0.05 <= entry["ci"][1], (rep, estimator)
    assert "dataset_mc" in result["tc"]["mixture"] and "dataset_mc" not in result["tc"]["sampled"]  # an upper estimate, apart
    assert result["settings"]["num_train"] == 600 and result["seconds"] > 0


def test_values_equal_the_functions_on_the_same_codes(evaluated):
    model, dataset, result = evaluated
    rng = np.random.default_rng(3)  # evaluate draws the training factors, then their sampling noise, from this stream
    factors = dataset.sample_factors(600, rng)
    mu, logvar = encode_numpy(model, dataset.render(factors))
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    tc = result["tc"]
    assert tc["settings"]["n"] == 600
    for code, codes in (("mean", mu), ("sampled", z)):  # the plug-in Gaussian TC, less its small-sample bias, at least 0
        entry = tc[code]["gaussian"]
        assert entry["plugin"] == pytest.approx(estimators.gaussian_tc(np.cov(codes.T)), rel=1e-9)
        assert entry["bias"] == pytest.approx(estimators.gaussian_tc_bias(600, mu.shape[1]), rel=1e-12)
        assert entry["value"] == pytest.approx(max(entry["plugin"] - entry["bias"], 0.0), rel=1e-12)
    assert tc == tc_report.tc_report(mu, logvar, z, seed=3, dataset_mc_samples=200)  # one function, one value
    assert result["mean"]["mig"] == pytest.approx(metrics.mig(mu, factors), abs=1e-12)
    assert result["sampled"]["mig"] == pytest.approx(metrics.mig(z, factors), abs=1e-12)
    np.testing.assert_allclose(result["activity"]["var_mu"], mu.var(0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(result["activity"]["mean_sigma2"], np.exp(logvar).mean(0), rtol=1e-9)
    # law of total covariance: the sampled codes' variance is Var(mu) + E[sigma^2], up to sampling error
    np.testing.assert_allclose(z.var(0, ddof=1), mu.var(0, ddof=1) + np.exp(logvar).mean(0), rtol=0.2)


def test_shared_encoder_serves_both_passes_from_one_encoding(evaluated):
    model, dataset, _ = evaluated
    shared = _SharedEncoder(model, seed=0)
    images = dataset.render(dataset.sample_factors(50, np.random.default_rng(0)))
    mean, sampled = shared.function("mean"), shared.function("sampled")
    mu, logvar = encode_numpy(model, images)
    np.testing.assert_array_equal(mean(images), mu)
    first = sampled(images)
    np.testing.assert_array_equal(first, sampled(images.copy()))  # same images, same sample
    assert len(shared.cache) == 1
    assert not np.allclose(first, mu) and np.abs(first - mu).mean() == pytest.approx(np.sqrt(np.exp(logvar)).mean() * 0.798, rel=0.3)


def test_repeated_images_do_not_inflate_the_knn_tc(rng):
    # Drawing points with replacement repeats images; exact copies of a code are a sampling artefact: the kNN
    # batches take distinct mean codes only, so five copies of each point give the same kNN TC as one.
    codes = rng.integers(0, 4, size=(400, 2)) + 0.3 * rng.standard_normal((400, 2))
    codes = np.column_stack([codes, codes[:, 0] + 0.5 * rng.standard_normal(400)])
    logvar = np.full_like(codes, -2.0)
    once = tc_report.tc_report(codes, logvar, knn_batches=2, knn_points=200)
    repeated = tc_report.tc_report(np.tile(codes, (5, 1)), np.tile(logvar, (5, 1)), knn_batches=2, knn_points=200)
    assert once["mean"]["knn"]["n"] == repeated["mean"]["knn"]["n"] == 200
    assert repeated["mean"]["knn"]["value"] == pytest.approx(once["mean"]["knn"]["value"], abs=0.15)
    # the Gaussian TC's plug-in value hardly moves; its bias correction follows the number of points (400 vs 2,000)
    assert repeated["mean"]["gaussian"]["plugin"] == pytest.approx(once["mean"]["gaussian"]["plugin"], rel=1e-3)


def test_encoding_streams_in_chunks_and_keeps_only_the_reconstruction_images(evaluated, monkeypatch):
    from mtc_core.evaluation import scoring

    model, dataset, _ = evaluated
    whole_train, whole_test = scoring.encoded_points(model, dataset, num_train=1100, num_test=1300, seed=4)
    monkeypatch.setattr(scoring, "ENCODE_CHUNK", 512)  # three chunks: the same batches of encode_numpy, the same values
    train, test = scoring.encoded_points(model, dataset, num_train=1100, num_test=1300, seed=4)
    for key in ("factors", "mean", "logvar", "sampled"):
        np.testing.assert_array_equal(train[key], whole_train[key])
        np.testing.assert_array_equal(test[key], whole_test[key])
    assert len(train["images"]) == 0 and len(test["images"]) == scoring.RECON_IMAGES == 1000
    np.testing.assert_array_equal(test["images"], dataset.render(test["factors"][:1000]))


def test_evaluate_reports_progress_after_each_stage(tiny_run):
    model, config = runs.load_run(tiny_run)
    dataset = make_dataset(config["dataset"])
    stages: list[str] = []
    partials: dict[str, dict] = {}

    def progress(stage: str, partial: dict) -> None:
        stages.append(stage)
        partials[stage] = partial

    result = mtc_core.evaluate(model, dataset, seed=1, num_train=200, num_test=100, intervention_points=8, variance_points=50,
                               dataset_tc_samples=50, progress=progress)
    assert stages[0] == "encoding" and stages[-1] == "recon" and "tc" in stages
    assert stages[-5:-1] == ["mean: factor_vae", "mean: beta_vae", "sampled: factor_vae", "sampled: beta_vae"]
    assert partials["mean: beta_vae"]["mean"]["beta_vae"] == result["mean"]["beta_vae"] and "mean" not in partials["tc"]
    assert partials["recon"]["recon"] == result["recon"]
