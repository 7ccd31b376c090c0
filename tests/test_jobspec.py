"""Job creation input: every refusal names its field; valid input becomes a pending job."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler.errors import ConfigError, ValidationError
from scheduler.jobspec import build_job
from scheduler.model import JobStatus
from scheduler.settings import Settings
from tests.support.clock import T0

TYPES = ["log", "http_request"]


def build(**data):
    return build_job(data, known_types=TYPES, now=T0, created_by="me@x")


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"job_type": "nope", "cron": "* * * * *"}, "job_type", "unknown job_type 'nope'"),
        ({"cron": "* * * * *"}, "job_type", "job_type is required"),
        ({"job_type": "log", "cron": "61 * * * *"}, "cron", "is not valid"),
        ({"job_type": "log", "cron": "* * *"}, "cron", "must have 5 fields"),
        ({"job_type": "log", "cron": "0 0 30 2 *"}, "cron", "never fires"),
        ({"job_type": "log", "cron": 5}, "cron", "must be a string"),
        ({"job_type": "log", "cron": "* * * * *", "timezone": "Mars/Base"}, "timezone", "unknown time zone 'Mars/Base'"),
        ({"job_type": "log"}, "schedule", "exactly one schedule"),
        ({"job_type": "log", "cron": "* * * * *", "interval_seconds": 60}, "interval_seconds", "exactly one schedule, got cron and interval_seconds"),
        ({"job_type": "log", "schedule_at": "2026-01-01T09:00:00"}, "schedule_at", "has no UTC offset"),
        ({"job_type": "log", "schedule_at": "tomorrow"}, "schedule_at", "is not an RFC 3339 timestamp"),
        ({"job_type": "log", "schedule_at": 12}, "schedule_at", "must be an RFC 3339 timestamp string"),
        ({"job_type": "log", "interval_seconds": 0}, "interval_seconds", "between 1 and"),
        ({"job_type": "log", "interval_seconds": True}, "interval_seconds", "must be an integer"),
        ({"job_type": "log", "cron": "* * * * *", "payload": [1]}, "payload", "payload must be a JSON object, got list"),
        ({"job_type": "log", "cron": "* * * * *", "max_attempts": 0}, "max_attempts", "between 1 and 100"),
        ({"job_type": "log", "cron": "* * * * *", "misfire": "sometimes"}, "misfire", "misfire must be one of run_once, skip, run_all"),
        ({"job_type": "log", "cron": "* * * * *", "colour": "red"}, "colour", "unknown field 'colour'"),
        ({"job_type": "log", "cron": "* * * * *", "id": "no spaces please"}, "id", "id must be"),
        ({"job_type": "log", "cron": "* * * * *", "idempotency_key": ""}, "idempotency_key", "1 to 500"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(data, field, words):
    with pytest.raises(ValidationError) as excinfo:
        build(**data)
    assert excinfo.value.field == field
    assert words in excinfo.value.message


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(ValidationError, match="must be a JSON object"):
        build_job(["job_type"], known_types=TYPES, now=T0)


def test_valid_jobs_start_pending_with_their_first_fire_time():
    one_off = build(job_type="log", schedule_at="2026-01-05T14:00:00+01:00", payload={"a": 1}, idempotency_key="k")
    assert one_off.status is JobStatus.PENDING and one_off.next_run_at == T0 + timedelta(hours=1)
    assert one_off.next_run_at.utcoffset() == timedelta(0) and one_off.created_by == "me@x"
    cron = build(job_type="log", cron="0  9 * * 1-5", timezone="Europe/Paris")
    assert cron.cron == "0 9 * * 1-5" and cron.next_run_at == T0.replace(day=6, hour=8)
    interval = build(job_type="log", interval_seconds=90)
    assert interval.next_run_at == T0 + timedelta(seconds=90)


@pytest.mark.parametrize(
    "env, words",
    [
        ({"SCHEDULER_MAX_CONCURRENCY": "many"}, "SCHEDULER_MAX_CONCURRENCY='many': must be an integer"),
        ({"SCHEDULER_MAX_CONCURRENCY": "0"}, "must be at least 1"),
        ({"SCHEDULER_STORAGE": "mysql"}, "must be one of json, memory, firestore, postgres"),
        ({"SCHEDULER_LEASE_SECONDS": "100"}, "must be below SCHEDULER_LEASE_SECONDS"),
        ({"ENVIRONMENT": "production"}, "AUTH_MODE=disabled is refused when ENVIRONMENT=production"),
        ({"AUTH_MODE": "oidc"}, "OIDC_AUDIENCE is required"),
        ({"AUTH_MODE": "iam", "OIDC_AUDIENCE": "https://x"}, "OIDC_ALLOWED_EMAILS is required"),
        ({"METRICS_ENABLED": "maybe"}, "METRICS_ENABLED='maybe': must be true or false"),
        ({"CHAT_DEFAULT_TIMEZONE": "Nowhere/Land"}, "unknown IANA time zone"),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(env, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({"AUTH_MODE": "disabled"} | env)


def test_settings_defaults():
    settings = Settings.from_env({"AUTH_MODE": "disabled"})
    assert (settings.max_concurrency, settings.lease_seconds, settings.tick_budget_seconds, settings.json_path) == (8, 300, 150, "./data/jobs.json")
