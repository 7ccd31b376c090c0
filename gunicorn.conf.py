"""gunicorn reads this file by default from its working directory (the image's /app, the
repository when run by hand), whatever the command line says.

``when_ready`` warns loudly, once the master has bound its sockets, when crontick serves
with ``AUTH_MODE=disabled`` on an address other than loopback (web/exposure.py).
"""

from web.exposure import when_ready  # noqa: F401 - a gunicorn server hook, found by name
