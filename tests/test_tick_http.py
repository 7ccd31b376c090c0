"""POST /cron/tick through the Flask app: response, dedupe of Cloud Scheduler retries, logs."""

from __future__ import annotations

import json
import logging

from scheduler.model import JobStatus

SCHEDULER_HEADERS = {"X-CloudScheduler-JobName": "projects/p/locations/l/jobs/crontick-tick", "X-CloudScheduler-ScheduleTime": "2026-01-05T12:00:00Z"}
METRIC_KEYS = {"tick_id", "duplicate", "jobs_checked", "jobs_due", "jobs_executed", "jobs_succeeded", "jobs_failed", "jobs_skipped", "jobs_recovered", "jobs_deferred", "jobs_misfired", "lease_lost", "jobs_dispatched", "jobs_dispatch_failed", "runs_abandoned", "jobs_unreadable", "duration_ms"}


def test_tick_answers_its_metrics(client, ct, clock):
    ct.service.create({"job_type": "log", "schedule_at": clock().isoformat()})
    response = client.post("/cron/tick")
    assert response.status_code == 200
    body = response.json
    assert set(body) == METRIC_KEYS
    assert (body["jobs_due"], body["jobs_executed"], body["jobs_succeeded"], body["duplicate"]) == (1, 1, 1, False)


def test_the_same_cloud_scheduler_occurrence_twice_runs_nothing_twice(client, ct, clock):
    first_job, _ = ct.service.create({"job_type": "ledger", "schedule_at": clock().isoformat(), "payload": {"ledger": "/dev/null"}})
    first = client.post("/cron/tick", headers=SCHEDULER_HEADERS).json
    assert first["jobs_executed"] == 1
    # A job that becomes due before Cloud Scheduler retries the same occurrence is left for the next one.
    ct.service.create({"job_type": "log", "schedule_at": clock().isoformat()})
    retry = client.post("/cron/tick", headers=SCHEDULER_HEADERS).json
    assert retry["duplicate"] is True and retry["tick_id"] == first["tick_id"] and retry["jobs_executed"] == 1
    assert ct.store.count_due(clock()) == 1
    assert len(ct.store.list_executions(job_id=first_job.id)) == 1
    next_minute = dict(SCHEDULER_HEADERS, **{"X-CloudScheduler-ScheduleTime": "2026-01-05T12:01:00Z"})
    assert client.post("/cron/tick", headers=next_minute).json["jobs_executed"] == 1


def test_tick_source_is_recorded(client, ct, clock):
    ct.service.create({"job_type": "log", "schedule_at": clock().isoformat()})
    client.post("/cron/tick", headers=SCHEDULER_HEADERS)
    assert ct.store.recent_ticks(1)[0].source.value == "cloud_scheduler"
    assert ct.store.list_executions()[0].source.value == "cloud_scheduler"


def test_one_structured_metrics_line_per_tick(config, clock, registry, capsys):
    from main import create_app

    app = create_app(config | {"GOOGLE_CLOUD_PROJECT": "proj-1"}, clock=clock, registry=registry)
    client, ct = app.test_client(), app.extensions["crontick"]
    ct.service.create({"job_type": "log", "schedule_at": clock().isoformat()})
    client.post("/cron/tick", headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    ticks = [line for line in lines if line.get("message") == "Scheduler tick completed"]
    assert len(ticks) == 1
    tick = ticks[0]
    assert tick["severity"] == "INFO" and tick["jobs_succeeded"] == 1 and tick["source"] == "manual"
    assert tick["logging.googleapis.com/trace"] == "projects/proj-1/traces/105445aa7843bc8bf206b12000100000"
    job_lines = [line for line in lines if line.get("job_id")]
    assert {"tick_id", "job_id", "attempt", "duration_ms", "outcome"} <= set(job_lines[-1])


def test_health_does_not_touch_the_store(client, ct):
    calls = []
    ct.store.count_by_status = lambda: calls.append(1)  # any store call would be recorded
    assert client.get("/health").json == {"status": "ok"}
    assert calls == []


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/nope").json["error"]["code"] == "not_found"
    response = client.get("/cron/tick")
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"


def test_a_failing_handler_is_a_200_tick_with_a_failed_job(client, ct, clock):
    job, _ = ct.service.create({"job_type": "http_request", "schedule_at": clock().isoformat(), "payload": {"url": "http://127.0.0.1:9/unreachable", "timeout_seconds": 1}})
    body = client.post("/cron/tick").json
    assert body["jobs_failed"] == 1
    stored = ct.store.get_job(job.id)
    assert stored.status is JobStatus.PENDING and "ConnectionError" in stored.last_error
