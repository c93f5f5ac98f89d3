"""The `mtc` console script: `mtc app` starts the explorer; every other command is `python -m mtc_core`'s.

The explorer (app.py, pages/, ui/) and the shipped zoo (pretrained/) live in the repository, not in the
installed package: `mtc app` runs the checkout's app.py, found from `--repo`, else from the current folder or one of
its parents, else next to this package (an editable install). Without a checkout it says so and exits 2.

The server listens on the loopback (127.0.0.1) unless told otherwise: the app can delete runs, start trainings and
store uploads, so only this machine's users reach it. `--expose` (or a non-loopback `--server.address`) serves it on the
network; the server process is then told so (MTC_EXPOSED=1) and given a random token (MTC_TOKEN, or yours when that is
set), which it prints as http://HOST:PORT/?token=...: without the token the app is read-only (services/access.py).
`--expose --server.address 127.0.0.1` asks for the token on the loopback too (a shared machine's other users).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import secrets
import sys
from pathlib import Path

APP_FILES = ("app.py", "ui/pages.py")  # what marks a folder as a checkout of the explorer
LOOPBACK = "127.0.0.1"  # where `mtc app` listens by default
EVERYWHERE = "0.0.0.0"  # noqa: S104 - what --expose listens on: every interface, on purpose
EXPOSED_ENV, TOKEN_ENV = "MTC_EXPOSED", "MTC_TOKEN"  # how the server process learns its mode (services/access.py reads them)
MIN_TOKEN_CHARS = 16  # a shorter MTC_TOKEN is refused here and ignored by the app (read-only)
# The app's upload limit, in Streamlit's megabytes (MiB, 2**20 bytes): the largest whole number within a codes file's
# limit (evaluation.codes_file.MAX_BYTES, 256,000,000 bytes) and above a run archive's (runs.zip_import.MAX_ARCHIVE_BYTES,
# 241,000,000), so that every file the app can read gets through. The one number: `mtc app` passes it as
# --server.maxUploadSize, .streamlit/config.toml says the same for a plain `streamlit run app.py`, and the Your codes
# page's labels and uploaders read it (tests/test_app_upload.py ties the four together).
UPLOAD_MB = 244


def is_loopback(address: str | None) -> bool:
    """Whether a server listening on `address` (Streamlit's server.address) is reachable from this machine only:
    127.x.x.x, ::1, localhost or a unix socket. Anything else, a wildcard ("", 0.0.0.0, ::) or a name included, is not."""
    if address is None:
        return False
    address = address.strip().lower()
    if address == "localhost" or address.startswith("unix://"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def server_token() -> str:
    """The exposed server's token: MTC_TOKEN when set (at least MIN_TOKEN_CHARS), else a new random one."""
    token = os.environ.get(TOKEN_ENV, "")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{TOKEN_ENV} is {len(token)} characters long; use at least {MIN_TOKEN_CHARS} (or unset it for a random one)")
    return token or secrets.token_urlsafe(32)


def is_checkout(folder: Path) -> bool:
    return all((folder / name).is_file() for name in APP_FILES)


def find_checkout(start: Path | None = None) -> Path | None:
    """The explorer's checkout: `start` or one of its parents, else the folder above this package."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents, Path(__file__).resolve().parents[2]):
        if is_checkout(folder):
            return folder
    return None


def app_command(argv: list[str]) -> tuple[Path, list[str], dict[str, str]]:
    """(checkout, command line, environment variables to set) that `mtc app` runs; ValueError when there is no
    checkout or no streamlit, or when the address arguments disagree."""
    parser = argparse.ArgumentParser(prog="mtc app", allow_abbrev=False, description="Start the MTC Explorer web app on "
                                     "the shipped zoo (streamlit run app.py), on this machine only (127.0.0.1). Other "
                                     "arguments go to streamlit, e.g. --server.port 8502.")
    parser.add_argument("--repo", type=Path, help="the explorer's checkout (default: the current folder or a parent)")
    parser.add_argument("--expose", action="store_true", help="serve on every network interface (0.0.0.0, unless "
                        "--server.address says where): the server prints a URL with a token; without the token the app "
                        "is read-only")
    parser.add_argument("--server.address", dest="address", help=f"where to listen (default {LOOPBACK}); a non-loopback "
                        "address serves on the network, as --expose does")
    args, rest = parser.parse_known_args(argv)
    address, env = listening(args.address, args.expose)
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
    # the upload limit unless the user sets their own (the page's labels read what the server got: ui/codes.py)
    upload = [] if any(a.startswith("--server.maxUploadSize") for a in rest) else ["--server.maxUploadSize", str(UPLOAD_MB)]
    return repo, [sys.executable, "-m", "ui.server", "run", str(repo / "app.py"), "--server.address", address, *upload, *rest], env


def listening(address: str | None, expose: bool) -> tuple[str, dict[str, str]]:
    """(server.address, the server's environment) for `mtc app`'s address arguments. Exposed (a token for every
    change): with --expose, on whatever address (a loopback one too: a shared machine's other users), or on a
    non-loopback address."""
    if address is None:
        address = EVERYWHERE if expose else LOOPBACK
    if is_loopback(address) and not expose:
        return address, {EXPOSED_ENV: "0"}
    return address, {EXPOSED_ENV: "1", TOKEN_ENV: server_token()}


def usage() -> str:
    from mtc_core.cli.commands import COMMANDS

    return (f"usage: mtc {{app,{','.join(COMMANDS)}}} ... (each takes --help)\n"
            "  app   start the explorer web app on the shipped zoo (in a checkout; on this machine only, --expose for a network)\n"
            f"  the others: as python -m mtc_core ({', '.join(COMMANDS)})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] != "app":
        from mtc_core.cli.commands import main as core_main

        return core_main(argv)
    try:
        repo, command, env = app_command(argv[1:])
    except ValueError as e:
        print(f"mtc app: error: {e}", file=sys.stderr)
        return 2
    os.environ.update(env)  # the server process's: its mode and token (ui/server.py prints the token's URL)
    os.chdir(repo)
    os.execv(command[0], command)  # the process becomes streamlit: Ctrl-C and signals reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
