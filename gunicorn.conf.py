"""gunicorn reads this file by default from its working directory (the image's /app, the
repository when run by hand), whatever the command line says.

``when_ready`` warns loudly, once the master has bound its sockets, when crontick serves
with ``AUTH_MODE=disabled`` on an address other than loopback (web/exposure.py).

``post_fork`` and ``post_worker_init`` keep the garbage collector out of the worker's
start and off the app it loaded (web/worker_gc.py; ``CRONTICK_GC_TUNING=off`` keeps
CPython's defaults).

``control_socket_disable``: gunicorn 27's control socket (``gunicornc``) is a master
thread running an asyncio loop on ``$HOME/.gunicorn/gunicorn.ctl``, one path shared by
every gunicorn of the user. Nobody drives a Cloud Run container with it, and on a test
machine that starts many gunicorns the shared path only invites one master's shutdown to
unlink another's socket.
"""

from web import worker_gc
from web.exposure import when_ready  # noqa: F401 - a gunicorn server hook, found by name

control_socket_disable = True


def post_fork(server: object, worker: object) -> None:
    """In the new worker, before it loads the app."""
    worker_gc.before_app_load()


def post_worker_init(worker: object) -> None:
    """In the worker, once the app is loaded."""
    worker_gc.after_app_load()
