"""``make run`` (web/devserver.py) binds loopback unless told, and says so loudly when auth is off on a network address.

The devserver is started for real (``python -m web.devserver``: it starts gunicorn
itself), checked once it serves, and stopped with SIGTERM. Reachability is checked
from this machine's own non-loopback addresses (``hostname -I``). The gunicorn hook
(web/exposure.py ``when_ready``) is checked on a real gunicorn with the bind given
by ``--bind`` and by ``$PORT`` alone.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scheduler.settings import Settings
from tests.support.processes import REPO, Gunicorn, free_port, service_env
from web import exposure

ACTION = "auth_disabled_on_network"


def machine_addresses() -> list[str]:
    """This machine's non-loopback addresses, as ``hostname -I`` lists them."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [a for a in out.split() if not a.startswith("fe80:")]  # link-local needs a scope id


def accepts(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return False
        return True


class Devserver:
    """``python -m web.devserver`` with its own port and JSON store; output in files."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.port = free_port()
        env = service_env(
            ENVIRONMENT="local",
            SCHEDULER_STORAGE="json",
            SCHEDULER_JSON_PATH=str(tmp_path / "data" / "jobs.json"),
            SCHEDULER_LOCAL_TICK_SECONDS="3600",
            CRONTICK_DEMO_JOB="false",
            PORT=str(self.port),
        )
        env.pop("HOST", None)
        env.pop("GUNICORN_CMD_ARGS", None)
        env.update(settings)
        self.stdout_path, self.stderr_path = tmp_path / "devserver.out", tmp_path / "devserver.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "web.devserver"], cwd=REPO, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def wait_serving(self, timeout: float = 60) -> dict:
        """The devserver's own "crontick serving" line, logged once gunicorn answered /health."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for record in self.records():
                if record.get("message") == "crontick serving":
                    return record
            assert self.proc.poll() is None, f"devserver exited {self.proc.returncode}: {self.stderr()[-2000:]}"
            time.sleep(0.05)
        raise AssertionError(f"devserver did not serve: {self.stderr()[-2000:]}")

    def records(self) -> list[dict]:
        out = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def health(url: str) -> int:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return response.status


def warnings_of(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("action") == ACTION]


def test_without_host_it_binds_loopback_only(tmp_path):
    others = machine_addresses()
    if not others:
        pytest.skip("this machine has no non-loopback address (hostname -I) to try connecting on")
    server = Devserver(tmp_path, AUTH_MODE="disabled")
    try:
        serving = server.wait_serving()
        assert health(f"http://127.0.0.1:{server.port}") == 200
        reachable = [a for a in others if accepts(a, server.port)]
        assert reachable == [], f"the devserver accepted connections on {reachable} with auth disabled"
        assert serving["bind"] == f"127.0.0.1:{server.port}"
        assert warnings_of(server.records()) == []
        assert ACTION not in server.stderr()
    finally:
        assert server.stop() == 0


def test_host_wildcard_with_auth_disabled_warns_in_the_log_and_on_stderr(tmp_path):
    server = Devserver(tmp_path, AUTH_MODE="disabled", HOST="0.0.0.0")
    try:
        serving = server.wait_serving()
        address = f"0.0.0.0:{server.port}"
        assert serving["bind"] == address
        assert health(f"http://127.0.0.1:{server.port}") == 200
        for other in machine_addresses():
            if ":" not in other:  # an IPv4 wildcard serves every IPv4 address of the machine
                assert accepts(other, server.port), other
    finally:
        assert server.stop() == 0
    (warning,) = warnings_of(server.records())
    assert warning["severity"] == "WARNING"
    assert warning["address"] == address and warning["auth_mode"] == "disabled"
    assert f"listening on {address}, a network address" in warning["message"]
    err = [line for line in server.stderr().splitlines() if ACTION in line]
    assert err == [f"WARNING [{ACTION}] {warning['message']}"]


def test_host_loopback_named_explicitly_does_not_warn(tmp_path):
    server = Devserver(tmp_path, AUTH_MODE="disabled", HOST="localhost")
    try:
        assert server.wait_serving()["bind"] == f"localhost:{server.port}"
    finally:
        assert server.stop() == 0
    assert warnings_of(server.records()) == [] and ACTION not in server.stderr()


def test_a_bad_host_is_refused_naming_the_variable(tmp_path):
    server = Devserver(tmp_path, AUTH_MODE="disabled", HOST="http://0.0.0.0")
    assert server.proc.wait(60) != 0
    assert "HOST='http://0.0.0.0': must be an IP address or a host name" in server.stderr()


# -- warn_if_exposed, the function every starter can call ------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "exposed"),
    [
        (["127.0.0.1:8080"], []),
        (["127.0.0.53:8080", "[::1]:8080", "localhost:8080", "unix:/tmp/crontick.sock"], []),
        (["0.0.0.0:8080"], ["0.0.0.0:8080"]),
        (["[::]:8080", "127.0.0.1:9"], ["[::]:8080"]),
        (["192.0.2.7:80"], ["192.0.2.7:80"]),
        ([":8080"], [":8080"]),  # an empty host is every interface to gunicorn
        (["fd://3"], ["fd://3"]),
        (["no-such-host.invalid:8080"], ["no-such-host.invalid:8080"]),
    ],
)
def test_which_addresses_count_as_exposed(addresses, exposed):
    assert exposure.exposed_addresses(addresses) == exposed


def test_warn_if_exposed_logs_a_warning_per_address_and_writes_stderr(caplog, capsys):
    settings = Settings.from_env({"AUTH_MODE": "disabled", "ENVIRONMENT": "local"})
    with caplog.at_level(logging.WARNING, logger="web.exposure"):
        warned = exposure.warn_if_exposed(settings, ["127.0.0.1:8080", "0.0.0.0:8080", "[::]:9090"])

    assert warned == ["0.0.0.0:8080", "[::]:9090"]
    records = [r for r in caplog.records if r.name == "web.exposure"]
    assert [(r.levelno, r.json_fields["action"], r.json_fields["address"]) for r in records] == [
        (logging.WARNING, ACTION, "0.0.0.0:8080"),
        (logging.WARNING, ACTION, "[::]:9090"),
    ]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith(f"WARNING [{ACTION}] AUTH_MODE=disabled and listening on ") for line in err)


def test_warn_if_exposed_is_silent_when_auth_is_on(caplog, capsys):
    settings = Settings.from_env({"AUTH_MODE": "oidc", "OIDC_AUDIENCE": "https://x.example", "OIDC_ALLOWED_EMAILS": "a@example.com"})
    with caplog.at_level(logging.WARNING, logger="web.exposure"):
        assert exposure.warn_if_exposed(settings, ["0.0.0.0:8080"]) == []
    assert [r for r in caplog.records if r.name == "web.exposure"] == []
    assert capsys.readouterr().err == ""


# -- the gunicorn hook: the sockets gunicorn really bound -------------------------------------------


def _hook_config(tmp_path: Path) -> Path:
    config = tmp_path / "gunicorn_conf.py"
    config.write_text("from web.exposure import when_ready  # noqa: F401\n")
    return config


def test_gunicorn_hook_warns_for_a_network_bind_and_not_for_loopback(tmp_path):
    wide = free_port()
    env = service_env(AUTH_MODE="disabled", SCHEDULER_STORAGE="memory")
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=2, extra_args=("-c", str(_hook_config(tmp_path)), "--bind", f"0.0.0.0:{wide}"))
    try:
        assert health(server.url) == 200
    finally:
        assert server.stop() == 0
    lines = server.log().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{") and ACTION in line]
    assert [(r["severity"], r["address"]) for r in records] == [("WARNING", f"0.0.0.0:{wide}")]  # not the 127.0.0.1 bind
    assert len([line for line in lines if line.startswith(f"WARNING [{ACTION}]")]) == 1


def test_gunicorn_hook_sees_the_port_default_bind(tmp_path):
    """No --bind at all: gunicorn binds 0.0.0.0:$PORT by itself (the image's CMD does this)."""
    port = free_port()
    env = service_env(AUTH_MODE="disabled", SCHEDULER_STORAGE="memory", PORT=str(port))
    env.pop("GUNICORN_CMD_ARGS", None)
    command = ["gunicorn", "-c", str(_hook_config(tmp_path)), "--workers", "1", "--threads", "2", "main:app"]
    server = Gunicorn(env, tmp_path / "gunicorn.log", command=command)
    try:
        assert health(server.url) == 200
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{") and ACTION in line]
    assert [r["address"] for r in records] == [f"0.0.0.0:{port}"]


def test_gunicorn_hook_is_silent_with_auth_on(tmp_path):
    port = free_port()
    env = service_env(
        AUTH_MODE="oidc", OIDC_AUDIENCE="https://crontick.example", OIDC_ALLOWED_EMAILS="sched@example.com",
        SCHEDULER_STORAGE="memory", PORT=str(port),
    )
    env.pop("GUNICORN_CMD_ARGS", None)
    server = Gunicorn(env, tmp_path / "gunicorn.log", command=["gunicorn", "-c", str(_hook_config(tmp_path)), "--workers", "1", "main:app"])
    try:
        assert health(server.url) == 200
    finally:
        assert server.stop() == 0
    assert ACTION not in server.log()


def test_the_repository_gunicorn_conf_loads_the_hook_without_any_flag(tmp_path):
    """gunicorn reads ./gunicorn.conf.py by default: the image's CMD (run in /app) and any
    gunicorn started from the repository warn with no -c flag at all."""
    port = free_port()
    env = service_env(AUTH_MODE="disabled", SCHEDULER_STORAGE="memory", PORT=str(port))
    env.pop("GUNICORN_CMD_ARGS", None)
    server = Gunicorn(env, tmp_path / "gunicorn.log", command=["gunicorn", "--workers", "1", "--threads", "2", "main:app"])
    try:
        assert health(server.url) == 200
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{") and ACTION in line]
    assert [(r["severity"], r["address"]) for r in records] == [("WARNING", f"0.0.0.0:{port}")]
    assert "Control socket" not in server.log()  # gunicorn.conf.py turns gunicorn's control socket off


@pytest.mark.parametrize(("value", "wanted"), [(None, True), ("", True), (" on ", True), ("YES", True), ("1", True), ("off", False), ("No", False), ("0", False), ("false", False)])
def test_the_demo_job_setting_reads_as_every_boolean_setting(value, wanted):
    from web.devserver import demo_job_wanted

    assert demo_job_wanted({} if value is None else {"CRONTICK_DEMO_JOB": value}) is wanted


def test_an_unreadable_demo_job_setting_is_refused_naming_it(tmp_path):
    server = Devserver(tmp_path, AUTH_MODE="disabled", CRONTICK_DEMO_JOB="nope")
    assert server.proc.wait(60) != 0
    assert "CRONTICK_DEMO_JOB='nope': must be true or false" in server.stderr()
    assert not (tmp_path / "data" / "jobs.json").exists()  # refused before anything started
