"""Long commands say where they are: one line per stage with the elapsed time, and the libraries' warnings as one line
of ours per kind (stderr; stdout keeps the results).

`StageLog` is the `progress(stage, partial)` callback of `mtc_core.evaluate` and `analyse_codes` and, as a context
manager, records every warning raised while it is open (`warnings.catch_warnings(record=True)`, each occurrence
counted), attributes each to the stage it came in, and at the end prints one "note:" line per kind (category, the
package that raised it, its message's first line) with how often it came and in which stages.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections import Counter
from pathlib import PurePath
from typing import TextIO

MAX_NOTE = 300  # characters of a warning's message in its note

# what a kind of warning means for the numbers, where we know it for certain
CONSEQUENCES = {
    "ConvergenceWarning": "the score uses each such fit as it stood when its iteration limit (sklearn's max_iter) was reached",
}


def origin(filename: str) -> str:
    """The package a warning came from: the folder after site-packages (sklearn, numpy, ...), else ours (mtc_core)."""
    parts = PurePath(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return next((p for p in parts if p in ("mtc_core", "services", "ui")), PurePath(filename).stem or "python")


class StageLog:
    """progress(stage, partial) -> "[  12.3 s] mean: dci" on `stream`; warnings summarised on exit (module docstring)."""

    def __init__(self, stream: TextIO | None = None, clock=time.perf_counter):
        self.stream, self.clock = stream or sys.stderr, clock
        self.start = clock()
        self.stage = "start"
        self.kinds: Counter = Counter()  # (category, package, message) -> count
        self.stages: dict[tuple, list[str]] = {}
        self._seen = 0

    def __enter__(self) -> StageLog:
        self._catch = warnings.catch_warnings(record=True)
        self._records = self._catch.__enter__()
        warnings.simplefilter("always")  # every occurrence, so that the counts are true
        self.start = self.clock()
        return self

    def __call__(self, stage: str, partial: dict | None = None) -> None:
        self._attribute(stage)
        print(f"[{self.clock() - self.start:7.1f} s] {stage}", file=self.stream, flush=True)

    def _attribute(self, stage: str) -> None:
        """Warnings recorded since the last stage came in `stage` (a stage is reported when it ends)."""
        records = getattr(self, "_records", [])
        for record in records[self._seen:]:
            message = " ".join(str(record.message).split("\n")[0].split()).rstrip(":")
            key = (record.category.__name__, origin(record.filename), message[:MAX_NOTE])
            self.kinds[key] += 1
            where = self.stages.setdefault(key, [])
            if stage not in where:
                where.append(stage)
        self._seen = len(records)

    def __exit__(self, *exc) -> None:
        self._attribute("after the last stage")
        self._catch.__exit__(*exc)
        for line in self.notes():
            print(line, file=self.stream, flush=True)

    def notes(self) -> list[str]:
        """One line per kind of warning: "note: 3 ConvergenceWarning from sklearn in mean: modularity_explicitness: ..."."""
        lines = []
        for (category, package, message), count in self.kinds.items():
            stages = self.stages[(category, package, message)]
            line = (f"note: {count} {category}{'s' if count > 1 else ''} from {package} in {', '.join(stages)}: {message}")
            if category in CONSEQUENCES:
                line += f" ({CONSEQUENCES[category]})"
            lines.append(line)
        return lines
