"""The training process the app starts (services.training_queue): `python -m mtc_core.training.worker`.

It reads one JSON request from stdin ({"config", "run_dir", "command", "resume"}), trains with `trainer.train`, and
reports as JSON lines `[kind, payload]` on stdout: "start" (the first step), "step", "eval" (a history record),
"threads" (the torch threads in use), "end" ([step, message, status]) or "error". Lines on its stdin steer it:
"cancel" stops it at the next step (it saves as the CLI does), "threads N" sets its torch threads between two steps.
It runs at a lower priority than the app's server (TRAIN_NICE) and dies with it (Linux PR_SET_PDEATHSIG), leaving
its run as a killed process leaves it: running, to resume from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import torch

from mtc_core import runs
from mtc_core.training.trainer import Callback, TrainConfig, train

TRAIN_NICE = 5  # a training process's niceness above the server's


class ProgressLines(Callback):
    """Inside the training process: progress to the app's job as JSON lines on stdout (steps at most every 0.2 s)."""

    def __init__(self, threads: list[int] | None = None):
        self.last = 0.0
        self.threads = threads if threads is not None else [0]  # [wanted]: set by the stdin listener, 0: keep

    def apply_threads(self) -> None:
        wanted, self.threads[0] = self.threads[0], 0
        if wanted and wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
        if wanted:
            self.say("threads", torch.get_num_threads())

    @staticmethod
    def say(kind: str, payload: Any) -> None:
        print(json.dumps([kind, payload]), flush=True)

    def on_start(self, *, run_dir, config, start_step):
        self.say("start", start_step)
        self.say("threads", torch.get_num_threads())
        self.apply_threads()

    def on_step(self, *, step, logs):
        if self.threads[0]:
            self.apply_threads()
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.say("step", step)
            self.last = now

    def on_eval(self, *, step, record):
        self.say("eval", record)

    def on_end(self, *, status, message, step, run_dir):
        self.say("end", (step, message, status))


def main() -> None:
    """`python -m mtc_core.training.worker`: the training process. Reads its request (one JSON line) from stdin, trains with
    mtc_core.training.trainer, reports on stdout, stops on a "cancel" line. It dies with the app (Linux PR_SET_PDEATHSIG),
    leaving its run as a killed process leaves it: running, to resume from its last checkpoint."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except OSError:
        pass
    try:
        os.nice(TRAIN_NICE)
    except OSError:
        pass
    request = json.loads(sys.stdin.readline())
    cancel = threading.Event()
    threads = [0]

    def listen() -> None:
        for line in sys.stdin:
            words = line.split()
            if words == ["cancel"]:
                cancel.set()
            elif len(words) == 2 and words[0] == "threads" and words[1].isdigit() and int(words[1]) > 0:
                threads[0] = int(words[1])  # applied by the callback between two steps

    threading.Thread(target=listen, daemon=True).start()
    try:
        train(TrainConfig.from_dict(request["config"]), request["run_dir"], callbacks=[ProgressLines(threads)], cancel=cancel,
              command=request["command"], resume=request["resume"])
    except Exception as error:  # reported to the app's job; the process then ends
        ProgressLines.say("error", runs.error_text(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
