"""Hostile and careless command lines (issue 12): each refusal is one line on stderr with exit code 2, never a
traceback, and a refused command leaves the files it was pointed at as they were."""

import errno
import hashlib
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtc_core import runs
from mtc_core.cli import commands as cli
from mtc_core.cli.commands import main
from mtc_core.runs import zoo

LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(8)) + \
    "dataset: {name: toy}\nmodels: [{name: vae, label: *l7}]\n"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, needle: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (argv, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mtc_core {argv[0]}: error: "), captured.err
    assert needle in lines[0], lines[0]
    assert len(lines[0]) < 700
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_run):
    """A run copy per hostile variant, sweep specs and a zoo folder, all under one temporary folder."""
    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    shutil.copytree(tiny_run, run)
    mismatch = root / "mismatch"
    shutil.copytree(tiny_run, mismatch)
    config = runs.read_json(mismatch / runs.CONFIG)
    config["dataset"] = {"name": "shapes2d"}  # 64x64 images for a 32x32 model
    runs.write_json(mismatch / runs.CONFIG, config)
    no_file = root / "no_file"
    shutil.copytree(tiny_run, no_file)
    config["dataset"] = {"name": "dsprites", "path": str(root / "absent.npz")}
    runs.write_json(no_file / runs.CONFIG, config)
    specs = {
        "malformed": "dataset: {name: toy\nmodels: [\n",
        "tag": "dataset: !!python/object/apply:os.system [echo pwned]\nmodels: []\n",
        "laughs": LAUGHS,
        "huge_grid": "dataset: {name: toy}\nmodels: [{name: vae, grid: {" + ", ".join(
            f"{k}: [{', '.join(map(str, range(1, 11)))}]" for k in ("latent_dim", "hidden", "steps", "batch_size", "eval_every", "lr")) + "}}]\n",
        "ok": "dataset: {name: toy}\ntrain: {steps: 2, batch_size: 8, eval_every: 1, eval_size: 16, device: cpu}\n"
              "models: [{name: vae, params: {latent_dim: 2, hidden: 8}}]\n",
    }
    for name, text in specs.items():
        (root / f"{name}.yaml").write_text(text)
    for name, content in (("null_metrics", "null"), ("broken_metrics", "{")):
        shutil.copytree(tiny_run, root / name)
        (root / name / runs.METRICS).write_text(content)
    (root / "a_file").write_text("not a folder")
    broken_sweep = root / "broken_sweep"
    (broken_sweep / "vae-seed=0").mkdir(parents=True)
    (broken_sweep / "vae-seed=0" / runs.CONFIG).write_text("[1, 2]")
    return root


def cases(root: Path) -> list[tuple[list[str], str]]:
    run, png, gif = str(root / "run"), str(root / "t.png"), str(root / "t.gif")
    return [
        (["evaluate", run, "--num-train", "0"], "--num-train must be in 2..100,000, got 0"),
        (["evaluate", run, "--num-train", "-5"], "--num-train must be in"),
        (["evaluate", run, "--num-train", "1"], "--num-train must be in"),
        (["evaluate", run, "--num-train", str(10**12)], "--num-train must be in"),
        (["evaluate", run, "--num-test", "0"], "--num-test must be in"),
        (["evaluate", run, "--seed", "-1"], "--seed must be in 0.."),
        (["evaluate", run, "--seed", str(2**64)], "--seed must be in 0.."),
        (["evaluate", str(root / "mismatch")], "renders images of shape (1, 64, 64) but the model takes (1, 32, 32)"),
        (["evaluate", str(root / "no_file")], "dSprites file not found"),
        (["evaluate", str(root / "absent")], "absent"),
        (["evaluate", str(root / "a_file")], "a_file"),
        (["evaluate", str(root / "null_metrics"), "--num-train", "200", "--num-test", "100"], "metrics.json: not a JSON object"),
        (["evaluate", str(root / "broken_metrics"), "--num-train", "200", "--num-test", "100"], "metrics.json: not valid JSON"),
        (["traverse", run, "--png", str(root / "no" / "such" / "t.png"), "--gif", gif], "does not exist"),
        (["traverse", run, "--png", str(root / "t.foo"), "--gif", gif], "unexpected file extension '.foo'; use .png or .gif"),
        (["traverse", run, "--png", str(root / "t"), "--gif", gif], "unexpected file extension '(none)'"),
        (["traverse", run, "--png", png, "--gif", str(root / "t.png")], "--gif"),
        (["traverse", run, "--png", str(root / "dir.png"), "--gif", gif], "is a folder"),
        (["traverse", run, "--png", png, "--gif", gif, "--steps", "100000"], "--steps must be in 2..100"),
        (["traverse", run, "--png", png, "--gif", gif, "--steps", "1"], "--steps must be in"),
        (["traverse", run, "--png", png, "--gif", gif, "--scale", "100000"], "--scale must be in 1..16"),
        (["traverse", run, "--png", png, "--gif", gif, "--scale", "0"], "--scale must be in"),
        (["traverse", run, "--png", png, "--gif", gif, "--extent", "inf"], "--extent must be in"),
        (["traverse", run, "--png", png, "--gif", gif, "--extent", "nan"], "--extent must be in"),
        (["traverse", run, "--png", png, "--gif", gif, "--extent", "-1"], "--extent must be in"),
        (["traverse", run, "--png", png, "--gif", gif, "--seed", "-1"], "--seed must be in"),
        (["traverse", run, "--png", png, "--gif", gif, "--steps", "100", "--scale", "16"], "more than 67,108,864"),
        (["traverse", str(root / "mismatch"), "--png", png, "--gif", gif], "but the model takes"),
        (["sweep", str(root / "malformed.yaml"), "--out", str(root / "out")], "not valid YAML: line 2"),
        (["sweep", str(root / "tag.yaml"), "--out", str(root / "out")], "could not determine a constructor"),
        (["sweep", str(root / "laughs.yaml"), "--out", str(root / "out")], "aliases"),
        (["sweep", str(root / "huge_grid.yaml"), "--out", str(root / "out")], "1,000,000 runs"),
        (["sweep", str(root / "huge_grid.yaml"), "--out", str(root / "out"), "--max-runs", "10"], "more than the limit of 10"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--max-runs", "0"], "max_runs must be an integer >= 1"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--only", "nothing*"], "no run of the spec matches 'nothing*'"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--address", "bad address"], "expected auto, HOST:PORT"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--address", "127.0.0.1:1"], "ray start --head"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--cpus-per-run", "0"], "cpus_per_run must be"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--gpus-per-run", "nan"], "gpus_per_run must be"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "out"), "--num-cpus", "-2"], "num_cpus must be"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "a_file")], "is not a folder"),
        (["sweep", str(root / "ok.yaml"), "--out", str(root / "broken_sweep")], "not a run config (a JSON list)"),
        (["sweep", str(root / "absent.yaml")], "no such file"),
        (["sweep", str(root)], "not a regular file"),
        (["reproduce", "--num-train", "0"], "--num-train must be in"),
        (["reproduce", "--zoo", str(root / "a_file")], "not a folder"),
        (["reproduce", "--zoo", str(root), "--table", str(root / "no" / "R.md")], "does not exist"),
        (["reproduce", "--sweep", str(root / "a_file")], "not a folder"),
        # an output flag pointed at a data file by a slip is refused by its extension, not overwritten
        (["reproduce", "--zoo", str(root), "--table", str(root / "run" / runs.WEIGHTS)], "--table"),
        (["reproduce", "--sweep", str(root), "--plot", str(root / "run" / runs.CONFIG)], "unexpected file extension '.json'; use .png"),
        (["evaluate-codes", str(root / "absent.npz"), "--out", str(root / "run" / runs.WEIGHTS)], "use .json"),
    ]


def test_every_refusal_is_one_line_and_touches_nothing(files, capsys):
    (files / "dir.png").mkdir(exist_ok=True)
    before = snapshot(files)
    for argv, needle in cases(files):
        refused(argv, capsys, needle)
    assert snapshot(files) == before  # no run, spec or output written, changed or removed
    assert not (files / "out").exists() and not (files / "t.png").exists()


def test_main_turns_package_refusals_into_one_line_and_lets_bugs_raise(monkeypatch, capsys):
    def raising(error):
        def command(argv):
            raise error
        return command

    monkeypatch.setitem(cli.COMMANDS, "theory", raising(PermissionError(errno.EACCES, "Permission denied", "/some/file")))
    assert refused(["theory"], capsys, "") == "mtc_core theory: error: /some/file: Permission denied"
    monkeypatch.setitem(cli.COMMANDS, "theory", raising(yaml.YAMLError("bad\nyaml")))
    assert refused(["theory"], capsys, "").endswith("error: bad yaml")
    monkeypatch.setitem(cli.COMMANDS, "theory", raising(ValueError("x" * 5000)))
    assert refused(["theory"], capsys, "").endswith("x ...")
    monkeypatch.setitem(cli.COMMANDS, "theory", raising(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["theory"])


def test_an_unreachable_cluster_is_refused_before_the_sweep_folder_is_made(files, capsys):
    out = files / "never"
    refused(["sweep", str(files / "ok.yaml"), "--out", str(out), "--address", "127.0.0.1:1"], capsys, "127.0.0.1:1")
    assert not out.exists()


def test_reproduce_skips_a_broken_zoo_model_with_a_warning_naming_it(tiny_run, tmp_path, capsys):
    root = tmp_path / "zoo"
    zoo.add_run(tiny_run, root, "good", "good model")
    for name in ("list_config", "bad_weights", "bad_metrics"):
        zoo.add_run(tiny_run, root, name, name)
    runs.write_json(root / "list_config" / runs.CONFIG, [1, 2])
    (root / "bad_weights" / runs.WEIGHTS).write_bytes((root / "bad_weights" / runs.WEIGHTS).read_bytes()[:100])
    runs.write_json(root / "bad_metrics" / runs.METRICS, ["not", "an", "object"])
    broken = {name: snapshot(root / name) for name in ("list_config", "bad_weights", "bad_metrics")}
    argv = ["reproduce", "--zoo", str(root), "--table", str(tmp_path / "R.md"), "--figures", str(tmp_path / "fig"),
            "--num-train", "200", "--num-test", "100"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    for name in broken:
        assert f"warning: skipped {name} ({root / name})" in captured.out
        assert snapshot(root / name) == broken[name]  # left as it was
    assert "3 zoo model(s) skipped" in captured.err and "Traceback" not in captured.err
    assert "| good model |" in (tmp_path / "R.md").read_text()
    # every model broken: a refusal, not an empty table
    runs.write_json(root / "good" / runs.CONFIG, {"model": "x"})
    refused(argv, capsys, "no model could be evaluated (4 skipped)")


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "{run}", "--num-train", "0"], "--num-train must be in"),
    (["sweep", "{root}/laughs.yaml", "--out", "{root}/out"], "aliases"),
    (["traverse", "{run}", "--png", "{root}/missing/t.png"], "does not exist"),
])
def test_refusals_in_a_real_process_are_one_line(files, argv, needle):
    argv = [a.format(run=files / "run", root=files) for a in argv]
    result = subprocess.run([sys.executable, "-m", "mtc_core", *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr and "Traceback" not in result.stderr


def test_evaluate_still_works_after_the_checks(files, capsys):
    run = files / "evaluated"
    shutil.copytree(files / "run", run)
    assert main(["evaluate", str(run), "--num-train", "200", "--num-test", "100"]) == 0
    evaluation = runs.read_json(run / runs.METRICS)["evaluation"]
    assert evaluation["settings"]["num_train"] == 200 and np.isfinite(evaluation["recon"])


def test_the_fuzz_script_finds_nothing_on_a_small_campaign():
    # bench/fuzz.py at 1/40 of its default size (~20 inputs of every kind); the full campaign is in bench/RESULTS.md
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import fuzz

    report = fuzz.campaign(seed=5, scale=0.025, timeout=60, subprocesses=0, say=lambda *_: None)
    total = sum(report["results"].values(), start=Counter())
    assert total["refused"] > 10 and not any(total[kind] for kind in fuzz.FAILURES), dict(report["examples"])


def test_evaluate_and_zoo_add_on_a_full_disk_are_one_line_and_leave_nothing(files, tmp_path, capsys, disk_full):
    run = tmp_path / "run"
    shutil.copytree(files / "run", run)
    zoo_dir = tmp_path / "zoo"
    before = snapshot(run)
    disk_full()
    assert main(["evaluate", str(run), "--num-train", "200", "--num-test", "100"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"mtc_core evaluate: error: {run / runs.METRICS}: No space left on device"
    assert main(["zoo-add", str(run), "--name", "full", "--label", "full", "--zoo", str(zoo_dir)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mtc_core zoo-add: error: ") and line.endswith(f"/{runs.WEIGHTS}: No space left on device")
    disk_full.off()
    assert snapshot(run) == before and [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    assert list(zoo_dir.iterdir()) == []  # no half-written model, no hidden temporary folder
    assert main(["zoo-add", str(run), "--name", "full", "--label", "full", "--zoo", str(zoo_dir)]) == 0
    assert zoo.read_index(zoo_dir)[0]["label"] == "full"
