import numpy as np
import pytest

from mtc_core.training.trainer import TrainConfig

TINY_MLP = {"latent_dim": 4, "hidden": 32}


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """A test's training with num_threads set (torch.set_num_threads, in the thread that trains) does not leak into the
    next test's threads."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_tiny_config(**overrides) -> TrainConfig:
    """A few-second training on the toy with a small MLP."""
    params = {"model": "beta_vae", "model_params": dict(TINY_MLP), "dataset": {"name": "toy"}, "steps": 20,
              "batch_size": 16, "lr": 1e-3, "eval_every": 10, "eval_size": 32, "checkpoint_every": 10, "device": "cpu"}
    params.update(overrides)
    return TrainConfig(**params)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One trained tiny run directory shared by read-only tests."""
    from mtc_core.training.trainer import train

    path = tmp_path_factory.mktemp("runs") / "tiny"
    train(make_tiny_config(steps=30), path, command="pytest fixture")
    return path


@pytest.fixture
def tiny_config():
    return make_tiny_config


class _FullFile:
    """A file object whose writes find the disk full: half of the first write lands, then ENOSPC (as write(2) does)."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        import errno
        import os

        self.file.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.fixture
def disk_full(monkeypatch):
    """`disk_full(match="")`: from now on, files opened through os.fdopen (every atomic write of a run, a kept codes
    file) whose path contains `match` find the disk full; `disk_full.off()` frees it. Runs anywhere, unlike a real
    full file system (`small_disk`)."""
    import os

    real = os.fdopen
    state = {"match": None}

    def fdopen(fd, *args, **kwargs):
        file = real(fd, *args, **kwargs)
        path = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if state["match"] is not None and state["match"] in path and "w" in (args[0] if args else kwargs.get("mode", "r")):
            return _FullFile(file)
        return file

    monkeypatch.setattr(os, "fdopen", fdopen)

    def fail(match: str = "") -> None:
        state["match"] = match

    fail.off = lambda: state.update(match=None)
    return fail


@pytest.fixture
def small_disk(tmp_path):
    """A real 20 MB file system (tmpfs) at tmp_path / "disk", with `small_disk.leave(n)` filling it to n free bytes and
    `small_disk.free()` emptying the filler. Skipped where this process may not mount one (not root, a container
    without CAP_SYS_ADMIN): the `disk_full` twin of each test covers a full disk everywhere."""
    import os
    import shutil
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a 20 MB tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a 20 MB tmpfs here: {done.stderr.strip() or done.returncode}")
    filler = tmp_path / "disk" / "filler"

    class Disk(type(disk)):
        def leave(self, free_bytes: int) -> None:
            filler.unlink(missing_ok=True)
            stats = os.statvfs(disk)
            with open(filler, "wb") as f:
                f.write(bytes(max(0, stats.f_bavail * stats.f_frsize - free_bytes)))

        def free(self) -> None:
            filler.unlink(missing_ok=True)

    try:
        yield Disk(disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
