"""Locked, reproducible installs: requirements.lock (runtime) and requirements-dev.lock (dev).

`make lock` writes both with pip-tools (`pip-compile --generate-hashes`); the Dockerfile
installs the runtime lock and `make venv` the dev lock, both with `--require-hashes`.
Here: every requirement of requirements*.txt admits the version its lock pins, every pin
carries hashes, the two locks agree, both installers use the locks with hashes checked,
and (slow) the runtime lock alone installs into a fresh virtualenv and serves /health.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.processes import REPO, free_port, make_dry_run

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(;\s*(?P<marker>[^\\]+?))?\s*\\?$")


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements*.txt file, following ``-r`` includes."""
    found: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            found += requirements(path.parent / line[3:].strip())
            continue
        assert not line.startswith("-"), f"{path.name}: option lines are not expected here: {line}"
        found.append(Requirement(line))
    return found


def lock_pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``{canonical name: (version, [sha256 hashes])}`` of a pip-compile lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith((" ", "\t")):
            hashed = re.match(r"\s+--hash=sha256:([0-9a-f]{64})", line)
            if hashed and current:
                pins[current][1].append(hashed.group(1))
            continue
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not a pinned requirement: {line}"
        current = canonicalize_name(match.group("name"))
        assert current not in pins, f"{path.name} pins {current} twice"
        pins[current] = (match.group("version"), [])
    return pins


@pytest.mark.parametrize(("source", "lock"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")])
def test_the_lock_satisfies_every_requirement(source, lock):
    pins = lock_pins(REPO / lock)
    environment = default_environment()
    for req in requirements(REPO / source):
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{source} requires {req}, which {lock} does not pin: run `make lock`"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{lock} pins {name}=={version}, outside {source}'s {req}: run `make lock`"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_carries_hashes_and_no_local_source(lock):
    text = (REPO / lock).read_text()
    pins = lock_pins(REPO / lock)
    assert len(pins) >= 20
    assert [name for name, (_, hashes) in pins.items() if not hashes] == []
    # Resolved from the public index only: no index, find-links or file path of the machine that ran `make lock`.
    assert not re.search(r"^\s*--(index-url|extra-index-url|find-links|trusted-host)|file://|/opt/", text, re.M)
    assert "#    make lock" in text  # the header names the command that regenerates it


def test_the_dev_lock_runs_what_production_runs():
    runtime, dev = lock_pins(REPO / "requirements.lock"), lock_pins(REPO / "requirements-dev.lock")
    assert set(runtime) <= set(dev)
    assert {name: dev[name][0] for name in runtime} == {name: version for name, (version, _) in runtime.items()}


def test_the_dockerfile_installs_the_runtime_lock_with_hashes_checked():
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    copies = [line for line in lines if line.startswith("COPY ")]
    assert copies[0] == "COPY requirements.lock ./"
    installs = [line for line in lines if line.startswith("RUN ") and "pip install" in line]
    assert len(installs) == 1 and re.search(r"pip install (--\S+ )*--require-hashes (--\S+ )*-r requirements\.lock\b", installs[0]), installs
    assert "requirements.txt" not in " ".join(lines)
    # The build context keeps the lock (.dockerignore and .gcloudignore leave out *.lock, the JSON store's lock files).
    for name in (".dockerignore", ".gcloudignore"):
        entries = [line.strip() for line in (REPO / name).read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert "!requirements.lock" in entries and entries.index("!requirements.lock") > entries.index("*.lock"), name


def test_make_venv_installs_the_dev_lock_with_hashes_checked():
    dry = make_dry_run("--always-make", "venv")
    assert dry.returncode == 0, dry.stderr
    assert "-m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock" in dry.stdout
    lock = make_dry_run("lock")
    assert "pip-compile" in lock.stdout and "--generate-hashes" in lock.stdout and ".venv/" not in lock.stdout


def test_git_keeps_the_locks():
    for lock in ("requirements.lock", "requirements-dev.lock"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", lock], cwd=REPO, timeout=30)
        assert ignored.returncode == 1, f"{lock} is ignored by .gitignore"


@pytest.mark.slow
def test_the_runtime_lock_alone_installs_and_serves(tmp_path):
    """What the image does, in a fresh virtualenv: pip install --require-hashes -r requirements.lock,
    then gunicorn main:app from it answers /health (nothing from the dev set needed)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes", "-r", str(REPO / "requirements.lock")],
                         capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "ENVIRONMENT": "local", "AUTH_MODE": "disabled",
           "SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(tmp_path / "jobs.json"), "LOG_FORMAT": "json"}
    env |= {k: v for k, v in os.environ.items() if k.startswith(("NO_GCE", "GCE_METADATA", "CLOUDSDK_CORE"))}
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen([str(venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "main:app"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert json.loads(response.read()) == {"status": "ok"}
                    break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn from the runtime lock did not serve /health"
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    shutil.rmtree(venv)
