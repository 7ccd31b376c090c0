"""bench/cold_floor.py, figure 4's cold-start floor: it must hold no crontick code (else
"crontick adds N ms" would leave some of crontick out), and answer /health like crontick."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.processes import REPO

OWN = ("main", "scheduler", "storage", "web", "handlers")
PROBE = (
    "import sys, bench.cold_floor as f, json; "
    "r = f.app.test_client().get('/health'); "
    f"own = sorted(m for m in sys.modules if m.split('.')[0] in {OWN!r}); "
    "print(json.dumps({'status': r.status_code, 'own': own, 'firestore': 'google.cloud.firestore' in sys.modules}))"
)


def _probe(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != "CRONTICK_FLOOR_FIRESTORE"} | env
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=environ, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_floor_app_loads_no_crontick_module_and_answers_health():
    assert _probe() == {"status": 200, "own": [], "firestore": False}


def test_the_firestore_floor_imports_google_cloud_firestore_and_still_no_crontick_module():
    assert _probe(CRONTICK_FLOOR_FIRESTORE="1") == {"status": 200, "own": [], "firestore": True}
