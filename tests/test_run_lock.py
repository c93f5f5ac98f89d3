"""The run folder's lock (mtc_core.runs.lock): a run that a process trains is refused to every other process that would
change it (delete, train, resume, zoo-add, zip import), and a killed trainer leaves no lock behind. Real processes and
real locks: a `python -c` holder, and a real `python -m mtc_core train`."""

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from mtc_core import runs
from mtc_core.cli.commands import main
from mtc_core.runs import checkpoint as ckpt
from mtc_core.runs import zoo
from mtc_core.runs.zip_import import ImportRefused, import_run
from mtc_core.training.trainer import check_out_folder, train

ROOT = Path(__file__).resolve().parent.parent
TINY_FLAGS = ["--batch-size", "8", "--eval-every", "3", "--eval-size", "8", "--latent-dim", "2", "--hidden", "8", "--device", "cpu"]
HOLD = ("import sys, time\n"
        "from contextlib import ExitStack\n"
        "from mtc_core.runs.lock import hold_run_lock\n"
        "stack = ExitStack()\n"
        "for path in sys.argv[1:]:\n"
        "    stack.enter_context(hold_run_lock(path, create=False))\n"
        "print('held', flush=True)\n"
        "time.sleep(300)\n")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in (runs.WEIGHTS, runs.CONFIG):
            archive.write(folder / name, name)
    return buffer.getvalue()


def start(argv: list[str], wait_for, log: Path) -> subprocess.Popen:
    """A process started with `argv`, once `wait_for(process)` says it holds what it should; its stderr goes to `log`."""
    with open(log, "w") as errors:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not wait_for(proc):
        if proc.poll() is not None:
            raise AssertionError(f"the holder ended early: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the holder did not take the lock in time")
        time.sleep(0.05)
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.fixture
def app_runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("MTC_RUNS_DIR", str(root))
    monkeypatch.setenv("MTC_ZOO_DIR", str(tmp_path / "zoo"))
    return root


def refused(argv: list[str], capsys, needle: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"mtc_core {argv[0]}: error: ") and needle in err, err
    return err


def test_a_held_run_is_refused_to_every_other_process_until_its_holder_dies(app_runs, tmp_path, tiny_run, tiny_config, capsys):
    from services import run_listing

    run = app_runs / "x"
    train(tiny_config(steps=10, checkpoint_every=5), run)
    zoo_root = tmp_path / "zoo"
    zoo.add_run(run, zoo_root, "m", "a zoo model")
    assert not (run / runs.LOCK).exists() and not (zoo_root / "m" / runs.LOCK).exists()  # a finished run keeps no lock file
    holder = start(["-c", HOLD, str(run), str(zoo_root / "m")], lambda p: p.stdout.readline().strip() == "held",
                   tmp_path / "holder.log")
    try:
        busy = f"{run} is being trained by process {holder.pid} (since "
        assert runs.run_lock_holder(run)["pid"] == holder.pid
        assert run_listing.busy(run).startswith(busy)
        [entry] = run_listing.user_runs()
        assert entry.busy and entry.status == "running" and not run_listing.interrupted_runs()
        before, zoo_before = snapshot(run), snapshot(zoo_root)

        with pytest.raises(ValueError, match="being trained by process"):  # the app's Delete
            run_listing.delete_run(run)
        with pytest.raises(runs.RunBusy, match=f"being trained by process {holder.pid}"):  # train --resume, the function
            train(tiny_config(steps=20, checkpoint_every=5), run, resume=True)
        with pytest.raises(runs.RunBusy):
            train(tiny_config(steps=20, checkpoint_every=5), run, overwrite=True)
        flags = ["--steps", "20", "--checkpoint-every", "5", "--batch-size", "16", "--eval-every", "10", "--eval-size", "32",
                 "--latent-dim", "4", "--hidden", "32", "--lr", "1e-3", "--device", "cpu", "--model", "beta_vae"]
        for extra in (["--resume"], ["--overwrite"], []):  # the CLI: resume, replace, or a second run into the folder
            refused(["train", "--out", str(run), *flags, *extra], capsys, busy)
        refused(["zoo-add", str(run), "--name", "new", "--label", "L", "--zoo", str(zoo_root)], capsys, busy)  # as the source
        refused(["evaluate", str(run), "--num-train", "50", "--num-test", "20"], capsys, busy)  # its metrics.json too
        refused(["zoo-add", str(tiny_run), "--name", "m", "--label", "L", "--zoo", str(zoo_root), "--overwrite"],
                capsys, f"{zoo_root / 'm'} is being trained by process {holder.pid}")  # as the target
        with pytest.raises(ImportRefused, match=f"being trained by process {holder.pid}"):  # a zip imported into its name
            import_run(zipped(run), app_runs, "x")
        assert snapshot(run) == before and snapshot(zoo_root) == zoo_before
        assert not (zoo_root / "new").exists()
    finally:
        kill(holder)

    # the OS let go of the lock with the process: a hidden file nobody holds is left, and nothing trips over it
    assert (run / runs.LOCK).is_file() and runs.run_lock_holder(run) is None and run_listing.busy(run) is None
    assert runs.clean_orphans(run) == [] and (run / runs.LOCK).is_file()
    [entry] = run_listing.user_runs()
    assert not entry.busy and entry.status == "complete" and entry.problem is None
    check_out_folder(run, resume=True, overwrite=False)
    result = train(tiny_config(steps=20, checkpoint_every=5), run, resume=True)
    assert result.status == "complete" and result.step == 20
    assert not (run / runs.LOCK).exists()  # taken over and removed when the training ended
    zoo.add_run(run, zoo_root, "m", "relabelled", overwrite=True)
    run_listing.delete_run(run)
    assert not run.exists()


def test_a_real_training_holds_its_lock_and_a_killed_one_resumes(app_runs, tmp_path, capsys):
    from services import run_listing

    run = app_runs / "cli"
    flags = [*TINY_FLAGS, "--checkpoint-every", "5"]
    trainer = start(["-m", "mtc_core", "train", "--out", str(run), "--steps", "10000000", *flags],
                    # config.json too: the trainer writes it after the checkpoint and the weights (the listing reads it)
                    lambda p: all((run / f).is_file() for f in (ckpt.CHECKPOINT, runs.CONFIG)) and runs.run_lock_holder(run) is not None,
                    tmp_path / "train.log")
    try:
        assert runs.run_lock_holder(run)["pid"] == trainer.pid
        [entry] = run_listing.user_runs()
        assert entry.busy and entry.status == "running" and not run_listing.interrupted_runs()
        # a second `train --resume` on the folder does not run beside it
        refused(["train", "--out", str(run), "--resume", "--steps", "10000000", *flags], capsys,
                f"{run} is being trained by process {trainer.pid}")
        with pytest.raises(ValueError, match=f"being trained by process {trainer.pid}"):
            run_listing.delete_run(run)
        assert trainer.poll() is None and run.is_dir()
    finally:
        kill(trainer)

    assert runs.run_lock_holder(run) is None
    [entry] = run_listing.user_runs()
    assert not entry.busy and entry.status == "interrupted" and run_listing.interrupted_runs() == [entry]
    step = runs.read_json(run / runs.CONFIG)["step"]
    assert main(["train", "--out", str(run), "--resume", "--steps", str(step + 10), *flags]) == 0, capsys.readouterr().err
    assert runs.read_json(run / runs.CONFIG)["status"] == "complete" and not (run / runs.LOCK).exists()


def test_one_process_cannot_train_a_folder_twice_at_once(tmp_path, tiny_config):
    run = tmp_path / "run"
    with runs.hold_run_lock(run):
        assert run.is_dir() and (run / runs.LOCK).is_file()
        assert runs.run_lock_holder(run)["pid"] == os.getpid()
        with pytest.raises(runs.RunBusy, match=f"being trained by process {os.getpid()}"):
            train(tiny_config(steps=5), run)
    assert not run.exists()  # made for the lock, removed when nothing was put in it


def test_a_refused_training_leaves_no_folder_and_no_lock(tmp_path, tiny_config):
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError, match="image_shape"):
        train(tiny_config(model_params={"latent_dim": 2, "hidden": 8, "image_shape": [1, 8, 8]}), out)
    assert not (tmp_path / "a").exists()


def test_a_stale_lock_file_is_not_a_run_file(tmp_path, tiny_run, tiny_config):
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.LOCK).write_text('{"pid": 1, "since": "2020-01-01 00:00:00"}')  # what a killed trainer leaves
    assert runs.run_lock_holder(run) is None
    check_out_folder(run, resume=False, overwrite=False)  # an empty folder as far as a new run is concerned
    train(tiny_config(steps=5), run)
    assert sorted(p.name for p in run.iterdir()) == sorted(ckpt.run_files(run))
    # a run zipped with a leftover lock file imports without it
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in (runs.WEIGHTS, runs.CONFIG, runs.LOCK):
            archive.writestr(f"run/{name}", (tiny_run / name).read_bytes() if name != runs.LOCK else b"{}")
    target = import_run(buffer.getvalue(), tmp_path / "runs", "imported")
    assert sorted(p.name for p in target.iterdir()) == sorted([runs.WEIGHTS, runs.CONFIG])
