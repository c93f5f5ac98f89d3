"""Who may change what when the app is served beyond this machine (no Streamlit here; docs/design.md, "Serving").

The app can delete runs, start trainings, import run archives and keep uploaded codes, with no login. `mtc app`
therefore listens on the loopback (mtc_core.cli.launcher; `.streamlit/config.toml` says the same for a plain
`streamlit run app.py`), where only this machine's users reach it and every action is open, as it always was.

Served on a network (`mtc app --expose`, or a non-loopback --server.address) anyone who reaches the port can use the
pages, so every action that changes or deletes something (delete a run; start, cancel or resume a training; keep a
code set; import a run) needs the token the server printed at start, Jupyter's way: http://HOST:PORT/?token=...; the
page keeps it for the session. Without it the app is read-only. The launcher tells the server process its mode and
token in MTC_EXPOSED=1 and MTC_TOKEN; a server started some other way on a non-loopback address is exposed too (and,
with no MTC_TOKEN, read-only). Even with the token, an exposed session is bounded: at most MAX_TRAININGS_PER_HOUR
trainings started (resumes included) in any hour, and at most MAX_STORED_MB written into the runs folder (kept code
sets, imported run archives). On the loopback there are no such bounds.

ui/guard.py asks these questions for every changing action, both to disable its widget and again before it acts.
"""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass, field

from mtc_core.cli.launcher import EXPOSED_ENV, MIN_TOKEN_CHARS, TOKEN_ENV, is_loopback

MAX_TRAININGS_PER_HOUR = 10  # trainings an exposed session may start (or resume) in any 60 minutes
MAX_STORED_MB = 512  # bytes an exposed session may write into the runs folder: two of the largest codes files
HOUR_S = 3600.0
NO_TOKEN = ("This app is served on the network and is read-only without its token: open the address with ?token=... "
            "that the server printed when it started (`mtc app --expose`).")
WRONG_TOKEN = "The token in this page's address is not this server's: the app is read-only. Open the address the server printed."
NO_SERVER_TOKEN = ("This app is served on the network without a token (no MTC_TOKEN of at least "
                   f"{MIN_TOKEN_CHARS} characters), so it is read-only: start it with `mtc app --expose` to get one.")


def exposed(address: str | None = None) -> bool:
    """Whether the server may be reached from other machines: the launcher said so (MTC_EXPOSED=1), or it listens on
    `address` (Streamlit's server.address), which is not a loopback one. None (not known, as in a test) leaves it to
    the environment."""
    return os.environ.get(EXPOSED_ENV) == "1" or (address is not None and not is_loopback(address))


def server_token() -> str | None:
    """The token this server accepts; None when there is none (or one too short to be a secret)."""
    token = os.environ.get(TOKEN_ENV, "")
    return token if len(token) >= MIN_TOKEN_CHARS else None


def refusal(session_token: str | None, address: str | None = None) -> str | None:
    """Why a session holding `session_token` (the ?token= of its address, or None) may not change anything; None
    when it may: always on the loopback, with the server's token when exposed."""
    if not exposed(address):
        return None
    expected = server_token()
    if expected is None:
        return NO_SERVER_TOKEN
    if not session_token:
        return NO_TOKEN
    if not hmac.compare_digest(session_token.encode(), expected.encode()):  # in constant time: no guessing by timing
        return WRONG_TOKEN
    return None


def may_change(session_token: str | None, address: str | None = None) -> bool:
    return refusal(session_token, address) is None


@dataclass
class Allowance:
    """What one exposed session has used of its bounds: the times it started trainings, the bytes it stored."""

    trainings: list[float] = field(default_factory=list)
    stored_bytes: int = 0

    def training_refusal(self, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        recent = [t for t in self.trainings if now - t < HOUR_S]
        if len(recent) < MAX_TRAININGS_PER_HOUR:
            return None
        wait_min = max(1, round((HOUR_S - (now - min(recent))) / 60)) if recent else 60
        return (f"This session has started {len(recent)} trainings in the last hour, the most a session of a server on "
                f"the network may (MAX_TRAININGS_PER_HOUR); the next one can start in about {wait_min} min.")

    def add_training(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.trainings = [t for t in self.trainings if now - t < HOUR_S] + [now]

    def storage_refusal(self, nbytes: int) -> str | None:
        if self.stored_bytes + nbytes <= MAX_STORED_MB * 1_000_000:
            return None
        return (f"This would bring what this session stored in the runs folder to {(self.stored_bytes + nbytes) / 1e6:,.1f} MB, "
                f"over the {MAX_STORED_MB} MB a session of a server on the network may store (MAX_STORED_MB).")

    def add_stored(self, nbytes: int) -> None:
        self.stored_bytes += nbytes


def display_host(address: str, hostname: str) -> str:
    """The host part of the address users open: this machine's name for a wildcard address, else the address."""
    if address.strip() in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
        return hostname
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def token_url(address: str, port: int, hostname: str, token: str) -> str:
    return f"http://{display_host(address, hostname)}:{port}/?token={token}"
