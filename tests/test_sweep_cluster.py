"""Sweeps on a cluster (issue 21, items 10-12): runs come home without a shared disk, lost nodes and retries are told in
the sweep's words, a killed driver leaves nothing running or writing, a checkpoint crosses device types.

Every Ray instance here is the test's own: a `ray.cluster_utils.Cluster` (whose convenience address file, which would
make a bare ray.init() elsewhere on this machine join it, is not written) or a sweep subprocess told RAY_ADDRESS=local.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtc_core import runs
from mtc_core.data import make_dataset
from mtc_core.runs import checkpoint as ckpt
from mtc_core.training import sweep, sweep_cluster, sweep_worker
from mtc_core.training.sweep_reaper import alive, descendants, process_start
from mtc_core.training.trainer import Callback, TrainConfig, _build, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"latent_dim": 3, "hidden": 16}
TRAIN = {"steps": 5, "batch_size": 16, "lr": 0.001, "eval_every": 5, "eval_size": 32, "device": "cpu"}
SPEC = {"dataset": {"name": "toy"}, "train": TRAIN, "seeds": [0, 1, 2],
        "models": [{"name": "beta_tcvae", "grid": {"beta": [2]}, "params": TINY}]}
NAMES = [f"beta_tcvae-beta=2-seed={s}" for s in (0, 1, 2)]


def _interrupt_at(config: TrainConfig, run_dir: Path, at: int):
    cancel = threading.Event()

    class Stop(Callback):
        def on_step(self, *, step, logs):
            if step == at:
                cancel.set()

    assert train(config, run_dir, callbacks=[Stop()], cancel=cancel).step == at


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / runs.WEIGHTS)


# --- a checkpoint of another device type (item 12) -------------------------------------------------------------------

def _fake_cuda_checkpoint(run_dir: Path) -> dict:
    """Rewrite the checkpoint as if it had been written on CUDA: its recorded device, and a CUDA generator's 16 bytes."""
    file = run_dir / ckpt.CHECKPOINT
    _, metadata = runs.read_safetensors_header(file)
    meta = json.loads(metadata["mtc_checkpoint"])
    meta["run"]["device"] = "cuda"
    tensors = load_file(file)
    tensors["torch_rng"] = torch.arange(16, dtype=torch.uint8)
    runs.atomic_save_file(tensors, file, metadata={"mtc_checkpoint": json.dumps(meta)})
    return {"meta": meta, "tensors": tensors}


def test_a_checkpoint_written_on_cuda_resumes_on_the_cpu(tmp_path):
    config = TrainConfig(model="vae", model_params=TINY, steps=6, batch_size=16, eval_every=2, eval_size=32, checkpoint_every=2,
                         device="cpu", seed=3)
    base = tmp_path / "base"
    _interrupt_at(config, base, 2)
    saved = _fake_cuda_checkpoint(base)

    # restore itself: weights and the numpy generator exactly, the noise generator reseeded from (seed, step)
    run = _build(config, base, torch.device("cpu"), make_dataset(config.dataset), "")
    step, history = ckpt.restore(base, model=run.model, optimizers=run.optimizers, rng=run.rng, noise=run.model.noise,
                                 run=run.identity, steps=config.steps)
    assert step == 2 and [r["step"] for r in history] == [2]
    assert run.rng.bit_generator.state == saved["meta"]["numpy_rng"]
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, saved["tensors"][f"model.{name}"]), name
    expected = torch.Generator()
    seed = ckpt.reseeded_noise(expected, 3, 2)
    assert torch.equal(run.model.noise.get_state(), expected.get_state())
    [note] = run.identity["resume_notes"]
    assert "checkpoint written on cuda" in note and "reseeded deterministically" in note and str(seed) in note

    # the trainer: the run completes, says so in config.json, and the reseeded stream is the same on every resume
    copies = []
    for k in range(2):
        copies.append(tmp_path / f"copy{k}")
        shutil.copytree(base, copies[-1])
        result = train(config, copies[-1], resume=True)
        assert (result.status, result.step) == ("complete", 6)
    config_json = runs.read_json(copies[0] / runs.CONFIG)
    assert config_json["resume_notes"] == [note] and config_json["device"] == "cpu"
    first, second = _weights(copies[0]), _weights(copies[1])
    assert all(torch.equal(first[k], second[k]) for k in first)
    uninterrupted = tmp_path / "straight"
    train(config, uninterrupted)
    straight = _weights(uninterrupted)
    assert any(not torch.equal(first[k], straight[k]) for k in first)  # the noise stream did change: not silently "exact"
    # a later resume keeps the note (it travels in every later checkpoint)
    _, metadata = runs.read_safetensors_header(copies[0] / ckpt.CHECKPOINT)
    assert json.loads(metadata["mtc_checkpoint"])["run"]["resume_notes"] == [note]


def test_a_foreign_generator_state_of_the_wrong_kind_is_refused(tmp_path):
    config = TrainConfig(model="vae", model_params=TINY, steps=4, batch_size=16, eval_every=2, eval_size=32, checkpoint_every=2,
                         device="cpu")
    _interrupt_at(config, tmp_path, 2)
    file = tmp_path / ckpt.CHECKPOINT
    _, metadata = runs.read_safetensors_header(file)
    meta = json.loads(metadata["mtc_checkpoint"])
    meta["run"]["device"] = "cuda"
    tensors = load_file(file)
    tensors["torch_rng"] = torch.zeros(4, 4)
    runs.atomic_save_file(tensors, file, metadata={"mtc_checkpoint": json.dumps(meta)})
    with pytest.raises(runs.CheckpointError, match="torch_rng must be a uint8 vector"):
        train(config, tmp_path, resume=True)


# --- pieces without Ray -----------------------------------------------------------------------------------------------

def test_bring_back_writes_the_returned_files_and_drops_stale_ones(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ckpt.CHECKPOINT).write_bytes(b"old checkpoint")
    (run_dir / sweep.ERROR).write_text("old failure")
    sweep_cluster.bring_back(run_dir, {runs.CONFIG: b'{"status": "complete"}', runs.HISTORY: b'{"step": 1}\n'})
    assert sorted(p.name for p in run_dir.iterdir()) == [runs.CONFIG, runs.HISTORY]
    assert runs.read_json(run_dir / runs.CONFIG) == {"status": "complete"}
    with pytest.raises(ValueError, match=r"unexpected files \['../evil'\]"):
        sweep_cluster.bring_back(run_dir, {"../evil": b""})


def test_the_driver_watch_notices_a_dead_driver(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(child.pid)
    child.wait()
    me = sweep_worker.driver_identity()
    assert sweep_worker.DriverWatch(me).gone(True) is None
    gone = sweep_worker.DriverWatch({**me, "pid": child.pid, "start": start})
    assert gone.gone(True) == f"the sweep's driver (pid {child.pid}) is gone"
    assert sweep_worker.DriverWatch({**me, "machine": "elsewhere", "pid": child.pid}).gone(True) is None  # another machine


# --- a two-node cluster without a shared disk, then a lost node (items 10, 12) ------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    roots = [tmp_path_factory.mktemp(f"node{k}") for k in range(2)]
    patch = pytest.MonkeyPatch()
    patch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
    # a lost node is declared dead after ~2.5 s instead of Ray's default ~30 s: still after the retried run has ended
    # (its 60 steps take well under a second), the race `sweep._await_loss` is there for (CI met it at ~1 s)
    fast = {"health_check_period_ms": 300, "health_check_timeout_ms": 300, "health_check_failure_threshold": 8}
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": fast})
    nodes = [made.add_node(num_cpus=1, env_vars={sweep_worker.RUN_ROOT_ENV: str(root), "OMP_NUM_THREADS": "1"}) for root in roots]
    yield made, nodes, roots
    if ray.is_initialized():
        ray.shutdown()
    made.shutdown()
    patch.undo()


def test_runs_trained_on_node_local_disks_come_home_and_a_rerun_skips_them(cluster, tmp_path, capfd):
    made, _, roots = cluster
    out = tmp_path / "out"
    interrupted = next(r for r in sweep.expand(SPEC) if r.name == NAMES[0])
    _interrupt_at(interrupted.config, out / NAMES[0], 2)
    runs.write_history(out / NAMES[0], [*runs.read_history(out / NAMES[0]), {"step": 1, "marker": "kept by the driver"}])
    lines = []
    outcomes = sweep.run_sweep(SPEC, out, address=made.address, log=lines.append)
    assert sorted((o.name, o.status) for o in outcomes) == [(n, "complete") for n in NAMES]
    for name in NAMES:
        model, config = runs.load_run(out / name)
        assert (config["status"], config["step"]) == ("complete", 5) and model.config.latent_dim == 3
        assert not (out / name / ckpt.CHECKPOINT).exists()  # a complete run comes home without its optimiser state
    # the interrupted run resumed on a node from the checkpoint the driver sent (its history keeps the marker)
    assert [r["step"] for r in runs.read_history(out / NAMES[0])] == [1, 5]
    assert any(line.startswith("[") and NAMES[0] in line and "resumed from step 2" in line for line in lines)
    assert not [p for root in roots for p in root.rglob("*") if p.is_file()]  # the nodes' scratch copies are gone
    assert not (out / sweep.TOKEN).exists() and "state-dump" not in capfd.readouterr().err
    before = {p: p.stat().st_mtime_ns for name in NAMES for p in (out / name).iterdir()}
    again = sweep.run_sweep(SPEC, out, address=made.address, log=lines.append)
    assert [o.status for o in again] == ["skipped"] * 3
    assert before == {p: p.stat().st_mtime_ns for name in NAMES for p in (out / name).iterdir()}


def test_a_lost_node_is_told_and_its_run_retried_exactly(cluster, tmp_path, capfd):
    made, nodes, roots = cluster
    spec = {**SPEC, "train": {**TRAIN, "steps": 60, "eval_every": 30, "checkpoint_every": 30}, "seeds": [0, 1]}
    out, lines, killed = tmp_path / "out", [], []

    def kill_second_node_once_it_trains():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(roots[1].rglob(runs.CONFIG)):
            time.sleep(0.02)
        killed.extend(p.parent.name for p in roots[1].rglob(runs.CONFIG))
        made.remove_node(nodes[1], allow_graceful=False)

    killer = threading.Thread(target=kill_second_node_once_it_trains)
    killer.start()
    outcomes = sweep.run_sweep(spec, out, address=made.address, log=lines.append)
    killer.join()
    [victim] = killed
    assert sorted((o.name, o.status) for o in outcomes) == [(f"beta_tcvae-beta=2-seed={s}", "complete") for s in (0, 1)]
    retried = next(o for o in outcomes if o.name == victim)
    assert retried.attempt == 2 and next(o for o in outcomes if o.name != victim).attempt == 1
    assert any(line.startswith("node ") and " lost (1 CPU)" in line for line in lines)
    progress = next(line for line in lines if line.startswith("[") and victim in line)
    assert "attempt 2: retried after its worker or node was lost" in progress and "1 slot on 1 node" in progress
    assert "1 retried after a lost worker or node" in lines[-1]
    # exact: the retried run equals the same run trained straight through here
    config = next(r.config for r in sweep.expand(spec) if r.name == victim)
    train(dataclasses.replace(config), tmp_path / "straight")
    got, want = _weights(out / victim), _weights(tmp_path / "straight")
    assert all(torch.equal(got[k], want[k]) for k in want)
    printed = capfd.readouterr()
    assert "state-dump" not in printed.out + printed.err and "state-dump" not in "".join(lines)
    assert all(len(line) < 400 for line in lines)


# --- a killed driver (item 11) ----------------------------------------------------------------------------------------

def _sigint_as_from_a_terminal() -> None:
    # a suite started in the background (`pytest &`) hands its children SIGINT ignored, which Python then leaves
    # ignored (no KeyboardInterrupt): the driver a user interrupts from a terminal has SIGINT at its default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_sweep(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    spec = {"dataset": {"name": "toy"}, "seeds": [0], "models": [{"name": "vae", "params": TINY}],
            "train": {**TRAIN, "steps": 1_000_000, "eval_every": 10, "checkpoint_every": 20}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": "local"}  # a fresh local instance, never one already on this machine
    driver = subprocess.Popen([sys.executable, "-m", "mtc_core", "sweep", str(tmp_path / "spec.json"), "--out", str(out),
                               "--num-cpus", "1"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=_sigint_as_from_a_terminal)
    config, deadline = out / "vae-seed=0" / runs.CONFIG, time.monotonic() + 90
    while time.monotonic() < deadline:
        with_step = runs.read_json(config).get("step", 0) if config.is_file() else 0
        if with_step >= 20:
            return driver, out
        time.sleep(0.1)
    driver.kill()
    pytest.fail(f"the sweep did not start training: {driver.communicate()[0][-2000:]}")


def _files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != runs.LOCK}


def _survivors(processes: dict[int, int], within: float) -> dict[int, int]:
    deadline = time.monotonic() + within
    while (left := alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL], ids=lambda sig: sig.name)
def test_a_killed_driver_leaves_no_process_and_no_write(tmp_path, sig):
    driver, out = _start_sweep(tmp_path)
    processes = descendants(driver.pid)
    names = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace") for pid in processes}
    assert "ray::train_one" in names.values() and "ray::DashboardAgent" in names.values()
    killed = time.time()
    driver.send_signal(sig)
    try:  # a few seconds on a quiet machine (bench/RESULTS.md, "Sweeps on a cluster"); generous for a loaded one
        text = driver.communicate(timeout=180)[0]
    except subprocess.TimeoutExpired:
        driver.kill()
        pytest.fail(f"the driver did not end within 180 s of {sig.name}: {driver.communicate()[0][-2000:]}")
    ended = time.time()
    if sig != signal.SIGKILL:
        assert driver.returncode == 130 and "sweep interrupted" in text and "interrupted: rerun the same command" in text
    left = _survivors(processes, 5.0)
    assert not left, {pid: names[pid] for pid in left}
    # nothing wrote into the run folder after the driver ended (a SIGKILLed one: its worker stops within a step)
    last = max(_files(out).values()) / 1e9
    assert last <= (ended if sig != signal.SIGKILL else killed + 0.5), (last - killed, ended - killed)
    config = runs.read_json(out / "vae-seed=0" / runs.CONFIG)
    assert config["status"] == "running" and config["step"] >= 20  # its checkpoint stays, to resume
