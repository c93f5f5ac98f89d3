"""The `mtc` console script: `mtc app` starts the explorer; every other command is `python -m mtc_core`'s.

The explorer (app.py, pages/, ui/) and the shipped zoo (pretrained/) live in the repository, not in the
installed package: `mtc app` runs the checkout's app.py, found from `--repo`, else from the current folder or one of
its parents, else next to this package (an editable install). Without a checkout it says so and exits 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

APP_FILES = ("app.py", "ui/pages.py")  # what marks a folder as a checkout of the explorer


def is_checkout(folder: Path) -> bool:
    return all((folder / name).is_file() for name in APP_FILES)


def find_checkout(start: Path | None = None) -> Path | None:
    """The explorer's checkout: `start` or one of its parents, else the folder above this package."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents, Path(__file__).resolve().parents[2]):
        if is_checkout(folder):
            return folder
    return None


def app_command(argv: list[str]) -> tuple[Path, list[str]]:
    """(checkout, command line) that `mtc app` runs; ValueError when there is no checkout or no streamlit."""
    parser = argparse.ArgumentParser(prog="mtc app", description="Start the MTC Explorer web app on the shipped zoo "
                                     "(streamlit run app.py). Other arguments go to streamlit, e.g. --server.port 8502.")
    parser.add_argument("--repo", type=Path, help="the explorer's checkout (default: the current folder or a parent)")
    args, rest = parser.parse_known_args(argv)
    if args.repo is not None:
        if not is_checkout(args.repo):
            raise ValueError(f"--repo {args.repo}: not a checkout of MTC Explorer (no {' or '.join(APP_FILES)})")
        repo = args.repo.resolve()
    else:
        repo = find_checkout()
        if repo is None:
            raise ValueError("the explorer's app.py is not installed with the package: run `mtc app` inside a checkout "
                             "of the repository, or pass --repo PATH")
    if importlib.util.find_spec("streamlit") is None:
        raise ValueError("streamlit is not installed: pip install '.[app]' in the checkout")
    # ui.server: streamlit run, with the app's imports warmed while the server starts (the first page is faster)
    return repo, [sys.executable, "-m", "ui.server", "run", str(repo / "app.py"), *rest]


def usage() -> str:
    from mtc_core.cli.commands import COMMANDS

    return (f"usage: mtc {{app,{','.join(COMMANDS)}}} ... (each takes --help)\n"
            "  app   start the explorer web app on the shipped zoo (in a checkout)\n"
            "  the others: as python -m mtc_core (train, evaluate, evaluate-codes, traverse, theory, sweep, reproduce, zoo-add)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] != "app":
        from mtc_core.cli.commands import main as core_main

        return core_main(argv)
    try:
        repo, command = app_command(argv[1:])
    except ValueError as e:
        print(f"mtc app: error: {e}", file=sys.stderr)
        return 2
    os.chdir(repo)
    os.execv(command[0], command)  # the process becomes streamlit: Ctrl-C and signals reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
