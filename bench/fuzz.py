"""Fuzz the CLI, the loaders and the estimators with generated bad inputs (issue 12).

Seeded generators build hostile inputs of seven kinds: command lines (every command, flags replaced by bad
numbers, paths, extensions and cluster addresses; an evaluation batch no larger than the latent size, a sweep into
another spec's folder), run folders (corrupted config.json, weights, history, metrics, a status of the wrong type,
an oversized history; loaded, and listed and tabulated as the app's Models page does), zipped runs (members twice,
an oversized history that compresses small, a wrong-type status, flipped bytes), dataset files (dSprites-format
.npz: flipped bytes, truncation, forged headers, zip bombs, garbage), codes files (evaluate-codes), sweep specs
(random YAML with tags, aliases, dates, deep nesting, mutated valid specs) and arrays for the estimators and metrics
(NaN, inf, 1e308, subnormals, complex, wrong shapes, constant columns). Each input runs in a forked child with a
per-input timeout and a memory limit, and is classified:

  refused    a clean refusal: ValueError (CheckpointError is one) from a library call, or exit code 2 with one
             'mtc_core CMD: error: ...' line and no traceback from the CLI
  accepted   ran to the end (a library call returned finite numbers; the CLI exited 0 or 1)
  traceback  any other exception, a CLI traceback, or a library call that returned NaN/inf silently
  hang       killed at the per-input timeout
  crash      the child died (signal, out of memory) without an answer
  data lost  a pre-existing run, zoo, spec or dataset file changed or vanished after a command; not counted: a
             metrics.json (evaluate and reproduce rewrite it by design), and after an accepted command the zoo
             (zoo-add) and the files it was told to write (--table, --png, --gif, --plot, evaluate-codes --out)

The generators live beside this driver: bench/fuzz_cases.py (the workspace, command lines, run folders) and
bench/fuzz_data.py (dataset and codes files, sweep specs, arrays). A few inputs also run as real `python -m mtc_core`
subprocesses. Prints counts per kind and the first examples
of every failure; exit code 1 if any traceback, hang, crash or data loss was seen.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz.py              # ~1,100 inputs, about 3 minutes on one core
    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz.py --scale 3    # three times as many
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuzz_cases import Generator, Workspace  # noqa: E402

from mtc_core import runs as mtc_io  # noqa: E402
from mtc_core.cli import commands as cli  # noqa: E402
from mtc_core.data import DSpritesFile  # noqa: E402
from mtc_core.training import sweep  # noqa: E402

FAILURES = ("traceback", "hang", "crash", "data lost")
COUNTS = {"cli": 200, "runs": 100, "zips": 60, "datasets": 100, "codes": 50, "specs": 150, "arrays": 200}  # per --scale 1
MEMORY_LIMIT = 3 * 2**30  # bytes of address space a child may add to the parent's

# ---------------------------------------------------------------- running one input


def run_isolated(fn: Callable[[], dict], timeout: float) -> dict:
    """fn() in a forked child under a memory limit; its dict, or {"kind": "hang" | "crash"}."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        code = 0
        try:
            soft = _address_space() + MEMORY_LIMIT
            resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
            result = fn()
        except BaseException as e:  # everything the input raised is the finding
            result = {"kind": "traceback", "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
                      "where": traceback.format_exc().strip().splitlines()[-3:-1]}
        try:
            os.write(write_end, json.dumps(result, default=str).encode())
        except BaseException:
            code = 3
        os._exit(code)
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"kind": "hang", "error": f"no answer within {timeout:g} s"}
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"kind": "crash", "error": f"child ended with status {status} and no answer"}
    return json.loads(data)


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def call_library(fn: Callable[[], object], allow_inf: bool = False) -> Callable[[], dict]:
    """A library call: ValueError is a refusal; a result holding NaN or inf is a silent failure (`allow_inf`: +inf is
    a documented answer, e.g. gaussian_tc of a singular covariance, whose Gaussian TC is infinite)."""

    def run() -> dict:
        try:
            value = fn()
        except ValueError as e:
            return {"kind": "refused", "error": " ".join(str(e).split())[:200]}
        bad = "" if allow_inf and isinstance(value, float) and value == math.inf else _non_finite(value)
        if bad:
            return {"kind": "traceback", "error": f"returned a non-finite value silently: {bad}"}
        return {"kind": "accepted"}

    return run


def _non_finite(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    if isinstance(value, dict):
        return next((f"{k}: {b}" for k, v in value.items() if (b := _non_finite(v))), "")
    if isinstance(value, list | tuple):
        return next((b for v in value if (b := _non_finite(v))), "")
    if isinstance(value, float | int | np.ndarray | np.generic) and not isinstance(value, bool):
        array = np.asarray(value)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            return repr(value)[:80]
    return ""


def list_and_tabulate(folder: Path, good: Path) -> None:
    """What the app does with a run folder: inspect it (services.run_listing), summarise it beside a good run
    (services.run_tables) and convert the table as st.dataframe does, one type per column. A run the listing calls
    broken is a refusal (ValueError with its reason); a table pyarrow cannot convert is a failure."""
    import pandas as pd
    import pyarrow as pa

    from services import run_listing, run_tables

    _, problem = run_listing.inspect_run(folder)
    entries = [run_listing.RunEntry(str(good), "good", "runs"), run_listing.RunEntry(str(folder), folder.name, "runs", problem=problem)]
    try:
        pa.Table.from_pandas(pd.DataFrame(run_tables.summaries(entries)))
    except pa.ArrowException as e:  # ArrowInvalid is a ValueError: not a refusal here
        raise RuntimeError(f"the runs table cannot be shown: {type(e).__name__}: {e}") from None
    if problem is not None:
        raise ValueError(problem)


def call_cli(argv: list[str]) -> Callable[[], dict]:
    """mtc_core.cli.commands.main(argv) in-process; exit 2 must come with exactly one error line and no traceback."""

    def run() -> dict:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse --help
                code = e.code if isinstance(e.code, int) else 0
        return classify_cli(code, err.getvalue())

    return run


def classify_cli(code: int, stderr: str) -> dict:
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    if "Traceback (most recent call last)" in stderr:
        return {"kind": "traceback", "error": stderr.strip().splitlines()[-1][:300]}
    if code == 2:
        clean = len(errors) == 1 and errors[0].startswith("mtc_core") and len(errors[0]) < 1000
        return {"kind": "refused" if clean else "traceback", "error": (errors[0] if errors else stderr.strip())[:300]}
    return {"kind": "accepted", "code": code}


def output_files(argv: list[str]) -> tuple[str, ...]:
    """The files a command line names as its outputs (a folder given to train --out is a run, not an output file)."""
    flags = ("--table", "--png", "--gif", "--plot") + (("--out",) if argv[:1] == ["evaluate-codes"] else ())
    return tuple(argv[i + 1] for i, a in enumerate(argv[:-1]) if a in flags)


# ---------------------------------------------------------------- the campaign


def preload() -> None:
    """Import what the commands import lazily, once in the parent, so that each forked child starts warm."""
    import importlib

    for name in ("mtc_core.training.trainer", "mtc_core.evaluation.scoring", "mtc_core.evaluation.claims", "mtc_core.runs.zoo",
                 "mtc_core.visualize.figures", "mtc_core.theory", "mtc_core.evaluation.codes_file", "mtc_core.evaluation.codes_analysis",
                 "mtc_core.evaluation.sweep_results", "mtc_core.metrics.disintegration", "PIL.Image", "ray",
                 "sklearn.ensemble", "sklearn.linear_model", "tqdm", "pandas", "pyarrow", "services.run_listing",
                 "services.run_tables", "mtc_core.runs.zip_import"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def run_folders(gen: Generator, ws: Workspace, rng: random.Random, plan: dict, record: Callable, timeout: float) -> None:
    """The run-folder families: corrupted folders loaded, listed and tabulated, some evaluated or traversed; zipped
    runs imported."""
    from mtc_core.runs import zip_import

    for _ in range(plan["runs"]):
        folder, what = gen.run_folder()
        record("runs", f"load_run({what})", run_isolated(call_library(lambda f=folder: mtc_io.load_run(f)), timeout))
        record("runs", f"listed({what})", run_isolated(call_library(lambda f=folder: list_and_tabulate(f, ws.run)), timeout))
        if rng.random() < 0.5:
            argv = rng.choice([["evaluate", str(folder), "--num-train", "200", "--num-test", "100"],
                               ["traverse", str(folder), "--png", str(gen.fresh(".png")), "--gif", str(gen.fresh(".gif"))]])
            record("runs", f"{argv[0]} on a run with {what}", run_isolated(call_cli(argv), timeout))
    for _ in range(plan["zips"]):
        data, what = gen.run_zip()
        name = gen.fresh().name
        record("zips", f"import_run({what})", run_isolated(call_library(lambda d=data, n=name: zip_import.import_run(d, ws.imports, n)),
                                                           timeout))


def campaign(seed: int, scale: float, timeout: float, subprocesses: int, say=print) -> dict:
    torch.set_num_threads(1)
    preload()
    rng = random.Random(seed)
    np.random.seed(seed)
    results: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list[str]] = defaultdict(list)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mtc_fuzz_") as tmp, contextlib.chdir(tmp):
        # inside the scratch folder: commands write their default outputs (RESULTS.md, traversal.png, runs/) there
        ws = Workspace(Path(tmp))
        gen = Generator(ws, rng)
        os.chdir(ws.scratch)

        def record(family: str, label: str, outcome: dict, outputs: tuple[str, ...] = ()) -> None:
            kind = outcome["kind"]
            after = ws.snapshot()
            # a protected file changed or removed; an accepted command may change the zoo (zoo-add replaces a name's
            # slot) and overwrite the file it was told to write (`outputs`)
            lost = [p for p, digest in ws.fingerprint.items() if after.get(p) != digest
                    and not (kind == "accepted" and (Path(p).is_relative_to(ws.zoo) or p in outputs))]
            if lost:
                examples["data lost"].append(f"{family}: {label[:300]} -> {lost[0]} ({kind})")
                results[family]["data lost"] += 1
            ws.fingerprint = after
            results[family][kind] += 1
            if kind in FAILURES and len(examples[kind]) < 12:
                examples[kind].append(f"{family}: {label[:300]} -> {outcome.get('error', '')[:300]} {outcome.get('where', '')}")

        plan = {family: max(1, round(count * scale)) for family, count in COUNTS.items()}
        for _ in range(plan["cli"]):
            argv = gen.cli()
            record("cli", " ".join(map(repr, argv)), run_isolated(call_cli(argv), timeout), output_files(argv))
        say(f"cli: {dict(results['cli'])} ({time.monotonic() - start:.0f} s)")
        run_folders(gen, ws, rng, plan, record, timeout)
        say(f"runs: {dict(results['runs'])}, zips: {dict(results['zips'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["datasets"]):
            path, what = gen.npz_file(ws.sources / ws.dsprites.name, ".npz")
            record("datasets", f"DSpritesFile({what})", run_isolated(call_library(lambda p=path: DSpritesFile(p)), timeout))
        say(f"datasets: {dict(results['datasets'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["codes"]):
            path, what = gen.npz_file(ws.sources / ws.codes.name, ".npz")
            argv = ["evaluate-codes", str(path), "--out", str(gen.fresh(".json"))]
            record("codes", f"evaluate-codes on {what}", run_isolated(call_cli(argv), timeout))
        say(f"codes: {dict(results['codes'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["specs"]):
            text, what = gen.spec_text()
            path = gen.fresh(".yaml")
            path.write_text(text)
            outcome = run_isolated(call_library(lambda p=path: sweep.expand(sweep.load_spec(p))), timeout)
            record("specs", f"spec({what}): {text[:120]!r}", outcome)
        say(f"specs: {dict(results['specs'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(plan["arrays"]):
            call, name = gen.estimator_call()
            record("arrays", name, run_isolated(call_library(call, allow_inf=name == "gaussian_tc"), timeout))
        say(f"arrays: {dict(results['arrays'])} ({time.monotonic() - start:.0f} s)")
        for _ in range(subprocesses):
            argv = gen.cli()
            try:
                done = subprocess.run([sys.executable, "-m", "mtc_core", *argv], capture_output=True, text=True, timeout=timeout * 3,
                                      cwd=ws.scratch, env={**os.environ, "OMP_NUM_THREADS": "1"})
                outcome = classify_cli(done.returncode, done.stderr)
            except subprocess.TimeoutExpired:
                outcome = {"kind": "hang", "error": f"no answer within {timeout * 3:g} s"}
            except ValueError as e:  # an argument with a NUL byte cannot reach a real process
                outcome = {"kind": "refused", "error": str(e)}
            record("subprocess", " ".join(map(repr, argv)), outcome, output_files(argv))
        say(f"subprocess: {dict(results['subprocess'])} ({time.monotonic() - start:.0f} s)")
    return {"results": results, "examples": examples, "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every family's input count")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per input before it counts as a hang")
    parser.add_argument("--subprocesses", type=int, default=5, help="inputs also run as real python -m mtc_core processes")
    args = parser.parse_args(argv)
    report = campaign(args.seed, args.scale, args.timeout, args.subprocesses)
    total = Counter()
    for counts in report["results"].values():
        total.update(counts)
    tried = sum(v for k, v in total.items() if k != "data lost")
    print(f"\nseed {args.seed}, scale {args.scale:g}, per-input timeout {args.timeout:g} s, {report['seconds']:.0f} s in all\n")
    print("| family | inputs | refused | accepted | traceback | hang | crash | data lost |")
    print("|---|---|---|---|---|---|---|---|")
    for family, counts in [*report["results"].items(), ("all", total)]:
        inputs = sum(v for k, v in counts.items() if k != "data lost")
        print(f"| {family} | {inputs} | " + " | ".join(str(counts.get(k, 0)) for k in ("refused", "accepted", *FAILURES)) + " |")
    for kind in FAILURES:
        for line in report["examples"].get(kind, []):
            print(f"{kind}: {line}")
    print(f"\n{tried} inputs: {total['refused']} clean refusals, {total['accepted']} accepted, {total['traceback']} tracebacks, "
          f"{total['hang']} hangs, {total['crash']} crashes, {total['data lost']} data lost")
    return 1 if any(total[k] for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
