import shutil

import pytest

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.evaluation import claims
from mtc_core.runs import zoo


@pytest.fixture
def two_seed_zoo(tiny_run, tmp_path):
    root = tmp_path / "zoo"
    zoo.add_run(tiny_run, root, "m-seed0", "tiny beta-VAE, seed 0")
    second = tmp_path / "seed1"
    shutil.copytree(tiny_run, second)
    config = runs.read_json(second / runs.CONFIG)
    config["train"]["seed"] = 1
    runs.write_json(second / runs.CONFIG, config)
    zoo.add_run(second, root, "m-seed1", "tiny beta-VAE, seed 1")
    return root


def test_reproduce_evaluates_once_and_aggregates_seeds(two_seed_zoo, tmp_path, capsys):
    argv = ["reproduce", "--zoo", str(two_seed_zoo), "--table", str(tmp_path / "R.md"), "--figures", str(tmp_path / "fig"),
            "--num-train", "300", "--num-test", "200"]
    assert main(argv) == 0
    text = (tmp_path / "R.md").read_text()
    row = [line for line in text.splitlines() if line.startswith("| tiny beta-VAE |")]
    per_seed = [line for line in text.splitlines() if line.startswith("| tiny beta-VAE, seed ")]
    assert "## Every model, every seed" in text and len(per_seed) == 2 and all(" [" in line for line in per_seed)
    assert len(row) == 2 and all("±" in r for r in row)  # two seeds, one row in each table (TC, metrics), mean ± sd
    assert all(r.startswith("| tiny beta-VAE | 2 |") for r in row)  # the row is labelled without the first seed's number
    assert "## Total correlation" in text and "batches of" in text  # the TC table says how it was estimated
    assert (tmp_path / "fig" / "tc_mean_vs_sampled.png").stat().st_size > 1000
    stored = runs.read_json(two_seed_zoo / "m-seed0" / runs.METRICS)["evaluation"]
    assert stored["settings"]["num_train"] == 300
    stamp = (two_seed_zoo / "m-seed0" / runs.METRICS).stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    assert "stored evaluation" in capsys.readouterr().out
    assert (two_seed_zoo / "m-seed0" / runs.METRICS).stat().st_mtime_ns == stamp


def _row(label, model, mean_tc, sampled_tc, recon):
    row = {"label": label, "model": model, "dataset": "toy", "seeds": 1}
    row.update({c[0]: (None, None) for c in claims.COLUMNS})
    row.update({"TC mean codes (Gaussian)": (mean_tc, None), "TC sampled codes (Gaussian)": (sampled_tc, None), "recon": (recon, None)})
    return row


def test_claims_decide_with_the_numbers():
    table = [_row("tcvae", "beta_tcvae", 1.0, 0.01, 100.0), _row("fvae", "factor_vae", 0.6, 0.02, 100.0),
             _row("rtc good", "rtc_vae", 0.2, 0.01, 109.0), _row("rtc blurry", "rtc_vae", 0.1, 0.01, 115.0),
             _row("rtc weak", "rtc_vae", 0.4, 0.01, 90.0)]
    lines = claims.claims(table)
    assert lines[0].startswith("(1) tcvae, all latents") and lines[0].endswith("holds (criterion: sampled < 0.1 nats and mean > 3x sampled).")
    verdicts = {line.split(":")[0]: "does not hold" not in line for line in lines[2:]}
    assert verdicts == {"(2) rtc good, all latents": True, "(2) rtc blurry, all latents": False, "(2) rtc weak, all latents": False}
    other = {**_row("rtc elsewhere", "rtc_vae", 0.01, 0.01, 50.0), "dataset": "shapes2d"}  # no rival on its dataset
    assert claims.claims([*table[:2], other])[-1].endswith("does not hold (criterion: >= 2x lower mean TC and a "
                                                              "reconstruction error at most 10% above theirs, against both).")


def test_aggregate_orders_rows_by_dataset_then_model_and_averages_seeds():
    def row(label, model, dataset, seed, tc):
        return {"label": f"{label}, seed {seed}", "model": model, "seed": seed, "dataset": dataset,
                "group": f"{model}/{dataset}", "evaluation": {"tc": {"mean": {"gaussian": {"value": tc, "ci": [tc - 0.1, tc + 0.1]}}},
                                                              "recon": 1.0}}

    rows = [row("RTC", "rtc_vae", "toy", 0, 0.1), row("VAE", "vae", "shapes2d", 0, 0.5), row("TCVAE", "beta_tcvae", "toy", 0, 1.0),
            row("VAE", "vae", "toy", 0, 0.3), row("TCVAE", "beta_tcvae", "toy", 1, 2.0)]
    table = claims.aggregate(rows)
    assert [(r["dataset"], r["label"], r["seeds"]) for r in table] == [
        ("toy", "VAE", 1), ("toy", "TCVAE", 2), ("toy", "RTC", 1), ("shapes2d", "VAE", 1)]
    mean, sd = table[1]["TC mean codes (Gaussian)"]
    assert mean == pytest.approx(1.5) and sd == pytest.approx(0.7071, abs=1e-4)  # sample sd of {1, 2}
    assert table[1]["TC sampled codes (Gaussian)"] == (None, None)  # a column no seed has stays empty


def test_claim_two_reports_the_worst_pair_of_seeds():
    def row(label, model, mean_tcs, recons):
        r = _row(label, model, sum(mean_tcs) / len(mean_tcs), 0.01, sum(recons) / len(recons))
        r["seeds"] = len(mean_tcs)
        r["per_seed"] = {"TC mean codes (Gaussian)": mean_tcs, "recon": recons}
        return r

    table = [row("tcvae", "beta_tcvae", [1.0, 0.6], [100.0, 90.0]), row("fvae", "factor_vae", [2.0], [100.0]),
             row("rtc", "rtc_vae", [0.1, 0.3], [95.0, 99.0])]
    line = claims.claims(table)[-1]
    # means: 0.8 / 0.2 = 4.0x, 97 / 95 - 1 = +2%; worst pair: 0.6 / 0.3 = 2.0x, 99 / 90 - 1 = +10%
    assert "vs tcvae: mean TC 0.800 -> 0.200 (4.0x lower), reconstruction +2% (worst pair of seeds: 2.0x, +10%)" in line
    assert "vs fvae: mean TC 2.000 -> 0.200 (10.0x lower), reconstruction -3% (worst pair of seeds: 6.7x, -1%)" in line
    worse = claims.claims([row("tcvae", "beta_tcvae", [0.1], [100.0]), row("rtc", "rtc_vae", [0.4], [100.0])])[-1]
    assert "mean TC 0.100 -> 0.400 (4.0x higher)" in worse and worse.endswith("does not hold (criterion: >= 2x lower mean TC and "
                                                                                 "a reconstruction error at most 10% above theirs, against both).")
