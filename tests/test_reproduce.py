import shutil

import numpy as np
import pytest

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.evaluation import claims, results_figures, thresholds
from mtc_core.metrics.activity import curve_thresholds, stable_range
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
    row = [line for line in text.splitlines() if line.startswith("| tiny beta-VAE |") and " / " not in line]  # not the curve table
    per_seed = [line for line in text.splitlines() if line.startswith("| tiny beta-VAE, seed ")]
    assert "## Every model, every seed" in text and len(per_seed) == 2 and all(" [" in line for line in per_seed)
    assert len(row) == 2 and all("±" in r for r in row)  # two seeds, one row in each table (TC, metrics), mean ± sd
    assert all(r.startswith("| tiny beta-VAE | 2 |") for r in row)  # the row is labelled without the first seed's number
    assert "## Total correlation" in text and "batches of" in text  # the TC table says how it was estimated
    assert (tmp_path / "fig" / "tc_mean_vs_sampled.png").stat().st_size > 1000
    if "activity" in runs.read_json(two_seed_zoo / "m-seed0" / runs.METRICS)["evaluation"]["tc"]:  # a report with its curve
        assert "## Over the activity cut" in text and (tmp_path / "fig" / "activity_curves.png").stat().st_size > 1000
    assert "-0.000" not in text
    stored = runs.read_json(two_seed_zoo / "m-seed0" / runs.METRICS)["evaluation"]
    assert stored["settings"]["num_train"] == 300
    stamp = (two_seed_zoo / "m-seed0" / runs.METRICS).stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    assert "stored evaluation" in capsys.readouterr().out
    assert (two_seed_zoo / "m-seed0" / runs.METRICS).stat().st_mtime_ns == stamp


N = 10_000


def _entry(v: float, half: float = 0.005) -> dict:
    """A report entry with a 95% interval of +- half, its lower end clipped at 0 as tc_report does."""
    entry = {"value": v, "ci": [max(v - half, 0.0), v + half], "n": N}
    return entry | ({"ci_clipped": True} if v - half < 0 else {})


def _report(var_mu: list[float], threshold: float, parts, knn: float | None = None, half: float = 0.005) -> dict:
    """A TC report in tc_report's shape whose Gaussian split depends on the active set only, through
    `parts(number of active latents) -> {"mean": {part: v}, "sampled": {part: v}}`, with its activity curve."""
    grid = curve_thresholds(threshold)
    counts = [int((np.asarray(var_mu) > t).sum()) for t in grid]
    at = parts(int((np.asarray(var_mu) > threshold).sum()))
    split = {code: {p: _entry(at[code].get(p, 0.0), half) for p in ("all", "active", "passive", "between")} for code in ("mean", "sampled")}
    active = [j for j, v in enumerate(var_mu) if v > threshold]
    return {"mean": {"gaussian": split["mean"]["all"], **({"knn": _entry(knn, 0.1)} if knn is not None else {})},
            "sampled": {"gaussian": split["sampled"]["all"]}, "split": split, "dropped": [],
            "active": active, "passive": [j for j in range(len(var_mu)) if j not in active],
            "settings": {"n": N, "active_threshold": threshold},
            "activity": {"var_mu": list(var_mu), "threshold": threshold, "rule": "a test's rule",
                         "curve": {"thresholds": grid, "active_count": counts,
                                   **{code: {p: [parts(c)[code].get(p, 0.0) for c in counts] for p in ("all", "active", "passive", "between")}
                                      for code in ("mean", "sampled")}},
                         "stable": stable_range(var_mu, threshold, grid)}}


def _flat(mean: float, sampled: float, knn: float | None = None, active: float | None = None, sampled_active: float | None = None):
    """parts(): the same split at every cut (all latents, and among the active ones)."""
    return lambda count: {"mean": {"all": mean, "active": mean if active is None else active},
                          "sampled": {"all": sampled, "active": sampled if sampled_active is None else sampled_active}}


STEADY = [1.0, 1.0, 1e-4]  # two active latents at every cut of the curve: stable over 0.001..0.1


def _run(seed: int, mean: float, sampled: float, recon: float, knn: float | None = None, **split) -> dict:
    return {"seed": seed, "tc": _report(STEADY, 0.01, _flat(mean, sampled, knn, **split), knn=knn), "recon": recon}


def _config(label: str, model: str, runs: list[dict], dataset: str = "toy") -> dict:
    row = {"label": label, "model": model, "dataset": dataset, "seeds": len(runs), "runs": runs}
    return row | {c[0]: (None, None) for c in claims.COLUMNS}


def test_claims_decide_with_the_numbers():
    table = [_config("tcvae", "beta_tcvae", [_run(0, 1.0, 0.01, 100.0)]), _config("fvae", "factor_vae", [_run(0, 0.6, 0.02, 100.0)]),
             _config("rtc good", "rtc_vae", [_run(0, 0.2, 0.01, 109.0)]), _config("rtc blurry", "rtc_vae", [_run(0, 0.1, 0.01, 115.0)]),
             _config("rtc weak", "rtc_vae", [_run(0, 0.4, 0.01, 90.0)])]
    lines = claims.claims(table)
    assert lines[0] == "(1) tcvae [seed 0; Gaussian TC], all latents: holds: seed 0: sampled 0.010, mean 1.000 (100.0x)."
    assert lines[1].startswith("(1) tcvae [seed 0; Gaussian TC], active latents: holds on the active latents (cuts 0.001 to 0.1, "
                               "where every seed's active set is stable)")
    verdicts = {line.split(" [")[0]: line.split(": ")[1] for line in lines if "Gaussian TC of the means, all latents" in line}
    assert verdicts == {"(2) rtc good": "holds", "(2) rtc blurry": "does not hold", "(2) rtc weak": "does not hold"}
    other = _config("rtc elsewhere", "rtc_vae", [_run(0, 0.01, 0.01, 50.0)], dataset="shapes2d")  # no rival on its dataset
    assert claims.claims([*table[:2], other])[-1] == "(2) rtc elsewhere: not judged: no beta-TCVAE or FactorVAE on shapes2d to compare with."


def test_a_claim_that_holds_for_some_seeds_only_is_mixed():
    tcvae = _config("tcvae", "beta_tcvae", [_run(0, 1.0, 0.01, 100.0), _run(1, 0.2, 0.09, 90.0)])
    line = claims.claims([tcvae])[0]
    assert line == ("(1) tcvae [seeds 0, 1; Gaussian TC], all latents: mixed: seed 0: sampled 0.010, mean 1.000 (100.0x); "
                    "seed 1: sampled 0.090, mean 0.200 (2.2x).")
    # claim 2 pair by pair: RTC-VAE's 0.1 and 0.3 (recon 95, 99) against 1.0 and 0.2 (recon 100, 90)
    rtc = _config("rtc", "rtc_vae", [_run(0, 0.1, 0.01, 95.0), _run(1, 0.3, 0.01, 99.0)])
    line = next(c for c in claims.claims([tcvae, rtc]) if c.startswith("(2) rtc [seeds 0, 1; against tcvae], Gaussian TC of the means, all"))
    # pairs: 1.0 / 0.1 = 10x at -5%, 1.0 / 0.3 = 3.3x at -1%, 0.2 / 0.1 = 2.0x at +5.6% hold; 0.2 / 0.3 (1.5x higher) does not
    assert "mean TC 0.600 -> 0.200 (3.0x lower), reconstruction +2.1%" in line
    assert "per seed (in seed order) 1.000, 0.200 -> 0.100, 0.300" in line
    assert "worst pair of seeds: 1.5x higher, reconstruction +10.0% (3 of 4 pairs hold)" in line and ": mixed: vs tcvae: mixed" in line


def test_two_values_below_resolution_are_not_divided():
    # FactorVAE's active latents: mean and sampled TC both within their intervals of 0 (lower ends clipped at 0)
    fvae = _config("fvae", "factor_vae", [_run(0, 1.8, 0.006, 70.0, active=0.0, sampled_active=0.002)])
    one = claims.claims([fvae])
    assert one[1].endswith("seed 0: sampled 0.002, mean 0.000 (both below resolution).") and "1.0x" not in one[1]
    assert one[1].startswith("(1) fvae [seed 0; Gaussian TC], active latents: does not hold on the active latents")
    rtc = _config("rtc", "rtc_vae", [_run(0, 0.05, 0.01, 69.0, active=0.003)])
    two = next(c for c in claims.claims([fvae, rtc]) if "active latents" in c and c.startswith("(2)"))
    assert "mean TC among active latents 0.000 -> 0.003 (both below resolution)" in two and "x higher" not in two
    assert ": does not hold:" in two


def test_claim_two_is_judged_on_the_knn_tc_too_and_a_disagreement_is_said():
    tcvae = _config("tcvae", "beta_tcvae", [_run(0, 1.1, 0.02, 70.0, knn=4.6)])
    rtc = _config("rtc", "rtc_vae", [_run(0, 0.05, 0.01, 68.0, knn=4.8)])
    lines = claims.claims([tcvae, rtc])
    gaussian = next(c for c in lines if "Gaussian TC of the means, all latents" in c)
    knn = next(c for c in lines if "kNN TC of the means, all latents" in c)
    assert ": holds: vs tcvae: holds, mean TC 1.100 -> 0.050 (22.0x lower)" in gaussian
    assert ": does not hold: vs tcvae: does not hold, mean TC 4.600 -> 4.800 (1.0x higher)" in knn
    assert lines[-1] == ("(2) rtc: the two estimators disagree. On the Gaussian TC of the means the claim holds; on the kNN TC of "
                         "the means, which also sees nonlinear dependence and which no penalty optimises, it does not hold.")


def test_a_claim_that_flips_with_the_activity_cut_depends_on_it():
    # a weak third latent copies an active one: counted active, it carries the mean codes' TC; passive, it does not
    def parts(count):
        return {"mean": {"all": 1.0, "active": 0.8 if count == 3 else 0.01}, "sampled": {"all": 0.01, "active": 0.01}}

    seeds = [{"seed": 0, "tc": _report([1.0, 1.0, 0.02, 1e-4], 0.05, parts), "recon": 1.0},  # stable over 0.0215..0.1
             {"seed": 1, "tc": _report([1.0, 1.0, 0.002, 1e-4], 0.001, parts), "recon": 1.0}]  # stable over 0.001..0.00147
    assert thresholds.common_stable([s["tc"] for s in seeds]) is None
    line = claims.claims([_config("tcvae", "beta_tcvae", seeds)])[1]
    assert line.startswith("(1) tcvae [seeds 0, 1; Gaussian TC], active latents: depends on the activity threshold (cuts 0.001 to "
                           "0.1, no cut leaves every seed's active set in place; holds at 0.001 to 0.0015 only)")
    assert "at 0.001: holds, seed 0: sampled 0.010, mean 0.800 (80.0x); seed 1: sampled 0.010, mean 0.800 (80.0x)" in line
    assert "at 0.1: does not hold, seed 0: sampled 0.010, mean 0.010 (1.0x)" in line
    # a claim that holds for no cut is not said to depend on it, even where it holds for some seeds at some cuts
    noisy = {"seed": 0, "tc": _report([1.0, 1.0, 0.02, 1e-4], 0.05, lambda c: parts(c) | {"sampled": {"all": 0.5, "active": 0.5}}), "recon": 1.0}
    line = claims.claims([_config("tcvae", "beta_tcvae", [noisy, seeds[1]])])[1]
    assert ("active latents: does not hold at any cut from 0.001 to 0.1 (no cut leaves every seed's active set in place; for "
            "some seeds or pairs only at 0.001 to 0.0015)") in line
    # where the seeds' stable ranges overlap, the claim is judged there only, and holds "on the active latents"
    steady = [{"seed": s, "tc": _report([1.0, 1.0, 0.02, 1e-4], 0.005, parts), "recon": 1.0} for s in (0, 1)]
    assert thresholds.common_stable([s["tc"] for s in steady]) == pytest.approx((0.001, 0.0147), rel=1e-2)
    line = claims.claims([_config("tcvae", "beta_tcvae", steady)])[1]
    assert "active latents: holds on the active latents (cuts 0.001 to 0.015, where every seed's active set is stable)" in line


def test_results_never_print_minus_zero_and_tabulate_the_curve(tmp_path):
    runs = [_run(0, 1e-9, -1e-9, 100.0, knn=-1e-5, active=0.0), _run(1, 0.2, 0.0, 100.0, knn=0.0)]
    table = [_config("tcvae", "beta_tcvae", runs) | {"TC mean codes (Gaussian)": (-1e-6, 1e-6), "recon": (100.0, 0.0)}]
    text = claims.markdown(table, {"num_train": 10}, "test")
    assert "-0.000" not in text and "-0.0%" not in text
    assert "## Over the activity cut" in text and "| tcvae | 2 | 0.01 [0.001, 0.1]; 0.01 [0.001, 0.1] |" in text
    assert (tmp_path / "f" / "activity_curves.png") in results_figures.figures(table, tmp_path / "f")


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




def test_a_longer_budget_is_judged_in_its_own_group_and_shown_beside_the_zoo_run():
    def row(label, model, steps, params, tc_mean, recon):
        run = _run(0, tc_mean, 0.01, recon)
        evaluation = {"tc": run["tc"], "recon": recon, "mean": {"mig": 0.25}, "activity": {"active_latents": 4}}
        return {"label": f"{label}, seed 0", "model": model, "seed": 0, "dataset": "shapes2d", "steps": steps, "params": params,
                "group": f"{model}/{steps}", "evaluation": evaluation}

    models = [row("TCVAE", "beta_tcvae", 15_000, {"beta": 6}, 1.0, 100.0),
              row("RTC", "rtc_vae", 15_000, {"lambda_t": 2, "warmup_steps": 5000}, 0.9, 101.0),  # fails at the zoo's budget
              row("TCVAE long", "beta_tcvae", 60_000, {"beta": 6}, 1.0, 90.0),
              row("RTC long", "rtc_vae", 60_000, {"lambda_t": 2, "warmup_steps": 20_000}, 0.2, 91.0)]  # holds when trained longer
    table = claims.aggregate(models)
    groups = claims.budget_groups(table)
    assert [(h, [r["label"] for r in rows]) for h, rows in groups] == [
        ("shapes2d", ["TCVAE", "RTC"]), ("shapes2d, 60,000 training steps", ["TCVAE long", "RTC long"])]
    first, long = (claims.claims(rows) for _, rows in groups)
    assert sorted(claims.claims(table)) == sorted(first + long)  # the whole table: each RTC-VAE still against its own budget's rivals only
    two = [line for line in first + long if line.startswith("(2)") and "Gaussian TC of the means, all latents" in line]
    assert [line.split(", Gaussian")[0] for line in two] == ["(2) RTC [seed 0; against TCVAE]", "(2) RTC long [seed 0; against TCVAE long]"]
    assert ": does not hold:" in two[0] and ": holds:" in two[1] and "1.000 -> 0.200" in two[1]
    lines = claims.budget_lines(models)  # each long run after the zoo run of its model and seed, the warm-up apart
    assert [line.split(" | ")[:2] for line in lines[2:6]] == [["| TCVAE, seed 0", "15,000"], ["| TCVAE long, seed 0", "60,000"],
                                                            ["| RTC, seed 0", "15,000"], ["| RTC long, seed 0", "60,000"]]
    assert lines[5].endswith("| 4 | 0.250 | 91.000 |") and lines[6] == ""
    # then the claims on these runs alone at each budget: claim 2 fails at 15,000 steps and holds at 60,000
    at = {line: i for i, line in enumerate(lines)}
    short_at, long_at = at["**At 15,000 steps** (TCVAE, seed 0, RTC, seed 0):"], at["**At 60,000 steps** (TCVAE long, seed 0, RTC long, seed 0):"]
    said = [(i, line) for i, line in enumerate(lines) if line.startswith("- (2)") and "Gaussian TC of the means, all latents" in line]
    assert [(i > long_at, ": holds:" in line) for i, line in said] == [(False, False), (True, True)] and short_at < said[0][0]
    text = claims.markdown(table, {"num_train": 10}, "test", models)
    assert "## At a longer training budget" in text and "### shapes2d, 60,000 training steps" in text
    assert claims.budget_lines(models[:2]) == [] and "## At a longer training budget" not in claims.markdown(table[:2], {}, "t", models[:2])
