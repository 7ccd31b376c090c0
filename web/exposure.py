"""A loud warning when the service listens beyond loopback with authentication off.

``AUTH_MODE=disabled`` is meant for a developer's own machine (production refuses it
at start). Served on a network address it lets anyone who can reach the port create,
change and run jobs, including ``http_request`` jobs that call out from the host. So
every start with auth disabled on a non-loopback address logs one WARNING per address
(``action: auth_disabled_on_network``, the address named) and writes the same sentence
to stderr, where a terminal shows it even when the JSON log goes elsewhere.

Two entry points:

* :func:`warn_if_exposed` with the bind addresses a starter knows (``make run``'s
  ``web/devserver.py`` calls it with ``HOST:PORT`` before starting gunicorn).
* :func:`when_ready`, a gunicorn server hook (``when_ready = web.exposure.when_ready``
  in a gunicorn config file): it reads the addresses of the sockets gunicorn actually
  bound, so ``--bind``, ``GUNICORN_CMD_ARGS``, a config file's ``bind`` and the
  ``$PORT`` default (``0.0.0.0:$PORT``) all count, without parsing any of them.

A bind address is safe when it is a loopback literal (``127.0.0.0/8``, ``::1``) or a
host name whose every resolved address is loopback, or a Unix socket. Anything else,
including the wildcards ``0.0.0.0`` and ``::``, a name that does not resolve and a
``fd://`` socket handed over by a supervisor, counts as exposed: the check cannot prove
it is local, and a needless warning costs less than a silent open door.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Iterable
from typing import Any

from scheduler.errors import ConfigError
from scheduler.settings import Settings

log = logging.getLogger(__name__)

ACTION = "auth_disabled_on_network"


def format_address(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 literal in brackets (gunicorn's ``--bind`` form)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(address: str) -> tuple[str, str | None]:
    """``(host, port)`` of a ``--bind`` style TCP address; the port may be absent."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, port
    return address, None  # a bare host, or an IPv6 literal without brackets


def is_loopback_host(host: str) -> bool:
    """True when ``host`` can only be reached from this machine (see the module docstring)."""
    host = host.strip()
    if not host:
        return False  # gunicorn reads an empty host as every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0].split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def exposed_addresses(bind_addresses: Iterable[str]) -> list[str]:
    """The addresses of ``bind_addresses`` that are not provably local, in their order."""
    out = []
    for address in bind_addresses:
        if address.startswith("unix:"):
            continue
        if address.startswith("fd://") or not is_loopback_host(split_address(address)[0]):
            out.append(address)
    return out


def warn_if_exposed(settings: Settings, bind_addresses: Iterable[str]) -> list[str]:
    """Warn (log and stderr) for each non-loopback address when auth is disabled.

    Returns the addresses warned about (empty when auth is on or every address is local).
    """
    if settings.auth_mode != "disabled":
        return []
    exposed = exposed_addresses(bind_addresses)
    for address in exposed:
        message = (
            f"AUTH_MODE=disabled and listening on {address}, a network address: anyone who can reach it "
            "can create, change and run jobs. Bind 127.0.0.1 (HOST=127.0.0.1 for make run) or set AUTH_MODE=oidc or iam."
        )
        log.warning(message, extra={"json_fields": {"action": ACTION, "address": address, "auth_mode": settings.auth_mode, "environment": settings.environment}})
        sys.stderr.write(f"WARNING [{ACTION}] {message}\n")
        sys.stderr.flush()
    return exposed


def listener_addresses(listeners: Iterable[Any]) -> list[str]:
    """``host:port`` of each bound gunicorn listener (``unix:PATH`` for Unix sockets)."""
    out = []
    for listener in listeners:
        sock = listener.sock
        if sock.family == socket.AF_UNIX:
            out.append(f"unix:{sock.getsockname()}")
            continue
        host, port = sock.getsockname()[:2]
        out.append(format_address(host, port))
    return out


def when_ready(server: Any) -> None:
    """gunicorn hook: warn about the sockets the master bound. Settings that do not load
    are left for the workers to report (they refuse to start with the variable named)."""
    import os

    from web.logs import configure_logging

    try:
        settings = Settings.from_env(os.environ)
    except ConfigError:
        return
    if settings.auth_mode != "disabled":
        return
    configure_logging(settings)
    warn_if_exposed(settings, listener_addresses(server.LISTENERS))
