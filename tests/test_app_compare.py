"""Compare through AppTest (issue 22, item 5): every configuration its own colour, marker and legend entry (two RTC-VAE
penalties included), log axes where the TCs span decades with a TC at 0 drawn at the floor and said, the seeds column
"3 (0, 1, 2)", one uncertainty convention per column; and the sidebar picker's compact label with the full one in its help."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from mtc_core import runs
from mtc_core.models import FAMILY_COLOURS
from mtc_core.training.trainer import TrainConfig, train
from mtc_core.visualize import compare_charts
from ui.pages import PAGE_FILES
from ui.widgets import compact_label

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 60
GAUSS = "RTC-VAE (ours, Gaussian mean-TC, lambda 2)"
KDE = "RTC-VAE (ours, KDE mean-TC, lambda 2)"
NO_PENALTY = "RTC-VAE (ours, Gaussian mean-TC, lambda 0)"
GAUSS_MEAN_TC = {0: 0.006, 1: 0.010, 2: 0.014}  # three seeds: mean 0.010, sd 0.004


def _entry(value: float, ci: tuple[float, float], clipped: bool = False) -> dict:
    return {"value": value, "ci": list(ci), "n": 1000, **({"clipped": True, "ci_clipped": True} if clipped else {})}


def evaluation(mean_tc: float, sampled_tc: float, clipped: bool = False) -> dict:
    tc = {"mean": {"gaussian": _entry(mean_tc, (mean_tc * 0.9, mean_tc * 1.1)), "knn": _entry(mean_tc + 0.5, (mean_tc, mean_tc + 1))},
          "sampled": {"gaussian": _entry(sampled_tc, (0.0, sampled_tc + 0.01), clipped), "knn": _entry(0.2, (0.1, 0.3))},
          "split": {"mean": {"all": _entry(mean_tc, (0, mean_tc + 1)), "between": _entry(mean_tc / 2, (0, mean_tc))}},
          "settings": {"n": 1000, "seed": 0}, "active": [0], "passive": [1], "dropped": []}
    return {"tc": tc, "mean": {"mig": 0.1}, "sampled": {"mig": 0.05}, "activity": {"active_latents": 1}, "recon": 40.0}


@pytest.fixture(scope="module")
def rtc_run(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("trained") / "rtc"
    train(TrainConfig(model="rtc_vae", model_params={"latent_dim": 4, "hidden": 32}, dataset={"name": "toy"}, steps=10,
                      batch_size=16, lr=1e-3, eval_every=10, eval_size=32, checkpoint_every=0, device="cpu"), path, command="pytest")
    torch.set_num_threads(threads)
    return path


@pytest.fixture
def zoo(tmp_path, monkeypatch, rtc_run) -> Path:
    """Three RTC-VAE configurations on the toy: the Gaussian penalty over seeds 0, 1, 2 (mean TCs near 0.01), the KDE
    penalty (one seed, its sampled TC an estimate raised to 0) and lambda 0 (one seed, mean TC 7 nats)."""
    root = tmp_path / "zoo"
    items = []
    for folder, label, params, seed, (mean_tc, sampled_tc, clipped) in (
            *((f"gauss-seed{s}", GAUSS, {"mean_tc": "gaussian"}, s, (GAUSS_MEAN_TC[s], 0.02, False)) for s in (0, 1, 2)),
            ("kde-seed0", KDE, {"mean_tc": "kde"}, 0, (0.8, 0.0, True)),
            ("none-seed0", NO_PENALTY, {"lambda_t": 0.0}, 0, (7.0, 0.05, False))):
        run = root / folder
        shutil.copytree(rtc_run, run)
        config = runs.read_json(run / runs.CONFIG)
        config["model"]["params"].update(params)
        config["train"]["seed"] = seed
        runs.write_json(run / runs.CONFIG, config)
        runs.write_json(run / runs.METRICS, {**runs.read_json(run / runs.METRICS), "evaluation": evaluation(mean_tc, sampled_tc, clipped)})
        items.append({"path": folder, "label": f"{label}, toy, seed {seed}"})
    runs.write_json(root / "index.json", {"format_version": 1, "runs": items})
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("MTC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTC_ZOO_DIR", str(root))
    return root


def open_compare() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(PAGE_FILES["Compare"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def points(at: AppTest) -> dict[str, dict]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return {t["name"]: {**t, "layout": spec["layout"]} for t in spec["data"] if t["mode"] == "markers" and t.get("showlegend", True)}


def test_every_configuration_has_its_own_legend_entry_colour_and_marker(zoo):
    at = open_compare()
    shown = points(at)
    assert {GAUSS, KDE, NO_PENALTY} <= set(shown)  # two RTC-VAE penalties: two legend entries
    styles = {(shown[n]["marker"]["color"], shown[n]["marker"]["symbol"].split("-")[0]) for n in (GAUSS, KDE, NO_PENALTY)}
    assert len({c for c, _ in styles}) == 3 and len({s for _, s in styles}) == 3
    assert FAMILY_COLOURS["RTC-VAE"] in {c for c, _ in styles}  # the first configuration: the family's own colour (MODELS)
    # the span 0.006 .. 7 nats is over two decades: log axes by default
    assert shown[GAUSS]["layout"]["xaxis"]["type"] == "log" and shown[GAUSS]["layout"]["yaxis"]["type"] == "log"
    assert shown[GAUSS]["y"][0] == pytest.approx(statistics.mean(GAUSS_MEAN_TC.values()))
    assert shown[GAUSS]["error_y"]["array"][0] == pytest.approx(statistics.stdev(GAUSS_MEAN_TC.values()))
    # the KDE configuration's sampled TC was raised to 0: drawn at the floor with an open marker, and said
    floor = 10.0 ** np.floor(np.log10(0.006 / 3))
    assert shown[KDE]["x"][0] == pytest.approx(floor) and shown[KDE]["marker"]["symbol"].endswith("-open-dot")
    assert any("raised to 0" in c.value and "RTC-VAE (ours, KDE mean-TC, lambda 2)" in c.value for c in at.caption)

    at.toggle(key="cmp_log_gaussian").set_value(False).run()
    linear = points(at)
    assert linear[KDE]["layout"]["xaxis"].get("type") != "log" and linear[KDE]["x"][0] == 0.0  # linear: at 0 itself


def test_seeds_column_and_one_convention_per_column(zoo):
    at = open_compare()
    table = next(d.value for d in at.dataframe if "seeds" in d.value.columns).set_index("configuration")
    assert table.loc[GAUSS, "seeds"] == "3 (0, 1, 2)" and table.loc[KDE, "seeds"] == "1 (0)"
    sd_column, ci_column = "TC mean codes: mean ± sd over seeds", "TC mean codes: 95% interval (one seed only)"
    assert table.loc[GAUSS, sd_column] == "0.010 ± 0.004" and table.loc[GAUSS, ci_column] == ""  # several seeds: their sd
    assert table.loc[NO_PENALTY, sd_column] == "7.000" and table.loc[NO_PENALTY, ci_column] == "[6.300, 7.700]"
    assert table.loc[KDE, "TC sampled codes: mean ± sd over seeds"] == "0 (raised to 0)"
    assert not any("±" in str(v) and "[" in str(v) for v in table.to_numpy().ravel())  # no cell mixes the two


def test_configuration_styles_and_log_advice():
    groups = [{"label": f"c{k}", "family": "RTC-VAE"} for k in range(3)] + [{"label": "b", "family": "beta-TCVAE"}]
    styles = compare_charts.configuration_styles(groups)
    assert len({s["colour"] for s in styles.values()}) == 4 and len({s["symbol"] for s in styles.values()}) == 3
    assert compare_charts.shade("#000000", 0.5) == "#808080" and compare_charts.shade("#ffffff", -1.0) == "#000000"
    assert compare_charts.seeds_text([0, 1, 2]) == "3 (0, 1, 2)" and compare_charts.seeds_text([None]) == "1 (?)"


def test_the_picker_shows_a_compact_label_and_the_full_one_in_its_help(zoo):
    at = open_compare()
    picker = at.sidebar.selectbox(key="run_path")
    assert "RTC-VAE Gaussian λ2 · toy · s0" in picker.options and "RTC-VAE KDE λ2 · toy · s0" in picker.options
    index = runs.read_json(zoo / "index.json")["runs"]
    picked = next(item["label"] for item in index if Path(picker.value).name == item["path"])
    assert f"**{picked}**" in picker.help  # the full label of the picked model, on hover
    assert compact_label("RTC-VAE (ours, KDE mean-TC, lambda 2, warm-up 5k), Shapes2D, seed 0") == "RTC-VAE KDE λ2 wu 5k · Shapes2D · s0"
    assert compact_label("beta-TCVAE (beta 6), Shapes2D, seed 1") == "beta-TCVAE β6 · Shapes2D · s1"
    assert compact_label("run · my-run (cancelled)") == "run · my-run (cancelled)"
