"""``POST /tasks/run`` refuses every forged token kind the tick refuses (real RS256
tokens, verified by google-auth against certs served on loopback)."""

from __future__ import annotations

import pytest

from main import create_app
from tests.reliability.test_bad_input import ADMIN, forged_tokens
from tests.support.oidc import AUDIENCE, INVOKER, CertServer, cert_server, impostor_factory, oidc_env, token_factory  # noqa: F401 - fixtures

TASKS_SA = "crontick-tasks@demo.iam.gserviceaccount.com"
BODY = {"job_id": "nope", "lease_owner": "tick-1", "lease_epoch": 1, "fire_at": "2026-01-05T12:00:00Z"}


@pytest.fixture
def tasks_client(cert_server: CertServer):
    config = oidc_env(
        cert_server.url,
        ADMIN_EMAILS=ADMIN,
        SCHEDULER_DISPATCH="cloud_tasks",
        CLOUD_TASKS_QUEUE="projects/demo/locations/us-central1/queues/crontick-runs",
        CLOUD_TASKS_TARGET_URL=f"{AUDIENCE}/tasks/run",
        CLOUD_TASKS_AUDIENCE=AUDIENCE,
        CLOUD_TASKS_SERVICE_ACCOUNT=TASKS_SA,
        CLOUD_TASKS_EMULATOR_HOST="127.0.0.1:9",  # never called: these tests create no task
        TASKS_ALLOWED_EMAILS=INVOKER,
    )
    return create_app(config).test_client()


def test_every_forged_token_kind_is_refused(tasks_client, token_factory, impostor_factory):
    forged = forged_tokens(token_factory, impostor_factory)
    assert len(forged) == 23
    for name, (value, status) in forged.items():
        headers = {} if value is None else {"Authorization": value}
        response = tasks_client.post("/tasks/run", json=BODY, headers=headers)
        assert response.status_code == status, (name, response.status_code, response.get_data(as_text=True)[:200])
        assert response.get_json()["error"]["code"] in ("unauthenticated", "permission_denied"), name


def test_the_tasks_identity_is_accepted_and_a_stale_body_runs_nothing(tasks_client, token_factory):
    response = tasks_client.post("/tasks/run", json=BODY, headers={"Authorization": "Bearer " + token_factory.token()})
    assert response.status_code == 200 and response.get_json()["result"] == "duplicate_delivery"


def test_a_token_for_another_identity_is_refused_even_if_google_signed_it(tasks_client, token_factory):
    response = tasks_client.post("/tasks/run", json=BODY, headers={"Authorization": "Bearer " + token_factory.token(email=TASKS_SA.replace("tasks", "other"))})
    assert response.status_code == 403


def test_without_any_audience_every_token_is_refused(cert_server: CertServer, token_factory):
    """A verifier with no audience would let google-auth accept any audience: it refuses instead."""
    from web.auth import TokenVerifier

    verifier = TokenVerifier(mode="oidc", audience=None, allowed=(INVOKER,), certs_url=cert_server.url)
    with pytest.raises(Exception) as caught:
        verifier.verify("Bearer " + token_factory.token())
    assert caught.value.status == 403 and "no token audience" in caught.value.message
