import math
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
