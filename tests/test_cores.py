"""How many torch threads a training may use (mtc_core.training.cores), from a fake /proc."""

from __future__ import annotations

import os
from pathlib import Path

from mtc_core.training import cores

# /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice; busy = all but idle and iowait (guest time
# is already in user)
STAT = "cpu  {busy} 0 0 1000 20 0 0 0 7 0\ncpu0 1 0 0 500 10 0 0 0 3 0\n"
# /proc/<pid>/stat: utime and stime are fields 14 and 15, counted after a name that may hold spaces and brackets
PID_STAT = "4242 (my (odd) name) R 1 2 3 4 5 6 7 8 9 10 {utime} {stime} 0 0 20 0 1 0 5"


def fake_proc(root: Path, busy: int, ours: int) -> Path:
    (root / str(os.getpid())).mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(STAT.format(busy=busy))
    (root / str(os.getpid()) / "stat").write_text(PID_STAT.format(utime=ours, stime=0))
    return root


def test_cpu_time_is_read_from_proc_text(tmp_path):
    assert cores.busy_ticks("cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 3 0\n") == 161
    assert cores.process_ticks(PID_STAT.format(utime=111, stime=222)) == 333
    proc = fake_proc(tmp_path, busy=500, ours=40)
    assert cores.ticks([os.getpid(), 999_999_999], proc) == (500, 40)  # a process that has ended counts nothing
    assert cores.ticks([os.getpid()], tmp_path / "nothing") is None  # no /proc
    if Path("/proc/stat").is_file():  # this machine's: our time is part of the machine's
        machine, ours = cores.ticks([os.getpid()])
        assert 0 < ours <= machine


def test_the_clis_probe_counts_only_other_programs(tmp_path):
    """Over a 2 s window the machine was busy 1.5 cores' worth, this process 0.5: other programs kept 1 core busy."""
    hz, now = cores.clock_hz(), [100.0]
    proc = fake_proc(tmp_path, busy=10_000, ours=300)
    probe = cores.LoadProbe(proc, clock=lambda: now[0])
    fake_proc(tmp_path, busy=10_000 + 3 * hz, ours=300 + hz)
    now[0] += 2.0
    assert abs(probe.others() - 1.0) < 1e-9
    assert cores.other_load((5, 1), None, 2.0) == 0.0 and cores.other_load((5, 1), (5, 9), 2.0, hz) == 0.0  # never below 0


def test_threads_are_the_cores_other_programs_leave_free():
    assert cores.cli_threads(0.0, cores=2) == (2, "threads: 2 of 2 cores free")
    assert cores.cli_threads(0.4, cores=2) == (2, "threads: 2 of 2 cores free")  # a blip is not a busy core
    assert cores.cli_threads(1.2, cores=2) == (1, "threads: 1 (1 of 2 cores busy with other programs)")
    assert cores.cli_threads(3.0, cores=2) == (1, "threads: 1 (2 of 2 cores busy with other programs)")  # at least one
    assert cores.cli_threads(1.2, cores=8) == (7, "threads: 7 (1 of 8 cores busy with other programs)")
    assert cores.cli_threads(1.2, cores=2, fixed=4) == (4, "threads: 4 (--num-threads)")
    # the app's count for its trainings: shared among those running, one fewer while a page computes
    assert cores.free_threads(4, 0.0, running=2) == 2 and cores.free_threads(4, 0.0, computing=True) == 3
    assert cores.free_threads(4, 2.2, running=1) == 2 and cores.free_threads(2, 0.0, running=3) == 1
