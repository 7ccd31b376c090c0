"""The operator console: server-rendered pages at ``/`` to see and steer every job.

``register_console(app)`` is all ``main.py`` calls. It reads one setting and, unless
the console is off, registers the blueprint of :mod:`web.console.views` (pages,
actions, the cron preview and the vendored assets under ``/assets``).

Modes (``CONSOLE_AUTH``; see :mod:`web.console.auth`):

``iap``
    Behind Identity-Aware Proxy. Every request carries IAP's signed header,
    ``X-Goog-IAP-JWT-Assertion`` (ES256), verified with google-auth against
    ``IAP_CERTS_URL`` for ``IAP_AUDIENCE``; ``CONSOLE_ADMIN_EMAILS`` may act,
    ``CONSOLE_VIEWER_EMAILS`` may look, anyone else gets a 403 page naming them.
``disabled``
    No sign-in, everyone is an admin called ``local``: ``ENVIRONMENT=local`` only
    (settings refuse it elsewhere). The default there, so ``make run`` has a console.
``off``
    Nothing registered: ``/`` answers the service's JSON 404. The default outside
    ``ENVIRONMENT=local``.

One code path: every action calls the same :class:`~scheduler.service.JobService`
verb as the API and Chat (with ``actor`` = the signed-in email), forms are turned
into the API's JSON body and validated by the same :mod:`scheduler.jobspec`, and a
refusal's ``field`` puts its message next to that field.

Cold start: this module imports nothing but Flask's own pieces; the views, the
figures and google-auth load when the blueprint is registered or first used.
"""

from __future__ import annotations

from flask import Flask


def console_mode(settings) -> str:
    """``CONSOLE_AUTH``, or its default: ``disabled`` with ``ENVIRONMENT=local``, else ``off``."""
    if settings.console_auth:
        return settings.console_auth
    return "disabled" if settings.environment == "local" else "off"


def register_console(app: Flask) -> None:
    settings = app.extensions["crontick"].settings
    mode = console_mode(settings)
    if mode == "off":
        return
    from web.console.views import bp, setup

    setup(app, mode)
    app.register_blueprint(bp)
