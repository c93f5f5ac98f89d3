"""./mtc.sh, the README's two commands (app, test), and .ci/run, which runs the same test command: valid bash, a usage
line for anything else, and a second run that finds everything installed goes straight to its command."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "mtc.sh"


@pytest.mark.parametrize("script", [SCRIPT, REPO / ".ci" / "run"], ids=["mtc.sh", ".ci/run"])
def test_the_scripts_are_valid_executable_bash(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True, capture_output=True)
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize("argv", [["frobnicate"], [], ["App"]])
def test_anything_but_app_or_test_prints_the_usage_and_fails(argv):
    result = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage: ./mtc.sh app" in result.stderr and "./mtc.sh test" in result.stderr
    if argv:
        assert f"unknown command '{argv[0]}'" in result.stderr


def test_help_prints_the_usage():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "usage: ./mtc.sh app" in result.stdout


def test_a_second_run_installs_nothing(tmp_path):
    """An environment the script has installed (its stamp: the pyproject.toml it installed) is used as it is: no pip, and
    the command runs with the arguments given (pytest's, mtc app's)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, target in (("python", sys.executable), ("mtc", str(Path(sys.executable).parent / "mtc"))):
        wrapper = venv / "bin" / name
        wrapper.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        wrapper.chmod(0o755)
    (venv / ".mtc-installed-dev").write_text(hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest() + "\n")
    env = {**os.environ, "MTC_VENV": str(venv)}
    tests = subprocess.run([str(SCRIPT), "test", "--version"], capture_output=True, text=True, timeout=120, env=env)
    assert tests.returncode == 0 and "pytest" in tests.stdout + tests.stderr and "installing" not in tests.stderr
    app = subprocess.run([str(SCRIPT), "app", "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert app.returncode == 0 and "usage: mtc app" in app.stdout and "installing" not in app.stderr  # dev holds app
