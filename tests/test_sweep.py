import dataclasses
import json
import os
import shutil
import statistics
import threading
from pathlib import Path

import pytest
from PIL import Image

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.evaluation import sweep_results
from mtc_core.runs import zoo
from mtc_core.training import sweep
from mtc_core.training.trainer import Callback, train

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
    runs.write_history(folder / INTERRUPTED, [*runs.read_history(folder / INTERRUPTED), {"step": 1, "marker": "before the crash"}])
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
        model, config = runs.load_run(folder / name)
        assert config["status"] == "complete" and config["step"] == 5 and not (folder / name / sweep.ERROR).exists()
        assert config["train"]["seed"] == int(name[-1]) and model.config.latent_dim == 3
    failure = next(o for o in outcomes if o.name == BAD)
    assert "conv64" in failure.message and "64x64" in failure.message
    assert "conv64" in (folder / BAD / sweep.ERROR).read_text() and "Traceback" in (folder / BAD / sweep.ERROR).read_text()
    assert any(line.startswith(f"  FAILED {BAD}: ValueError") for line in lines)
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 9 and progress[-1].startswith("[9/9]") and "8 done, 0 running, 1 failed, 0 pending" in progress[-1]
    assert all("ETA" in line for line in progress)
    saved = runs.read_json(folder / sweep.SWEEP)
    assert [r["name"] for r in saved["runs"]] == GOOD + [BAD] and saved["spec"] == SPEC


def test_interrupted_run_is_resumed_not_restarted(swept):
    folder, _, lines = swept
    assert "9 to train (1 resumed from a checkpoint)" in lines[0]
    history = runs.read_history(folder / INTERRUPTED)
    assert history[0] == {"step": 1, "marker": "before the crash"} and [r["step"] for r in history] == [1, 5]
    assert runs.read_json(folder / INTERRUPTED / runs.CONFIG)["status"] == "complete"


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
    finals = [runs.read_history(folder / f"beta_tcvae-beta=2-seed={s}")[-1]["tc_gaussian_mean"] for s in (0, 1)]
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
        runs.write_json(folder / name / runs.METRICS, {"evaluation": {"tc": tc, "recon": 10.0}})
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
    (lambda s: s["models"][0].update(params={"latent_dim": 0}), "latent_dim must be"),
    (lambda s: s["train"].update(lr=-1), "lr must be"),
    (lambda s: s["train"].update(seed=3), r"unknown field\(s\) \['seed'\]"),
    (lambda s: s.update(seeds=[]), "seeds must be"),
    (lambda s: s.update(dataset={"name": "toy", "colour": 1}), "dataset 'toy'"),
    (lambda s: s["models"].append({"name": "beta_tcvae", "grid": {"beta": [2.0]}, "params": TINY}), "share the directory"),
    (lambda s: s.update(dataset={"name": ["toy"]}), "dataset must be a mapping with a name in"),
    (lambda s: s["models"][0].update(name={"a": 1}), r"models\[0\].name must be a model name"),
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
    long = {r.name: r.config for r in sweep.expand(sweep.load_spec(REPO / "sweeps" / "zoo_long.yaml"))}  # 4x the zoo's budget
    assert sorted(long) == ["beta_tcvae-beta=6-seed=0", "rtc_vae-lambda_t=2-mean_tc=gaussian-warmup_steps=20000-seed=0"]
    short = {r.name: r.config for r in zoo}
    for name, config in long.items():
        twin = short[name.replace("warmup_steps=20000", "warmup_steps=5000")]
        assert config.steps == 4 * twin.steps and config.model_params.get("warmup_steps", 0) == 4 * twin.model_params.get("warmup_steps", 0)
        assert dataclasses.replace(config, steps=twin.steps, model_params=twin.model_params) == twin  # nothing else differs


def test_select_keeps_spec_order_and_refuses_a_pattern_matching_nothing():
    expanded = sweep.expand(SPEC)
    assert [r.name for r in sweep.select(expanded, ["rtc_vae-*seed=1", "beta_tcvae-beta=6-*"])] == [
        "beta_tcvae-beta=6-seed=0", "beta_tcvae-beta=6-seed=1", "rtc_vae-lambda_t=0.5-seed=1", "rtc_vae-lambda_t=2-seed=1"]
    assert sweep.select(expanded, None) == expanded
    with pytest.raises(ValueError, match="no run of the spec matches 'rtc-\\*'.*beta_tcvae-beta=2-seed=0"):
        sweep.select(expanded, ["beta_tcvae-*", "rtc-*"])


def test_only_trains_the_selected_runs_and_records_the_whole_spec(ray_local, tmp_path):
    lines = []
    outcomes = sweep.run_sweep(SPEC, tmp_path, only=["rtc_vae-lambda_t=2-*"], log=lines.append)
    assert sorted(o.name for o in outcomes) == ["rtc_vae-lambda_t=2-seed=0", "rtc_vae-lambda_t=2-seed=1"]
    assert all(o.status == "complete" for o in outcomes)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["rtc_vae-lambda_t=2-seed=0", "rtc_vae-lambda_t=2-seed=1"]
    assert len(runs.read_json(tmp_path / sweep.SWEEP)["runs"]) == len(sweep.expand(SPEC))
    assert "2 runs (of 9, --only rtc_vae-lambda_t=2-*)" in lines[0]


def test_every_shipped_model_is_a_run_of_the_spec_its_command_names():
    # A zoo model's config.json holds the sweep command that trained it; the spec it names must still give
    # that run the same config, so the command reproduces the model (and zoo.yaml's "same budget" holds).
    for entry in zoo.read_index(REPO / "pretrained"):
        config = runs.read_json(Path(entry["path"]) / runs.CONFIG)
        words = config["command"].split()
        assert words[:4] == ["python", "-m", "mtc_core", "sweep"], config["command"]
        expanded = sweep.expand(sweep.load_spec(REPO / words[4]))
        assert sweep._comparable(config["train"]) in [sweep._comparable(dataclasses.asdict(r.config)) for r in expanded], entry["path"]


# ---- hostile specs (issue 12): alias bombs, tags, huge grids, broken run folders, dead cluster addresses


def _laughs(levels: int, width: int = 9, where: str = "label") -> str:
    """A "billion laughs" spec: `width`^`levels` strings from a few hundred bytes of nested aliases."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ndataset: {{name: toy}}\nmodels: [{{name: vae, {where}: *l{levels - 1}}}]\n"


@pytest.mark.parametrize("text", [
    _laughs(7),  # 9^7 = 4.8 M strings in a label
    _laughs(9, width=5, where="grid"),  # nested mappings expanded by aliases would be a 2 M-run grid
    "a: &a {x: 1, y: 2}\nb: &b {<<: *a, z: [*a, *a, *a, *a]}\n" + "".join(
        f"c{i}: &c{i} [{', '.join([f'*c{i - 1}' if i else '*b'] * 8)}]\n" for i in range(7)) + "dataset: {name: toy}\nmodels: []\n",
])
def test_yaml_alias_bombs_are_refused_before_anything_is_built(tmp_path, text):
    path = tmp_path / "laughs.yaml"
    path.write_text(text)
    assert len(text) < 1000
    with pytest.raises(ValueError, match="aliases"):
        sweep.load_spec(path)


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("dataset: {name: toy}\nmodels: &m [{name: vae, label: *m}]\n")
    with pytest.raises(ValueError, match="contains itself"):
        sweep.load_spec(path)


@pytest.mark.parametrize("text, needle", [
    ("dataset: !!python/object/apply:os.system [echo pwned]\nmodels: []\n", r"constructor for the tag .*python/object/apply"),
    ("dataset: !!python/name:os.system\nmodels: []\n", "python/name"),
    ("dataset: !custom {name: toy}\nmodels: []\n", "!custom"),
    ("dataset: {name: toy}\nseeds: [2001-12-14]\nmodels: [{name: vae}]\n", r"seeds\[0\] is a date"),
    ("dataset: {name: toy}\nmodels: [{name: vae, params: !!set {a, b}}]\n", r"models\[0\].params is a set"),
    ("dataset: {name: toy, path: !!binary aGVsbG8=}\nmodels: [{name: vae}]\n", "dataset.path is a bytes"),
    ("dataset: {name: toy}\nmodels: [{name: vae, grid: {1: [2]}}]\n", "key 1 in models"),
    ("dataset: {name: toy\nmodels: [\n", r"not valid YAML: line 2, column \d+"),
    ("\t- tab", "not valid YAML"),
    ("[" * 200 + "]" * 200, "nested too deeply"),
    ("- just\n- a list\n", "a sweep spec is a mapping"),
    ("", "a sweep spec is a mapping"),
])
def test_tags_non_json_values_and_broken_yaml_are_value_errors(tmp_path, text, needle):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=needle):
        sweep.load_spec(path)


def test_spec_files_that_are_not_text_are_refused(tmp_path):
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        sweep.load_spec(binary)
    big = tmp_path / "big.yaml"
    big.write_text("dataset: {name: toy}\nmodels: [{name: vae}]\n" + "#" * sweep.MAX_SPEC_BYTES)
    with pytest.raises(ValueError, match="larger than"):
        sweep.load_spec(big)
    with pytest.raises(ValueError, match="not a regular file"):
        sweep.load_spec(tmp_path)
    if Path("/dev/zero").exists():
        with pytest.raises(ValueError, match="not a regular file"):
            sweep.load_spec("/dev/zero")
    with pytest.raises(ValueError, match="no such file"):
        sweep.load_spec(tmp_path / "absent.yaml")


def test_the_number_of_runs_is_capped_before_any_config_is_built():
    grid = {key: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] for key in ("latent_dim", "hidden", "steps", "batch_size", "eval_every")}
    spec = {"dataset": {"name": "toy"}, "seeds": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "models": [{"name": "vae", "grid": grid}]}
    assert sweep.count_runs(spec) == 1_000_000
    with pytest.raises(ValueError, match=r"1,000,000 runs \(vae: 1,000,000\), more than the limit of 1,000.*--max-runs"):
        sweep.expand(spec)
    small = json.loads(json.dumps(SPEC))
    assert sweep.count_runs(small) == len(sweep.expand(small)) == 9
    with pytest.raises(ValueError, match="9 runs .*limit of 8"):
        sweep.expand(small, max_runs=8)
    assert len(sweep.expand(small, max_runs=9)) == 9
    with pytest.raises(ValueError, match="max_runs must be"):
        sweep.expand(small, max_runs=0)


def test_a_label_must_be_a_short_string():
    spec = json.loads(json.dumps(SPEC))
    spec["models"][0]["label"] = ["a", "list"]
    with pytest.raises(ValueError, match=r"models\[0\].label must be a non-empty string"):
        sweep.expand(spec)
    spec["models"][0]["label"] = "x" * 300
    with pytest.raises(ValueError, match="characters long"):
        sweep.expand(spec)


def test_only_without_a_match_gives_a_short_message():
    spec = json.loads(json.dumps(SPEC))
    spec["models"][0]["grid"]["beta"] = list(range(1, 501))  # 1,005 runs
    runs = sweep.expand(spec, max_runs=2000)
    for patterns in (["nothing-*"], ["z" * 100_000], [f"nope{i}" for i in range(1000)]):
        with pytest.raises(ValueError, match="no run of the spec matches") as error:
            sweep.select(runs, patterns)
        assert len(str(error.value)) < 1200 and "runs in all" in str(error.value)


@pytest.mark.parametrize("content", ["[1, 2]", '"x"', "null", "{not json", '{"train": [1]}', "\udcff"])
def test_a_run_folder_with_a_broken_config_is_refused_and_left_alone(tmp_path, content):
    expanded = sweep.expand(SPEC)
    folder = tmp_path / expanded[0].name
    folder.mkdir()
    (folder / runs.CONFIG).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=f"{expanded[0].name}.*(delete|another output folder)"):
        sweep.plan(expanded, tmp_path)
    assert (folder / runs.CONFIG).read_bytes() == content.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("address", ["bad address", "host", "host:", ":6379", "host:0", "host:65536", "host:12x", "ray://",
                                     "http://host:6379", "host:6379/path", "a b:1", "\x00:1"])
def test_malformed_ray_addresses_are_value_errors(address):
    with pytest.raises(ValueError, match="Ray address .*expected auto, HOST:PORT or ray://HOST:PORT"):
        sweep.check_address(address)


def _server(reply: bytes | None):
    """A local TCP server answering each connection with `reply` (None: accept and stay silent)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if reply is not None:
                conn.recv(64)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_ray_address_where_nothing_answers_times_out_with_a_message(monkeypatch):
    import socket

    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    with pytest.raises(ConnectionError, match="refused.*ray start --head"):
        sweep.check_address(f"127.0.0.1:{port}")
    silent, address = _server(None)
    with pytest.raises(ConnectionError, match="no answer within 0.5 s"):
        sweep.check_address(address, timeout=0.5)
    silent.close()
    web, address = _server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(ConnectionError, match="does not speak gRPC"):
        sweep.check_address(address, timeout=2)
    web.close()
    with pytest.raises(ConnectionError, match="cannot resolve host"):
        sweep.check_address("no-such-host.invalid:6379", timeout=2)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # ray.init(address=None) would join it
    with pytest.raises(ConnectionError, match="refused"):
        sweep.check_address(None)


def test_a_grpc_server_passes_the_address_check():
    settings_frame = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # what an HTTP/2 (gRPC) server sends first, e.g. Ray's GCS
    server, address = _server(settings_frame)
    sweep.check_address(address, timeout=2)
    sweep.check_address("ray://" + address, timeout=2)
    server.close()
    sweep.check_address(None)  # a local instance: nothing to check


ONE = {"dataset": {"name": "toy"}, "train": {"steps": 2, "batch_size": 8, "eval_every": 1, "eval_size": 16, "device": "cpu"},
       "seeds": [0], "models": [{"name": "vae", "params": {"latent_dim": 2, "hidden": 8}}]}


def test_a_folder_of_another_spec_is_refused_and_the_same_spec_resumes(tmp_path, capsys):
    """Without Ray: every run of the spec is complete, so a rerun skips them all and starts no Ray instance."""
    folder = tmp_path / "sweep"
    [run] = sweep.expand(ONE)
    train(run.config, folder / run.name)
    lines = []
    assert [o.status for o in sweep.run_sweep(ONE, folder, log=lines.append)] == ["skipped"]
    recorded = (folder / sweep.SWEEP).read_bytes()
    other = {**ONE, "models": [{"name": "beta_vae", "params": {"latent_dim": 2, "hidden": 8}}]}  # no run name in common
    with pytest.raises(ValueError) as refused:
        sweep.run_sweep(other, folder, log=lines.append)
    assert str(refused.value) == (f"{folder} holds another sweep (its sweep.json records a different spec): use another --out "
                                  f"or delete it")
    spec_file = tmp_path / "other.yaml"
    spec_file.write_text(json.dumps(other))
    assert main(["sweep", str(spec_file), "--out", str(folder)]) == 2
    assert capsys.readouterr().err.strip() == f"mtc_core sweep: error: {refused.value}"
    assert (folder / sweep.SWEEP).read_bytes() == recorded and sorted(p.name for p in folder.iterdir()) == sorted([run.name, sweep.SWEEP])
    same = json.loads(json.dumps(ONE))  # the same spec, read again: resumes (here: skips the complete run)
    assert [o.status for o in sweep.run_sweep(same, folder, log=lines.append)] == ["skipped"]
    (folder / sweep.SWEEP).write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds another sweep"):
        sweep.check_sweep_folder(ONE, folder)


def test_a_full_disk_fails_a_sweep_run_alone_with_one_line(tmp_path, disk_full):
    [run] = sweep.expand(ONE)
    disk_full()
    outcome = sweep.train_one(run.name, run.config, str(tmp_path), 1, False, "pytest")
    assert outcome.status == "failed" and outcome.message == (
        f"{tmp_path / run.name / runs.HISTORY}: No space left on device; nothing of the run was kept: start it again once "
        f"there is space")
    disk_full.off()
    assert sweep.train_one(run.name, run.config, str(tmp_path), 1, False, "pytest").status == "complete"
