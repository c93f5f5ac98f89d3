import json

import pytest
import torch

from mtc_core import io, zoo
from mtc_core.__main__ import main


def test_add_run_halves_weights_and_lists_it(tiny_run, tmp_path):
    root = tmp_path / "zoo"
    target = zoo.add_run(tiny_run, root, "tiny", "a tiny model")
    entries = zoo.read_index(root)
    assert [(e["label"], e["model"], e["dataset"]) for e in entries] == [("a tiny model", "beta_vae", "toy")]
    assert entries[0]["path"] == str(target.resolve())
    original, _ = io.load_run(tiny_run)
    loaded, config = io.load_run(target)
    assert config["command"] == "pytest fixture"
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, original.state_dict()[name].half().float())
    zoo.add_run(tiny_run, root, "tiny", "relabelled")  # re-adding replaces, never duplicates
    assert [e["label"] for e in zoo.read_index(root)] == ["relabelled"]


def test_cli_zoo_add(tiny_run, tmp_path, capsys):
    assert main(["zoo-add", str(tiny_run), "--name", "t", "--label", "T", "--zoo", str(tmp_path)]) == 0
    assert main(["zoo-add", str(tiny_run), "--name", "../escape", "--label", "T", "--zoo", str(tmp_path)]) == 2
    assert "zoo name" in capsys.readouterr().err


@pytest.mark.parametrize("index, match", [
    ({"runs": []}, "format_version"),
    ({"format_version": 1, "runs": [{"label": "no path"}]}, "path"),
    ({"format_version": 1, "runs": [{"path": "../../etc"}]}, "leaves the zoo"),
])
def test_malformed_index_raises(tmp_path, index, match):
    (tmp_path / zoo.INDEX).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=match):
        zoo.read_index(tmp_path)


def test_incomplete_run_is_refused(tiny_run, tmp_path):
    config = io.read_json(tiny_run / io.CONFIG)
    run = tmp_path / "run"
    run.mkdir()
    for f in (io.WEIGHTS,):
        (run / f).write_bytes((tiny_run / f).read_bytes())
    io.write_json(run / io.CONFIG, {**config, "status": "cancelled"})
    with pytest.raises(ValueError, match="only complete runs"):
        zoo.add_run(run, tmp_path / "zoo", "x", "x")
