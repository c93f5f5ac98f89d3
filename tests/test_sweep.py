import dataclasses
import json
import os
import shutil
import statistics
import threading
from pathlib import Path

import pytest
from PIL import Image

from mtc_core import io, sweep, sweep_results, zoo
from mtc_core.__main__ import main
from mtc_core.train import Callback, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"latent_dim": 3, "hidden": 16}
SPEC = {
    "dataset": {"name": "toy"},
    "train": {"steps": 5, "batch_size": 16, "lr": 0.001, "eval_every": 5, "eval_size": 32, "device": "cpu"},
    "seeds": [0, 1],
    "models": [
        {"name": "beta_tcvae", "grid": {"beta": [2, 6]}, "params": TINY},
        {"name": "rtc_vae", "grid": {"lambda_t": [0.5, 2]}, "params": TINY},
        # Passes validation (the model config alone is fine) but conv64 cannot take the toy's 32x32 images:
        # only the worker, which builds the dataset, finds out.
        {"name": "vae", "label": "vae_conv64", "params": {**TINY, "architecture": "conv64"}, "seeds": [0]},
    ],
}
GOOD = [f"{m}-{k}={v}-seed={s}" for m, k, values in (("beta_tcvae", "beta", (2, 6)), ("rtc_vae", "lambda_t", (0.5, 2)))
        for v in values for s in (0, 1)]
BAD = "vae_conv64-seed=0"
INTERRUPTED = "beta_tcvae-beta=2-seed=0"


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def _config(name):
    return next(r.config for r in sweep.expand(SPEC) if r.name == name)


@pytest.fixture(scope="module")
def swept(ray_local, tmp_path_factory):
    """The sweep run once into a folder holding one run cancelled at step 2 (as if the machine had gone down)."""
    folder = tmp_path_factory.mktemp("sweep")
    cancel = threading.Event()

    class CancelAt2(Callback):
        def on_step(self, *, step, logs):
            if step == 2:
                cancel.set()

    assert train(_config(INTERRUPTED), folder / INTERRUPTED, callbacks=[CancelAt2()], cancel=cancel).step == 2
    # A resumed run keeps the history records up to its checkpoint; a restarted one would drop this marker.
    io.write_history(folder / INTERRUPTED, [*io.read_history(folder / INTERRUPTED), {"step": 1, "marker": "before the crash"}])
    lines = []
    outcomes = sweep.run_sweep(SPEC, folder, log=lines.append)
    return folder, outcomes, lines


def test_run_names_follow_the_config():
    assert [r.name for r in sweep.expand(SPEC)] == GOOD + [BAD]


def test_every_run_completes_and_the_failing_one_is_reported(swept):
    folder, outcomes, lines = swept
    status = {o.name: o.status for o in outcomes}
    assert status == {**dict.fromkeys(GOOD, "complete"), BAD: "failed"}
    for name in GOOD:
        model, config = io.load_run(folder / name)
        assert config["status"] == "complete" and config["step"] == 5 and not (folder / name / sweep.ERROR).exists()
        assert config["train"]["seed"] == int(name[-1]) and model.config.latent_dim == 3
    failure = next(o for o in outcomes if o.name == BAD)
    assert "conv64" in failure.message and "64x64" in failure.message
    assert "conv64" in (folder / BAD / sweep.ERROR).read_text() and "Traceback" in (folder / BAD / sweep.ERROR).read_text()
    assert any(line.startswith(f"  FAILED {BAD}: ValueError") for line in lines)
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 9 and progress[-1].startswith("[9/9]") and "8 done, 0 running, 1 failed, 0 pending" in progress[-1]
    assert all("ETA" in line for line in progress)
    saved = io.read_json(folder / sweep.SWEEP)
    assert [r["name"] for r in saved["runs"]] == GOOD + [BAD] and saved["spec"] == SPEC


def test_interrupted_run_is_resumed_not_restarted(swept):
    folder, _, lines = swept
    assert "9 to train (1 resumed from a checkpoint)" in lines[0]
    history = io.read_history(folder / INTERRUPTED)
    assert history[0] == {"step": 1, "marker": "before the crash"} and [r["step"] for r in history] == [1, 5]
    assert io.read_json(folder / INTERRUPTED / io.CONFIG)["status"] == "complete"


def test_rerun_skips_complete_runs_and_still_fails(swept, tmp_path, capsys):
    folder, _, _ = swept
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for name in GOOD for p in (folder / name).iterdir()}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    assert main(["sweep", str(spec_file), "--out", str(folder)]) == 1  # the conv64 run fails again
    out = capsys.readouterr().out
    assert "8 skipped (complete), 1 to train" in out and f"FAILED {BAD}" in out and "8 complete (8 skipped), 1 failed" in out
    assert before == {p: (p.stat().st_mtime_ns, p.read_bytes()) for name in GOOD for p in (folder / name).iterdir()}


def test_aggregate_table_and_plot(swept, tmp_path):
    folder, _, _ = swept
    rows = sweep_results.load_sweep(folder)
    assert [r["run"] for r in rows] == sorted(GOOD) and {r["status"] for r in rows} == {"complete"}  # conv64 failed before any config.json
    table = sweep_results.aggregate(rows)
    by_setting = {(r["model"], r["setting"]): r for r in table}
    cell = by_setting[("beta_tcvae", "beta=2")]
    finals = [io.read_history(folder / f"beta_tcvae-beta=2-seed={s}")[-1]["tc_gaussian_mean"] for s in (0, 1)]
    assert cell["n"] == 2 and cell["seeds"] == [0, 1] and cell["source"] == "history"
    assert cell["tc_mean"] == pytest.approx(statistics.mean(finals)) and cell["tc_mean_sd"] == pytest.approx(statistics.stdev(finals))
    assert set(by_setting) >= {("beta_tcvae", "beta=6"), ("rtc_vae", "lambda_t=0.5"), ("rtc_vae", "lambda_t=2")}
    text = sweep_results.markdown_table(table)
    assert f"| beta_tcvae | beta=2 | 0,1 | {cell['tc_mean']:.3f} ± {cell['tc_mean_sd']:.3f} |" in text
    png = sweep_results.plot_regularisation(table, tmp_path / "tc.png")
    assert Image.open(png).size[0] > 500


def test_evaluation_numbers_replace_history_when_every_run_has_them(swept, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(swept[0], folder)
    for k, name in enumerate(GOOD):
        tc = {"mean": {"gaussian": {"value": float(k), "ci": [0, 9]}}, "sampled": {"gaussian": {"value": 0.5, "ci": [0.4, 0.6]}}}
        io.write_json(folder / name / io.METRICS, {"evaluation": {"tc": tc, "recon": 10.0}})
    table = sweep_results.aggregate(sweep_results.load_sweep(folder))
    cell = next(r for r in table if r["setting"] == "beta=2")
    assert cell["source"] == "evaluation" and cell["tc_mean"] == 0.5 and cell["tc_sampled"] == 0.5 and cell["recon"] == 10.0
    assert main(["reproduce", "--sweep", str(folder)]) == 0
    assert "metrics.json evaluation" in (folder / "results.md").read_text()
    assert (folder / "tc_vs_regularisation.png").read_bytes()[:4] == b"\x89PNG"


def test_changed_spec_under_an_old_folder_is_refused(swept):
    changed = {**SPEC, "train": {**SPEC["train"], "steps": 6}}
    with pytest.raises(ValueError, match="different train config"):
        sweep.plan(sweep.expand(changed), swept[0])


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["models"].append({"name": "nope"}), "unknown model 'nope'"),
    (lambda s: s.update(steps=3), r"unknown field\(s\) \['steps'\]"),
    (lambda s: s["models"][0].update(grid={"beta": []}), "non-empty list"),
    (lambda s: s["models"][0].update(grid={"betta": [1]}), r"models\[0\].grid: unknown field\(s\) \['betta'\]"),
    (lambda s: s["models"][0].update(grid=[1, 2]), r"models\[0\].grid must be a mapping"),
    (lambda s: s["models"][0].update(params={"latent_dim": 0}), "latent_dim must be in"),
    (lambda s: s["train"].update(lr=-1), "lr must be"),
    (lambda s: s["train"].update(seed=3), r"unknown field\(s\) \['seed'\]"),
    (lambda s: s.update(seeds=[]), "seeds must be"),
    (lambda s: s.update(dataset={"name": "toy", "colour": 1}), "dataset 'toy'"),
    (lambda s: s["models"].append({"name": "beta_tcvae", "grid": {"beta": [2.0]}, "params": TINY}), "share the directory"),
])
def test_bad_specs_fail_before_any_run(edit, needle):
    spec = json.loads(json.dumps(SPEC))
    edit(spec)
    with pytest.raises(ValueError, match=needle):
        sweep.expand(spec)


def test_shipped_specs_expand():
    zoo = sweep.expand(sweep.load_spec(REPO / "sweeps" / "zoo.yaml"))
    assert len(zoo) == 15 and {r.config.dataset["name"] for r in zoo} == {"shapes2d"}
    assert "rtc_vae-lambda_t=2-mean_tc=kde-warmup_steps=5000-seed=2" in {r.name for r in zoo}
    assert all(r.config.steps == 15000 and r.config.batch_size == 64 for r in zoo)
    assert sweep.expand(sweep.load_spec(REPO / "sweeps" / "toy_demo.yaml"))


def test_select_keeps_spec_order_and_refuses_a_pattern_matching_nothing():
    runs = sweep.expand(SPEC)
    assert [r.name for r in sweep.select(runs, ["rtc_vae-*seed=1", "beta_tcvae-beta=6-*"])] == [
        "beta_tcvae-beta=6-seed=0", "beta_tcvae-beta=6-seed=1", "rtc_vae-lambda_t=0.5-seed=1", "rtc_vae-lambda_t=2-seed=1"]
    assert sweep.select(runs, None) == runs
    with pytest.raises(ValueError, match="no run of the spec matches 'rtc-\\*'.*beta_tcvae-beta=2-seed=0"):
        sweep.select(runs, ["beta_tcvae-*", "rtc-*"])


def test_only_trains_the_selected_runs_and_records_the_whole_spec(ray_local, tmp_path):
    lines = []
    outcomes = sweep.run_sweep(SPEC, tmp_path, only=["rtc_vae-lambda_t=2-*"], log=lines.append)
    assert sorted(o.name for o in outcomes) == ["rtc_vae-lambda_t=2-seed=0", "rtc_vae-lambda_t=2-seed=1"]
    assert all(o.status == "complete" for o in outcomes)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["rtc_vae-lambda_t=2-seed=0", "rtc_vae-lambda_t=2-seed=1"]
    assert len(io.read_json(tmp_path / sweep.SWEEP)["runs"]) == len(sweep.expand(SPEC))
    assert "2 runs (of 9, --only rtc_vae-lambda_t=2-*)" in lines[0]


def test_every_shipped_model_is_a_run_of_the_spec_its_command_names():
    # A zoo model's config.json holds the sweep command that trained it; the spec it names must still give
    # that run the same config, so the command reproduces the model (and zoo.yaml's "same budget" holds).
    for entry in zoo.read_index(REPO / "pretrained"):
        config = io.read_json(Path(entry["path"]) / io.CONFIG)
        words = config["command"].split()
        assert words[:4] == ["python", "-m", "mtc_core", "sweep"], config["command"]
        runs = sweep.expand(sweep.load_spec(REPO / words[4]))
        assert sweep._comparable(config["train"]) in [sweep._comparable(dataclasses.asdict(r.config)) for r in runs], entry["path"]
