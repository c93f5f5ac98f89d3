import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.runs import zoo


def test_add_run_halves_weights_and_lists_it(tiny_run, tmp_path):
    root = tmp_path / "zoo"
    target = zoo.add_run(tiny_run, root, "tiny", "a tiny model")
    entries = zoo.read_index(root)
    assert [(e["label"], e["model"], e["dataset"]) for e in entries] == [("a tiny model", "beta_vae", "toy")]
    assert entries[0]["path"] == str(target.resolve())
    original, _ = runs.load_run(tiny_run)
    loaded, config = runs.load_run(target)
    assert config["command"] == "pytest fixture"
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, original.state_dict()[name].half().float())
    zoo.add_run(tiny_run, root, "tiny", "relabelled", overwrite=True)  # re-adding replaces, never duplicates
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
    config = runs.read_json(tiny_run / runs.CONFIG)
    run = tmp_path / "run"
    run.mkdir()
    for f in (runs.WEIGHTS,):
        (run / f).write_bytes((tiny_run / f).read_bytes())
    runs.write_json(run / runs.CONFIG, {**config, "status": "cancelled"})
    with pytest.raises(ValueError, match="only complete runs"):
        zoo.add_run(run, tmp_path / "zoo", "x", "x")


def test_factor_vae_enters_the_zoo_without_its_discriminator(tmp_path, tiny_config):
    from mtc_core.training.trainer import train

    run = train(tiny_config(model="factor_vae", steps=5), tmp_path / "fvae")
    target = zoo.add_run(run.run_dir, tmp_path / "zoo", "fvae", "FactorVAE")
    loaded, config = runs.load_run(target)
    assert config["auxiliary_weights"] is False
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected = run.model.eval().encode(x)[0]
        assert torch.allclose(loaded.encode(x)[0], expected, atol=1e-2)
    # the same file next to a config claiming complete weights is refused
    runs.write_json(target / runs.CONFIG, {**config, "auxiliary_weights": True})
    with pytest.raises(runs.CheckpointError, match="missing"):
        runs.load_run(target)


def _snapshot(root):
    """Every file under the zoo folder, hidden ones included, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def zoo_with_tiny(tiny_run, tmp_path):
    root = tmp_path / "zoo"
    zoo.add_run(tiny_run, root, "tiny", "a tiny model")
    (root / "tiny" / runs.METRICS).write_text(json.dumps({"evaluation": {"mig": 0.5}}))  # evaluated in the zoo
    return root


def test_relabel_in_place_keeps_history_and_metrics(zoo_with_tiny):
    root = zoo_with_tiny
    before = _snapshot(root / "tiny")
    zoo.add_run(root / "tiny", root, "tiny", "relabelled", overwrite=True)
    assert [e["label"] for e in zoo.read_index(root)] == ["relabelled"]
    assert _snapshot(root / "tiny") == before
    assert sorted(p.name for p in root.iterdir()) == [zoo.INDEX, "tiny"]  # no temporary folder left


@pytest.mark.parametrize("failure", ["too_big", "config_write", "copy_does_not_load", "bad_name", "not_complete", "no_dataset",
                                     "malformed_index"])
def test_a_refused_add_leaves_the_zoo_as_it_was(zoo_with_tiny, tiny_run, tmp_path, monkeypatch, failure):
    root, source, name = zoo_with_tiny, tiny_run, "tiny"
    if failure == "too_big":
        monkeypatch.setattr(zoo, "MAX_MODEL_BYTES", 100)
    elif failure == "config_write":
        real = runs.write_json

        def fail_on_config(path, obj):
            if path.name == runs.CONFIG:
                raise OSError(28, "No space left on device")
            real(path, obj)

        monkeypatch.setattr(runs, "write_json", fail_on_config)
    elif failure == "copy_does_not_load":
        real_load = runs.load_run

        def only_the_source_loads(path):
            if Path(path) != source:
                raise runs.CheckpointError(f"{path}: broken copy")
            return real_load(path)

        monkeypatch.setattr(runs, "load_run", only_the_source_loads)
    elif failure == "bad_name":
        name = zoo.INDEX
    elif failure in ("not_complete", "no_dataset", "malformed_index"):
        source = tmp_path / "source"
        shutil.copytree(tiny_run, source)
        config = runs.read_json(source / runs.CONFIG)
        if failure == "not_complete":
            runs.write_json(source / runs.CONFIG, {**config, "status": "running"})
        elif failure == "no_dataset":
            runs.write_json(source / runs.CONFIG, {k: v for k, v in config.items() if k != "dataset"})
        else:
            (root / zoo.INDEX).write_text(json.dumps({"format_version": 1, "runs": "nope"}))
    before = _snapshot(root)
    with pytest.raises((ValueError, OSError)):
        zoo.add_run(source, root, name, "new label", overwrite=True)
    assert _snapshot(root) == before
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]


def test_replacing_a_zoo_model_swaps_the_whole_folder(zoo_with_tiny, tmp_path, tiny_config):
    from mtc_core.training.trainer import train

    root = zoo_with_tiny
    other = train(tiny_config(model="vae", steps=5), tmp_path / "other").run_dir
    zoo.add_run(other, root, "tiny", "now a VAE", overwrite=True)
    loaded, config = runs.load_run(root / "tiny")
    assert config["model"]["name"] == "vae" and type(loaded).__name__ == "VAE"
    assert runs.read_json(root / "tiny" / runs.METRICS) == runs.read_json(other / runs.METRICS)  # not the old model's metrics
    assert [(e["label"], e["model"]) for e in zoo.read_index(root)] == [("now a VAE", "vae")]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (root / "tiny").stat().st_mode & 0o777 == 0o777 & ~mask  # readable as a folder made by mkdir, not private
    assert (root / "tiny" / runs.WEIGHTS).stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("case, needle", [("zoo_is_a_file", "must be a folder"), ("name_is_the_index", "index file"),
                                          ("no_dataset", "no dataset spec"), ("missing_run", "not a run directory"),
                                          ("name_is_a_file", "not a model folder")])
def test_cli_zoo_add_refusals_exit_2_with_one_line(tiny_run, tmp_path, capsys, case, needle):
    zoo_dir, run, name = tmp_path / "zoo", tiny_run, "m"
    zoo_dir.mkdir()
    if case == "zoo_is_a_file":
        zoo_dir = tmp_path / "file"
        zoo_dir.write_text("x")
    elif case == "name_is_the_index":
        name = zoo.INDEX
    elif case == "no_dataset":
        run = tmp_path / "nodata"
        model, _ = runs.load_run(tiny_run)
        runs.save_run(model, {"model": {"name": "beta_vae"}}, run)
    elif case == "missing_run":
        run = tmp_path / "nowhere"
    elif case == "name_is_a_file":
        (zoo_dir / "m").write_text("not a folder")
    before = _snapshot(tmp_path)
    assert main(["zoo-add", str(run), "--name", name, "--label", "L", "--zoo", str(zoo_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert _snapshot(tmp_path) == before and not (zoo_dir / name).is_dir()


def test_zoo_add_never_replaces_a_folder_that_is_not_a_zoo_model(tiny_run, tmp_path, capsys):
    root = tmp_path / "zoo"
    zoo.add_run(tiny_run, root, "listed", "a listed model")
    thesis = root / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\chapter{Results}")
    (thesis / "results.csv").write_text("model,tc\nvae,0.1\n")
    unlisted = root / "copied-by-hand"  # a valid run, but not one the zoo lists
    shutil.copytree(tiny_run, unlisted)
    (root / "listed" / "notes.txt").write_text("mine")  # a zoo model the user keeps notes in
    before = _snapshot(root)
    for name, needle in (("thesis", "not one of the zoo's models"), ("copied-by-hand", "not one of the zoo's models"),
                         ("listed", "notes.txt")):
        for overwrite in ([], ["--overwrite"]):
            argv = ["zoo-add", str(tiny_run), "--name", name, "--label", "L", "--zoo", str(root), *overwrite]
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith("mtc_core zoo-add: error: ") and needle in err, err
    assert _snapshot(root) == before
    assert sorted(p.name for p in root.iterdir()) == sorted([zoo.INDEX, "copied-by-hand", "listed", "thesis"])


def test_zoo_add_under_an_existing_name_needs_overwrite(zoo_with_tiny, tmp_path, tiny_config, capsys):
    from mtc_core.training.trainer import train

    root = zoo_with_tiny
    other = train(tiny_config(model="vae", steps=5), tmp_path / "other").run_dir
    before = _snapshot(root)
    assert main(["zoo-add", str(other), "--name", "tiny", "--label", "now a VAE", "--zoo", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already has a model named 'tiny'" in err and "--overwrite" in err, err
    assert _snapshot(root) == before
    assert main(["zoo-add", str(other), "--name", "tiny", "--label", "now a VAE", "--zoo", str(root), "--overwrite"]) == 0
    assert capsys.readouterr().out.startswith(f"replaced {root / 'tiny'}")
    assert runs.load_run(root / "tiny")[1]["model"]["name"] == "vae"
    assert [(e["label"], e["model"]) for e in zoo.read_index(root)] == [("now a VAE", "vae")]
    assert sorted(p.name for p in root.iterdir()) == [zoo.INDEX, "tiny"]  # the old copy and the temporary one are gone


def test_the_swap_keeps_the_old_model_until_the_new_one_is_in_place(zoo_with_tiny, tmp_path, tiny_config, monkeypatch):
    from mtc_core.training.trainer import train

    root = zoo_with_tiny
    other = train(tiny_config(model="vae", steps=5), tmp_path / "other").run_dir
    before = _snapshot(root)
    real_rename = Path.rename
    seen = []

    def rename_in_fails(self, target):  # the new copy cannot be renamed in: the old model goes back where it was
        seen.append((self.name, Path(target).name))
        if Path(target) == root / "tiny" and self.name.startswith(".tiny.") and ".old." not in self.name:
            assert any(p.name.startswith(".tiny.old.") for p in root.iterdir())  # kept aside, not deleted
            raise OSError(5, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_in_fails)
    with pytest.raises(OSError):
        zoo.add_run(other, root, "tiny", "now a VAE", overwrite=True)
    assert _snapshot(root) == before and len(seen) == 3  # aside, (in: refused), back
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]


def test_the_swap_never_deletes_a_folder_that_changed_meanwhile(zoo_with_tiny, tmp_path, monkeypatch):
    root = zoo_with_tiny
    original = zoo._not_a_zoo_run
    checks = []

    def user_file_appears(folder):  # the first check passes; a file appears before the swap looks again
        checks.append(folder)
        if len(checks) == 2:
            (folder / "draft.tex").write_text("mine")
        return original(folder)

    monkeypatch.setattr(zoo, "_not_a_zoo_run", user_file_appears)
    with pytest.raises(ValueError, match="changed meanwhile.*draft.tex"):
        zoo.add_run(root / "tiny", root, "tiny", "relabelled", overwrite=True)
    assert (root / "tiny" / "draft.tex").read_text() == "mine" and (root / "tiny" / runs.WEIGHTS).is_file()
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
