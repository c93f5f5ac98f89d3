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
    repo, command = launcher.app_command(["--server.port", "8765"])
    assert repo == ROOT and command == [sys.executable, "-m", "ui.server", "run", str(ROOT / "app.py"), "--server.port", "8765"]


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
