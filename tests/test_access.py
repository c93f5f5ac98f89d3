"""Serving the app safely (services/access.py, ui/guard.py): the server listens on the loopback unless told otherwise,
and served on a network it changes nothing without its token, and bounds what a session with the token may do."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import support
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from services import access
from ui.pages import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TOKEN = "the-servers-token-" + "x" * 25
TIMEOUT = 60


# --- the policy, without Streamlit --------------------------------------------------------------------------------

def test_on_the_loopback_everyone_may_change_things(monkeypatch):
    monkeypatch.delenv("MTC_EXPOSED", raising=False)
    monkeypatch.delenv("MTC_TOKEN", raising=False)
    assert access.may_change(None) and access.may_change(None, "127.0.0.1") and access.may_change("anything", "localhost")
    assert not access.exposed(None)  # not known (a test's AppTest): the environment decides


def test_exposed_only_the_servers_token_may_change_things(monkeypatch):
    monkeypatch.setenv("MTC_EXPOSED", "1")
    monkeypatch.setenv("MTC_TOKEN", TOKEN)
    assert access.may_change(TOKEN)
    assert access.refusal(None) == access.NO_TOKEN and access.refusal("") == access.NO_TOKEN
    assert access.refusal(TOKEN[:-1]) == access.WRONG_TOKEN and access.refusal(TOKEN + "x") == access.WRONG_TOKEN
    monkeypatch.setenv("MTC_TOKEN", "short")  # not a secret: nobody may change anything
    assert access.refusal("short") == access.NO_SERVER_TOKEN


def test_a_non_loopback_address_is_exposed_whatever_the_environment(monkeypatch):
    """`streamlit run app.py --server.address 0.0.0.0`, without the launcher: exposed, and without a token read-only."""
    monkeypatch.delenv("MTC_TOKEN", raising=False)
    monkeypatch.setenv("MTC_EXPOSED", "0")
    for address in ("0.0.0.0", "", "::", "10.0.0.5"):
        assert access.exposed(address) and access.refusal(None, address) == access.NO_SERVER_TOKEN
    assert access.may_change(None, "127.0.0.1")


def test_an_exposed_sessions_bounds():
    allowance = access.Allowance()
    start = 1_000_000.0
    for i in range(access.MAX_TRAININGS_PER_HOUR):
        assert allowance.training_refusal(start + i) is None
        allowance.add_training(start + i)
    refusal = allowance.training_refusal(start + 60)
    assert refusal and "in the last hour" in refusal and "about 59 min" in refusal
    assert allowance.training_refusal(start + access.HOUR_S) is None  # the first one is an hour old
    limit = access.MAX_STORED_MB * 1_000_000
    assert allowance.storage_refusal(limit) is None
    allowance.add_stored(limit - 10)
    assert allowance.storage_refusal(10) is None and "MAX_STORED_MB" in allowance.storage_refusal(11)


def test_the_token_url():
    assert access.token_url("0.0.0.0", 8501, "labserver", "abc") == "http://labserver:8501/?token=abc"
    assert access.token_url("::", 8501, "labserver", "abc") == "http://labserver:8501/?token=abc"
    assert access.token_url("fd00::5", 8502, "labserver", "abc") == "http://[fd00::5]:8502/?token=abc"
    assert access.token_url("10.0.0.5", 8502, "labserver", "abc") == "http://10.0.0.5:8502/?token=abc"


# --- the real server: loopback by default ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on, from /proc (no traffic sent anywhere)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            host, port = local.split(":")
            raw = bytes.fromhex(host)
            # /proc prints each 32-bit word in the host's byte order (little-endian here)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc")
def test_the_server_listens_on_the_loopback_by_default(tmp_path):
    """`python -m ui.server run app.py` (what `mtc app` runs) with no address of its own: .streamlit/config.toml's."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTC_ZOO_DIR": str(tmp_path / "zoo"), "MTC_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("MTC_EXPOSED", None)
    env.pop("STREAMLIT_SERVER_ADDRESS", None)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ui.server", "run", "app.py", "--server.port", str(port),
                                 "--server.headless", "true"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        assert support.wait_until_serving(f"http://127.0.0.1:{port}", proc, TIMEOUT), \
            f"the server did not start:\n{log.read_text()[-3000:]}"
        assert listening_sockets(proc.pid) == {("127.0.0.1", port)}
        text = log.read_text()
        assert "Network URL" not in text and "token" not in text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def small_codes() -> bytes:
    """A valid codes file (services of Your codes): 200 points x 3 latents."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, mean=rng.normal(size=(200, 3)), logvar=np.full((200, 3), -2.0))
    return buffer.getvalue()


# --- the app, served on a network ------------------------------------------------------------------------------------

@pytest.fixture
def exposed_dirs(tmp_path, monkeypatch, tiny_run) -> dict[str, Path]:
    """A server on the network (as `mtc app --expose` starts it), MTC_RUNS_DIR holding a copy of a tiny run."""
    dirs = support.run_dirs(tmp_path, monkeypatch, tiny_run)
    monkeypatch.setenv("MTC_EXPOSED", "1")
    monkeypatch.setenv("MTC_TOKEN", TOKEN)
    return dirs


def open_page(title: str, token: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["token"] = token
    at.run()
    at.switch_page(PAGE_FILES[title]).run()  # the token stays with the session, not the address
    assert not at.exception, [e.value for e in at.exception]
    return at


def forged(widget, value=True):
    """The widget set to `value` even when disabled: AppTest refuses that (a browser cannot), a hand-made websocket
    message does not; Streamlit's server then discards it (a disabled widget keeps its value, runs no callback)."""
    widget._value = value
    return widget


def delete_tiny(at: AppTest, dirs: dict[str, Path], forge: bool = False) -> AppTest:
    at.sidebar.selectbox(key="run_path").set_value(str((dirs["runs"] / "tiny").resolve())).run()
    if forge:
        forged(at.checkbox(key="models_delete_confirm")).run()
        return forged(at.button(key="models_delete")).run()
    at.checkbox(key="models_delete_confirm").check().run()
    return at.button(key="models_delete").click().run()


@pytest.mark.parametrize("token", [None, "not-the-token-" + "y" * 20])
def test_exposed_without_the_token_a_delete_is_refused(exposed_dirs, token):
    at = open_page("Models", token)
    assert at.button(key="models_delete").disabled and at.checkbox(key="models_delete_confirm").disabled
    assert any("Deleting is disabled" in c.value for c in at.caption)
    assert any("Read-only (no token)" in m.value for m in at.sidebar.markdown)  # the badge
    with pytest.raises(AppTestError, match="disabled"):
        delete_tiny(at, exposed_dirs)
    delete_tiny(at, exposed_dirs, forge=True)
    assert (exposed_dirs["runs"] / "tiny").is_dir() and not at.exception


def guard_answers() -> None:
    """An app of one line per action: what ui.guard.check says to this session."""
    import streamlit as st

    from ui import guard

    guard.remember_token()
    for action in guard.ACTIONS:
        try:
            guard.check(action, nbytes=1)
            st.text(f"{action}: allowed")
        except guard.Refused as refusal:
            st.text(f"{action}: {refusal}")


@pytest.mark.parametrize(("exposed", "token", "answer"), [("1", TOKEN, "allowed"), ("1", None, access.NO_TOKEN),
                                                          ("1", TOKEN + "!", access.WRONG_TOKEN), ("0", None, "allowed")])
def test_every_action_asks_the_same_question(monkeypatch, exposed, token, answer):
    """What the actions themselves call before they act (delete, start, resume, cancel, keep, import): not only their
    widgets are disabled (Streamlit discards a forged click of a disabled one, and the check stands behind that)."""
    monkeypatch.setenv("MTC_EXPOSED", exposed)
    monkeypatch.setenv("MTC_TOKEN", TOKEN)
    at = AppTest.from_function(guard_answers, default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["token"] = token
    at.run()
    assert [t.value for t in at.text] == [f"{action}: {answer}" for action in ("delete", "train", "cancel", "store")]


def test_a_callback_asks_again_when_it_acts(exposed_dirs, monkeypatch):
    """Keep was drawn enabled for a session holding the token; by the click the server takes no token: refused."""
    at = open_page("Your codes", TOKEN)
    at.file_uploader(key="codes_upload").set_value(("mine.npz", small_codes(), "application/octet-stream")).run()
    at.text_input(key="codes_keep_name").set_value("mine").run()
    monkeypatch.delenv("MTC_TOKEN")
    at.button(key="codes_keep").click().run()
    assert not (exposed_dirs["runs"] / "codes").exists()
    assert any(access.NO_SERVER_TOKEN in e.value for e in at.error), [e.value for e in at.error]


def test_exposed_with_the_token_a_delete_works(exposed_dirs):
    at = open_page("Models", TOKEN)
    assert not at.checkbox(key="models_delete_confirm").disabled
    assert not any("disabled" in c.value for c in at.caption)
    delete_tiny(at, exposed_dirs)
    assert not at.error and not (exposed_dirs["runs"] / "tiny").exists()


def start_button(at: AppTest):
    return next(b for b in at.get("button") if (b.key or "").startswith("train_start"))


def tiny_form(at: AppTest) -> None:
    """A training of a few steps, should a refusal fail to refuse."""
    at.selectbox(key="train_model").set_value("beta_vae").run()
    for key, value in (("train_steps", 5), ("train_batch_size", 16), ("train_p_latent_dim", 3), ("train_p_hidden", 16)):
        at.number_input(key=key).set_value(value)


@pytest.fixture
def no_new_trainings():
    from services import training_queue

    before = len(training_queue.jobs())
    yield
    started = training_queue.jobs()[before:]
    for job in started:
        job.cancel.set()
    assert not started, "a refused training started"


def test_exposed_without_the_token_nothing_trains_or_is_imported(exposed_dirs, no_new_trainings):
    at = open_page("Train")
    assert start_button(at).disabled and any("Training is disabled" in c.value for c in at.caption)
    tiny_form(at)
    forged(start_button(at)).run()
    assert not at.exception

    at = open_page("Your codes")
    assert at.button(key="codes_import").disabled and any("Importing is disabled" in c.value for c in at.caption)


def test_exposed_with_the_token_a_session_stores_a_bounded_amount(exposed_dirs, monkeypatch):
    data = small_codes()
    monkeypatch.setattr(access, "MAX_STORED_MB", 1.5 * len(data) / 1e6)  # one such file, not two
    at = open_page("Your codes", TOKEN)
    at.file_uploader(key="codes_upload").set_value(("mine.npz", data, "application/octet-stream")).run()
    at.text_input(key="codes_keep_name").set_value("first").run()
    at.button(key="codes_keep").click().run()
    assert (exposed_dirs["runs"] / "codes" / "first.npz").is_file() and not at.error
    at.text_input(key="codes_keep_name").set_value("second").run()
    at.button(key="codes_keep").click().run()
    assert not (exposed_dirs["runs"] / "codes" / "second.npz").exists()
    assert any("MAX_STORED_MB" in e.value for e in at.error), [e.value for e in at.error]


def test_exposed_with_the_token_trainings_per_hour_are_bounded(exposed_dirs, monkeypatch, no_new_trainings):
    monkeypatch.setattr(access, "MAX_TRAININGS_PER_HOUR", 0)
    at = open_page("Train", TOKEN)
    assert not start_button(at).disabled
    tiny_form(at)
    start_button(at).click().run()
    assert any("MAX_TRAININGS_PER_HOUR" in e.value for e in at.error), [e.value for e in at.error]
