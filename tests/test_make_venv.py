"""The Makefile's choice of interpreter for .venv, and the rebuild when it changes.

Runs the real Makefile with stand-in interpreters (shell scripts that answer the few
calls the venv recipe makes: the identity query, ``-m venv``, ``-m pip``, ``-m
web.cli_entry``), so nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import REPO

STAND_IN = """#!/bin/sh
# A stand-in interpreter named {name}: "{ident}" is what it says it is.
if [ "$1" = "-c" ]; then echo "{ident}"; exit 0; fi
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && echo {name} > "$3/made-by"; exit 0; fi
if [ "$1 $2" = "-m pip" ]; then echo "$*" >> "$(dirname "$0")/../pip-calls"; exit 0; fi
if [ "$1 $2" = "-m web.cli_entry" ]; then touch "$4"; exit 0; fi
echo "unexpected call: $*" >&2; exit 3
"""


def stand_in(folder: Path, name: str, ident: str) -> Path:
    path = folder / name
    path.write_text(STAND_IN.format(name=name, ident=ident))
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Makefile", "requirements-dev.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "web").mkdir()
    shutil.copy(REPO / "web" / "cli_entry.py", tmp_path / "web" / "cli_entry.py")
    return tmp_path


def make(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", *args], cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_default_interpreter_is_the_distributions_python311_when_installed(project: Path):
    (project / "Makefile").write_text((project / "Makefile").read_text() + "\nprint-python:\n\t@echo $(PYTHON)\n")
    expected = "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else "python3"
    assert make(project, "print-python").stdout.strip() == expected
    assert make(project, "print-python", "PYTHON=python3.12").stdout.strip() == "python3.12"


def test_venv_is_made_once_and_rebuilt_when_the_interpreter_changes(project: Path):
    debian = stand_in(project, "py-debian", "3.11.2 /usr")
    pyenv = stand_in(project, "py-pyenv", "3.11.7 /root/.pyenv/versions/3.11.7")
    venv = project / ".venv"

    first = make(project, "venv", f"PYTHON={debian}")
    assert (venv / "made-by").read_text().strip() == "py-debian" and "rebuilding" not in first.stdout
    assert (venv / "bin" / "crontick").exists()
    assert len((venv / "pip-calls").read_text().splitlines()) == 1  # the locked install, with hashes
    assert "--require-hashes -r requirements-dev.lock" in (venv / "pip-calls").read_text()

    again = make(project, "venv", f"PYTHON={debian}")
    assert "pip" not in again.stdout and len((venv / "pip-calls").read_text().splitlines()) == 1  # up to date

    other = make(project, "venv", f"PYTHON={pyenv}")
    assert ".venv was made from another interpreter: rebuilding it" in other.stdout
    assert (venv / "made-by").read_text().strip() == "py-pyenv"
    assert len((venv / "pip-calls").read_text().splitlines()) == 1  # a fresh venv, installed once
    assert len(list(venv.glob(".installed-*"))) == 1  # one stamp, for this interpreter
