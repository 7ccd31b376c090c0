"""The cold-start floor of figure 4: the least a gunicorn + Flask service does to answer.

A Flask app with one route, ``/health``, and no crontick code, served by the same gunicorn
command as crontick (one worker, 8 threads) but with no configuration file
(``--config /dev/null``: the repository's gunicorn.conf.py imports crontick's settings).
With ``CRONTICK_FLOOR_FIRESTORE=1`` it also imports ``google.cloud.firestore``, as any
service that talks to Firestore through Google's library must; it creates no client and
sends nothing.

crontick's start minus this one, measured in alternation (bench/run.py ``figure4``), is
what crontick itself adds: its modules, its settings, its store's open, its routes.
"""

from __future__ import annotations

import os

from flask import Flask

if os.environ.get("CRONTICK_FLOOR_FIRESTORE") == "1":
    import google.cloud.firestore  # noqa: F401 - the import is the point

app = Flask(__name__)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
