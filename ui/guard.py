"""The one question every action that changes or deletes something asks: may this session do it? (the policy:
services/access.py). Each such widget is drawn disabled, with `note`'s caption, when the answer is no (Streamlit
discards a click on a widget drawn disabled), and its action calls `check` again before it acts: the rule, which also
holds for a callback whose button was drawn before the answer changed, and counts an exposed session's bounds."""

from __future__ import annotations

import streamlit as st

from services import access

TOKEN_KEY = "access_token"  # the ?token= this session's address brought (read once, kept for the session)
ALLOWANCE_KEY = "access_allowance"  # what this session has used of an exposed server's bounds (access.Allowance)
ACTIONS = ("delete", "train", "cancel", "store")  # store: keep a code set, import a run (nbytes each)


class Refused(ValueError):
    """An action this session may not take now; the message says why."""


def remember_token() -> None:
    """Keep the token of the address the session was opened with (pages after the first have no query string)."""
    token = st.query_params.get("token")
    if token:
        st.session_state[TOKEN_KEY] = token


def _address() -> str | None:
    return st.get_option("server.address")


def exposed() -> bool:
    return access.exposed(_address())


def refusal() -> str | None:
    """Why this session may change nothing (the app is read-only for it); None when it may."""
    return access.refusal(st.session_state.get(TOKEN_KEY), _address())


def read_only() -> bool:
    return refusal() is not None


def note(what: str) -> None:
    """The caption beside a disabled action: what is disabled and why."""
    why = refusal()
    if why is not None:
        st.caption(f":material/lock: {what} is disabled. {why}")


def _allowance() -> access.Allowance:
    return st.session_state.setdefault(ALLOWANCE_KEY, access.Allowance())


def check(action: str, nbytes: int = 0) -> None:
    """Raise Refused when this session may not take `action` (one of ACTIONS) now: no token on an exposed server, or a
    bound of an exposed session reached (trainings per hour; `nbytes` more stored)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {ACTIONS}")
    why = refusal()
    if why is None and exposed():
        allowance = _allowance()
        why = allowance.training_refusal() if action == "train" else allowance.storage_refusal(nbytes) if action == "store" else None
    if why is not None:
        raise Refused(why)


def done(action: str, nbytes: int = 0) -> None:
    """Count a taken action against the session's bounds (on an exposed server)."""
    if exposed():
        if action == "train":
            _allowance().add_training()
        elif action == "store":
            _allowance().add_stored(nbytes)


def sidebar_badge() -> None:
    """On an exposed server, whether this session may change things."""
    if exposed():
        if read_only():
            st.sidebar.badge("Read-only (no token)", icon=":material/lock:", color="orange")
        else:
            st.sidebar.badge("Served on the network", icon=":material/key:", color="blue")
