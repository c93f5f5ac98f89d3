"""services/background.py: the page computations' worker takes the cores other programs leave free, as a training does."""

from __future__ import annotations

import torch

from mtc_core.training import cores
from services import background


class FakeProbe:
    others_load = 0.0

    def others(self) -> float:
        return self.others_load


def test_the_worker_computes_with_the_threads_other_programs_leave_free(monkeypatch):
    monkeypatch.setattr(cores, "LoadProbe", FakeProbe)
    monkeypatch.setattr(background, "_probe", FakeProbe())
    monkeypatch.setattr(cores, "CORES", 2)
    main_threads = torch.get_num_threads()
    seen = {}
    for load, want in ((1.2, 1), (0.0, 2), (5.0, 1)):  # 2 cores: one kept busy -> 1; none -> 2; all -> still 1
        monkeypatch.setattr(FakeProbe, "others_load", load)
        task = background.submit(("threads-test", load), "threads", lambda task: torch.get_num_threads())
        seen[load] = task.value(wait=30)
        assert seen[load] == want == task.threads == cores.free_threads(2, load)
    assert torch.get_num_threads() == main_threads  # the worker's count is its own thread's
