"""The `mtc` console script: `mtc app` finds the explorer's checkout (or says why not); the rest is python -m mtc_core."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mtc_core.cli import launcher

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_app_and_every_command(capsys):
    from mtc_core.cli.commands import COMMANDS

    assert launcher.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ["app", *COMMANDS]) and "evaluate-codes" in out
    assert launcher.main([]) == 2


def test_other_commands_are_python_m_mtc_core(capsys):
    assert launcher.main(["theory", "--d", "2", "--rho", "0.5"]) == 0
    assert "| 2 | 0.5 | 0.1438 |" in capsys.readouterr().out  # -1/2 log(1 - 0.25)
    assert launcher.main(["evaluate-codes", "/nonexistent.npz"]) == 2


def test_app_runs_the_checkouts_app_py_found_from_a_subfolder(monkeypatch):
    monkeypatch.chdir(ROOT / "mtc_core")
    repo, command, env = launcher.app_command(["--server.port", "8765"])
    assert repo == ROOT and command == [sys.executable, "-m", "ui.server", "run", str(ROOT / "app.py"),
                                        "--server.address", "127.0.0.1", "--server.maxUploadSize", str(launcher.UPLOAD_MB),
                                        "--server.port", "8765"]
    assert env == {"MTC_EXPOSED": "0"}  # on the loopback: no token, nothing changes for the user


@pytest.mark.parametrize("given", [["--server.address", "localhost"], ["--server.address=::1"], ["--server.address", "127.0.0.2"]])
def test_a_loopback_address_of_the_users_is_kept(given):
    _, command, env = launcher.app_command([*given, "--server.headless", "true"])
    address = given[-1].split("=")[-1]
    assert command[5:] == ["--server.address", address, "--server.maxUploadSize", str(launcher.UPLOAD_MB), "--server.headless",
                           "true"] and env == {"MTC_EXPOSED": "0"}
    assert command.count("--server.address") == 1


def test_expose_listens_everywhere_with_a_fresh_token(monkeypatch):
    monkeypatch.delenv("MTC_TOKEN", raising=False)
    _, command, env = launcher.app_command(["--expose", "--server.port", "8765"])
    assert command[5:] == ["--server.address", "0.0.0.0", "--server.maxUploadSize", str(launcher.UPLOAD_MB), "--server.port", "8765"]
    assert env["MTC_EXPOSED"] == "1" and len(env["MTC_TOKEN"]) >= 40  # secrets.token_urlsafe(32)
    assert launcher.app_command(["--expose"])[2]["MTC_TOKEN"] != env["MTC_TOKEN"]  # random, each start its own


def test_a_network_address_is_exposed_too_and_a_users_token_is_kept(monkeypatch):
    monkeypatch.setenv("MTC_TOKEN", "a-token-of-my-own-choosing")
    _, command, env = launcher.app_command(["--server.address", "10.1.2.3"])
    assert command[5:7] == ["--server.address", "10.1.2.3"]
    assert env == {"MTC_EXPOSED": "1", "MTC_TOKEN": "a-token-of-my-own-choosing"}
    monkeypatch.setenv("MTC_TOKEN", "short")
    with pytest.raises(ValueError, match="MTC_TOKEN is 5 characters long"):
        launcher.app_command(["--expose"])
    monkeypatch.delenv("MTC_TOKEN")
    _, command, env = launcher.app_command(["--expose", "--server.address", "127.0.0.1"])  # a shared machine's other users
    assert command[5:7] == ["--server.address", "127.0.0.1"] and env["MTC_EXPOSED"] == "1" and env["MTC_TOKEN"]


@pytest.mark.parametrize(("address", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
                                                   ("localhost", True), ("unix:///tmp/mtc.sock", True), ("0.0.0.0", False),
                                                   ("::", False), ("", False), ("10.0.0.5", False), ("labserver", False),
                                                   (None, False)])
def test_what_counts_as_the_loopback(address, loopback):
    assert launcher.is_loopback(address) is loopback


def test_mtc_app_hands_its_mode_and_token_to_the_server_process(monkeypatch, capsys):
    started = {}
    monkeypatch.setattr(launcher.os, "execv", lambda path, command: started.update(command=command, env=dict(launcher.os.environ)))
    monkeypatch.setattr(launcher.os, "chdir", lambda path: None)
    monkeypatch.delenv("MTC_TOKEN", raising=False)
    monkeypatch.setenv("MTC_EXPOSED", "1")  # a stale value of the shell's is overridden
    assert launcher.main(["app"]) == 0
    assert started["env"]["MTC_EXPOSED"] == "0" and "127.0.0.1" in started["command"]
    assert launcher.main(["app", "--expose"]) == 0
    assert started["env"]["MTC_EXPOSED"] == "1" and len(started["env"]["MTC_TOKEN"]) >= 40 and "0.0.0.0" in started["command"]


def test_the_exposed_server_prints_its_token_url(monkeypatch):
    from ui import server

    monkeypatch.setenv("MTC_EXPOSED", "0")
    monkeypatch.setenv("MTC_TOKEN", "t" * 43)
    assert server.announcement("127.0.0.1", 8501) == []  # the loopback: nothing to add to Streamlit's own lines
    monkeypatch.setattr(server.socket, "gethostname", lambda: "labserver")
    assert "    http://labserver:8502/?token=" + "t" * 43 in server.announcement("0.0.0.0", 8502)
    assert any("http://10.0.0.5:8501/?token=" in line for line in server.announcement("10.0.0.5", 8501))
    monkeypatch.delenv("MTC_TOKEN")
    (line,) = server.announcement("0.0.0.0", 8501)
    assert "read-only" in line and "token=" not in line


def test_app_outside_a_checkout_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launcher, "__file__", str(tmp_path / "site-packages" / "mtc_core" / "cli" / "launcher.py"))  # a non-editable install
    assert launcher.find_checkout() is None
    assert launcher.main(["app"]) == 2
    assert "run `mtc app` inside a checkout" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a checkout of MTC Explorer"):
        launcher.app_command(["--repo", str(tmp_path)])
    assert launcher.app_command(["--repo", str(ROOT)])[0] == ROOT


def test_the_servers_warm_up_imports_what_the_first_page_needs():
    from ui import server

    assert server.warm() == []  # every module it names exists (a renamed module would be named here)
    assert server.warm(("json", "mtc_core.no_such_module")) == ["mtc_core.no_such_module"]  # a failure never stops it
