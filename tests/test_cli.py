import math
import re
import subprocess
import sys

import pytest
from PIL import Image

from mtc_core import runs
from mtc_core.cli.commands import main


def test_train_traverse_roundtrip(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "beta_tcvae", "--out", str(out), "--steps", "12", "--batch-size", "16", "--eval-every", "6",
                 "--eval-size", "32", "--latent-dim", "3", "--hidden", "16", "--beta", "3", "--estimator", "mss", "--device", "cpu"])
    assert code == 0
    _, config = runs.load_run(out)
    assert config["model"]["params"]["beta"] == 3.0 and config["model"]["params"]["estimator"] == "mss"
    assert config["train"]["steps"] == 12
    assert config["command"].startswith("python -m mtc_core train --model beta_tcvae")
    png, gif = tmp_path / "t.png", tmp_path / "t.gif"
    assert main(["traverse", str(out), "--png", str(png), "--gif", str(gif), "--steps", "5"]) == 0
    assert Image.open(png).size[0] > 5 * 32
    anim = Image.open(gif)
    assert anim.is_animated and anim.n_frames == 8  # 5 steps forward, 3 back


def test_train_takes_the_cores_other_programs_leave_free(tmp_path, capsys, monkeypatch):
    """As the app gives a training that runs alone: every free core, a core other programs keep busy is not free
    (measured from /proc while the config is checked; tests/test_cores.py fakes /proc), --num-threads fixes the count.
    It says what it chose, and the config records no thread count it did not get."""
    import torch

    from mtc_core.training import cores

    tiny = ["--steps", "2", "--batch-size", "8", "--eval-size", "8", "--latent-dim", "2", "--hidden", "8", "--device", "cpu"]
    monkeypatch.setattr(cores, "CORES", 2)
    monkeypatch.setattr(cores.LoadProbe, "others", lambda self: 1.2)
    assert main(["train", "--out", str(tmp_path / "busy"), *tiny]) == 0
    assert "threads: 1 (1 of 2 cores busy with other programs)" in capsys.readouterr().out.splitlines()
    assert torch.get_num_threads() == 1 and runs.read_json(tmp_path / "busy" / runs.CONFIG)["train"]["num_threads"] == 0
    monkeypatch.setattr(cores.LoadProbe, "others", lambda self: 0.1)
    assert main(["train", "--out", str(tmp_path / "free"), *tiny]) == 0
    assert "threads: 2 of 2 cores free" in capsys.readouterr().out.splitlines() and torch.get_num_threads() == 2
    assert main(["train", "--out", str(tmp_path / "fixed"), "--num-threads", "1", *tiny]) == 0
    assert "threads: 1 (--num-threads)" in capsys.readouterr().out.splitlines() and torch.get_num_threads() == 1


@pytest.mark.parametrize("argv, needle", [
    (["train", "--out", "x", "--steps", "abc"], "--steps"),
    (["train", "--out", "x", "--model", "nope"], "unknown model"),
    (["train", "--out", "x", "--beta", "-2", "--model", "beta_vae"], "beta"),
    (["train", "--out", "x", "--bogus", "1"], "unrecognized"),
    (["train", "--out", "x", "--lr", "5"], "lr"),
    (["frobnicate"], "unknown command"),
    (["theory", "--d", "1"], "d"),
])
def test_bad_flags_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_theory_table():
    result = subprocess.run([sys.executable, "-m", "mtc_core", "theory", "--d", "2", "--s", "1", "--rho", "0.5"],
                            capture_output=True, text=True, check=True)
    row = [line for line in result.stdout.splitlines() if line.startswith("| 2 | 0.5 |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # closed forms of docs/design.md, "The theorem": TC(mean) = -1/2 log(1 - 0.25); sampled rho' = 0.25; bound at rho' = 0.5
    assert float(cells[2]) == pytest.approx(-0.5 * math.log(0.75), abs=1e-4)
    assert float(cells[3]) == pytest.approx(-0.5 * math.log(1 - 0.0625), abs=1e-4)
    assert float(cells[4]) == pytest.approx(-0.5 * math.log(0.75), abs=1e-4)


def test_report_writes_one_html_file_and_refuses_a_folder_without_a_run(tmp_path, tiny_run, capsys):
    out = tmp_path / "kept" / "tiny.html"
    out.parent.mkdir()
    assert main(["report", str(tiny_run), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and f"MTC Explorer report: {tiny_run.name}" in text
    assert "data:image/png;base64," in text and "<script" not in text  # the traversal inline, nothing to run
    assert f"wrote {out}" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["tiny.html"]  # written atomically: no temporary file left
    for argv, needle in ((["report", str(tmp_path)], "not a run folder (no config.json)"),
                         (["report", str(tmp_path / "missing")], "not a folder"),
                         (["report", str(tiny_run), "--out", str(tmp_path / "r.txt")], "unexpected file extension '.txt'")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err
    result = subprocess.run([sys.executable, "-m", "mtc_core", "report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_evaluate_prints_its_stages_and_one_note_per_kind_of_warning(tmp_path, tiny_run, capsys, monkeypatch):
    """Stages on stderr with the elapsed time; a library's warnings as one line of ours each, with how many and where."""
    import shutil

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mtc_core import metrics

    real_mig = metrics.mig

    def mig_that_fits_a_classifier_badly(*args, **kwargs):  # a real sklearn ConvergenceWarning, twice per call
        x = np.random.default_rng(0).normal(size=(60, 3))
        for _ in range(2):
            LogisticRegression(max_iter=1).fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
        return real_mig(*args, **kwargs)

    monkeypatch.setattr(metrics, "mig", mig_that_fits_a_classifier_badly)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--num-train", "300", "--num-test", "150", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "| Gaussian TC (nats) |" in out  # the results stay on stdout
    lines = err.strip().splitlines()
    stages = [m.group(2) for line in lines if (m := re.match(r"^\[\s*(\d+\.\d) s\] (.+)$", line))]
    assert stages[0] == "encoding" and stages[-1] == "recon"
    assert {"mean: mig", "sampled: mig", "tc", "activity", "mean: factor_vae", "sampled: beta_vae"} <= set(stages)
    notes = [line for line in lines if line.startswith("note: ")]
    assert len(stages) + len(notes) == len(lines)  # nothing else: no raw warning text, no tracebacks
    (ours,) = [n for n in notes if "after 1 iteration" in n]
    assert ours.startswith("note: 4 ConvergenceWarnings from sklearn in mean: mig, sampled: mig: lbfgs failed to converge")
    assert ours.endswith("(the score uses each such fit as it stood when its iteration limit (sklearn's max_iter) was reached)")
