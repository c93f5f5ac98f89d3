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


def test_factor_vae_enters_the_zoo_without_its_discriminator(tmp_path, tiny_config):
    from mtc_core.train import train

    run = train(tiny_config(model="factor_vae", steps=5), tmp_path / "fvae")
    target = zoo.add_run(run.run_dir, tmp_path / "zoo", "fvae", "FactorVAE")
    loaded, config = io.load_run(target)
    assert config["auxiliary_weights"] is False
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected = run.model.eval().encode(x)[0]
        assert torch.allclose(loaded.encode(x)[0], expected, atol=1e-2)
    # the same file next to a config claiming complete weights is refused
    io.write_json(target / io.CONFIG, {**config, "auxiliary_weights": True})
    with pytest.raises(io.CheckpointError, match="missing"):
        io.load_run(target)
