"""The audit trail: every change through JobService records who made it and when, in the
job itself (``job.audit``), whichever door it came through (API, Chat, console)."""

from __future__ import annotations

import random

import pytest

from main import create_app
from scheduler import snapshot as snap
from scheduler.errors import ValidationError
from scheduler.model import AUDIT_LIMIT, AuditEntry, Job, JobStatus
from scheduler.service import MAX_NOTE_CHARS
from storage.jsonfile import JsonFileStore
from tests.conftest import BASE_CONFIG
from tests.support.clock import T0, FakeClock


@pytest.fixture
def svc_app(tmp_path, registry):
    clock = FakeClock(T0)
    config = BASE_CONFIG | {"SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(tmp_path / "jobs.json")}
    app = create_app(config, clock=clock, registry=registry, rng=random.Random(3))
    return app, clock


def entries(job: Job) -> list[tuple[str | None, str, str | None, str | None]]:
    return [(e.actor, e.action, e.detail, e.note) for e in job.audit]


def test_every_verb_appends_one_entry_with_actor_time_and_note(svc_app):
    app, clock = svc_app
    service = app.extensions["crontick"].service
    job, created = service.create({"id": "j1", "job_type": "log", "cron": "*/5 * * * *"}, created_by="ann@example.com")
    assert created and entries(job) == [("ann@example.com", "create", None, None)]
    clock.advance(60)
    service.pause("j1", actor="bob@example.com", note="  database migration tonight  ")
    clock.advance(60)
    service.patch("j1", {"timezone": "Europe/Paris", "cron": "0 9 * * *"}, actor="bob@example.com")
    service.resume("j1", catch_up=True, actor="carol@example.com")
    service.run_now("j1", actor="carol@example.com", note="")
    service.cancel("j1", actor="ann@example.com", note="replaced by j2")
    job = service.get("j1")
    assert entries(job) == [
        ("ann@example.com", "create", None, None),
        ("bob@example.com", "pause", None, "database migration tonight"),
        ("bob@example.com", "edit", "cron, timezone", None),
        ("carol@example.com", "resume", "catch_up", None),
        ("carol@example.com", "run_now", None, None),
        ("ann@example.com", "cancel", None, "replaced by j2"),
    ]
    assert [e.at for e in job.audit] == [T0, T0.replace(minute=1), *[T0.replace(minute=2)] * 4]


def test_a_verb_that_changes_nothing_or_is_refused_records_nothing(svc_app):
    app, _ = svc_app
    service = app.extensions["crontick"].service
    service.create({"id": "j1", "job_type": "log", "interval_seconds": 600, "idempotency_key": "k"}, created_by="ann@example.com")
    again, created = service.create({"id": "other", "job_type": "log", "interval_seconds": 600, "idempotency_key": "k"}, created_by="eve@example.com")
    assert not created and len(again.audit) == 1
    service.pause("j1", actor="bob@example.com")
    assert len(service.pause("j1", actor="bob@example.com").audit) == 2  # already paused
    with pytest.raises(ValidationError) as refused:
        service.pause("j1", actor="bob@example.com", note="x" * (MAX_NOTE_CHARS + 1))
    assert refused.value.field == "note" and refused.value.message == f"note must be at most {MAX_NOTE_CHARS} characters, got {MAX_NOTE_CHARS + 1}"
    with pytest.raises(ValidationError) as refused:
        service.patch("j1", {"cron": "nope"}, actor="bob@example.com")
    assert refused.value.field == "cron"
    assert len(service.get("j1").audit) == 2


def test_the_audit_keeps_the_latest_entries_only(svc_app):
    app, _ = svc_app
    service = app.extensions["crontick"].service
    service.create({"id": "j1", "job_type": "log", "interval_seconds": 600}, created_by="ann@example.com")
    for i in range(AUDIT_LIMIT + 5):
        service.pause("j1", actor=f"op{i}@example.com")
        service.resume("j1", actor=f"op{i}@example.com")
    job = service.get("j1")
    assert len(job.audit) == AUDIT_LIMIT
    assert job.audit[-1].actor == f"op{AUDIT_LIMIT + 4}@example.com" and job.audit[-1].action == "resume"
    assert job.audit[0].actor == f"op{AUDIT_LIMIT + 4 - 9}@example.com" and job.audit[0].action == "pause"


def test_the_api_records_the_caller_and_shows_the_audit(svc_app):
    app, _ = svc_app
    client = app.test_client()
    created = client.post("/api/v1/jobs", json={"id": "a1", "job_type": "log", "interval_seconds": 600})
    assert created.status_code == 201
    assert created.get_json()["audit"] == [{"at": "2026-01-05T12:00:00.000000Z", "actor": "local", "action": "create", "detail": None, "note": None}]
    for action in ("pause", "resume?catch_up=true", "run"):
        assert client.post(f"/api/v1/jobs/a1:{action}").status_code == 200
    assert client.patch("/api/v1/jobs/a1", json={"payload": {"x": 1}}).status_code == 200
    body = client.delete("/api/v1/jobs/a1").get_json()
    assert [(e["actor"], e["action"], e["detail"]) for e in body["audit"]] == [
        ("local", "create", None),
        ("local", "pause", None),
        ("local", "resume", "catch_up"),
        ("local", "run_now", None),
        ("local", "edit", "payload"),
        ("local", "cancel", None),
    ]


def test_the_audit_survives_the_json_store_a_tick_and_a_snapshot(svc_app, tmp_path):
    app, clock = svc_app
    ct = app.extensions["crontick"]
    ct.service.create({"id": "j1", "job_type": "log", "schedule_at": "2026-01-05T12:00:00Z"}, created_by="ann@example.com")
    ct.service.run_now("j1", actor="bob@example.com", note="now please")
    clock.advance(1)
    assert app.test_client().post("/cron/tick").get_json()["jobs_succeeded"] == 1
    reopened = JsonFileStore(tmp_path / "jobs.json")
    reopened.open()
    job = reopened.get_job("j1")
    assert job.status is JobStatus.COMPLETED
    assert entries(job) == [("ann@example.com", "create", None, None), ("bob@example.com", "run_now", None, "now please")]
    document, _ = snap.build_snapshot(reopened, now=clock())
    parsed = snap.parse_snapshot(snap.canonical_json(document))
    assert parsed.jobs[0].audit == job.audit
    assert Job.from_dict(job.to_dict()) == job
    bad = dict(document)
    bad["jobs"] = [dict(document["jobs"][0], audit=[{"actor": "x"}])]
    bad["checksum"] = snap.checksum(bad)
    with pytest.raises(snap.SnapshotError) as refused:
        snap.parse_snapshot(snap.canonical_json(bad))
    assert "jobs[0] ('j1'): does not parse as a job: KeyError: 'at'" in str(refused.value)


def test_an_entry_round_trips():
    entry = AuditEntry(at=T0, actor=None, action="release", detail="force", note="stuck <b>lease</b>")
    assert AuditEntry.from_dict(entry.to_dict()) == entry


def test_chat_changes_record_the_sender(tmp_path, registry):
    clock = FakeClock(T0)
    config = BASE_CONFIG | {"CHAT_ALLOWED_SENDERS": "ann@example.com", "CHAT_AUTH_AUDIENCE": "1234"}
    app = create_app(config, clock=clock, registry=registry, rng=random.Random(3))
    service = app.extensions["crontick"].service
    service.create({"id": "chat1", "job_type": "log", "interval_seconds": 600}, created_by="ann@example.com")

    def say(text: str) -> str:
        person = {"name": "users/1", "displayName": "Ann", "type": "HUMAN", "email": "ann@example.com"}
        space = {"name": "spaces/AAA", "type": "ROOM"}
        event = {
            "type": "MESSAGE",
            "user": person,
            "space": space,
            "message": {"name": f"spaces/AAA/messages/{text.replace(' ', '')}", "sender": person, "text": f"@crontick {text}", "argumentText": f" {text}", "space": space},
        }
        response = app.test_client().post("/webhook", json=event)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["text"]

    assert "Paused" in say("pause chat1")
    assert "Resumed" in say("resume chat1")
    assert entries(service.get("chat1"))[1:] == [("ann@example.com", "pause", None, None), ("ann@example.com", "resume", None, None)]
