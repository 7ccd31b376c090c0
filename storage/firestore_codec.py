"""Jobs, executions and tick records to and from raw Firestore protobuf messages.

The Firestore store's hot path (claim, settle, heartbeat) builds its writes and
decodes its reads here, straight between the model and the raw ``google.firestore.v1``
messages (the upb classes under google-cloud-firestore's proto-plus types, reached
with the public ``Type.pb()``): no proto-plus wrappers, no ``DocumentSnapshot``, no
dict round trip through ``Job.to_dict``.

Wire format (unchanged from the library-built documents, so old and new documents
read alike): a job is its :meth:`Job.to_dict` fields with the seven datetime fields
as native timestamps (``audit[].at`` stays an RFC 3339 string), plus ``history`` (ids
of its kept executions, oldest first) and ``settled_by``; an execution and a tick
record likewise, with ``expire_at`` (the TTL field) added. Timestamps are read back
as aware UTC datetimes truncated to the microsecond.

A payload is stored as a map when Firestore can hold it as one, and as its JSON text (a
string) when it cannot (:func:`payload_value`): Firestore refuses an array directly inside
an array, an empty map key, a key of the reserved form ``__name__`` or longer than 1,500
bytes, an integer outside int64, and nesting deeper than 20 levels, all of which the API
accepts (a payload is any JSON object within its limits, as every other store holds it).
A string in ``payload`` is unambiguous: a payload is always an object.

Value mapping (as google-cloud-firestore's own encoder maps them): None ->
null, bool -> boolean, int -> integer (int64; a larger int raises ValueError), float
-> double, str (and str enums) -> string, datetime -> timestamp, dict -> map, list
and tuple -> array. An empty map or array is stored as one (presence set), as the
library does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from google.cloud.firestore_v1.types import document as _document
from google.cloud.firestore_v1.types import firestore as _firestore
from google.cloud.firestore_v1.types import query as _query
from google.cloud.firestore_v1.types import write as _write

from scheduler.errors import StoreCorrupt
from scheduler.model import AuditEntry, Execution, Job, JobStatus, Misfire, Outcome, Overlap, Source, TickMetrics, TickRecord, from_iso

# The raw (upb) message classes.
Value = _document.Value.pb()
Document = _document.Document.pb()
Write = _write.Write.pb()
RunQueryRequest = _firestore.RunQueryRequest.pb()
RunQueryResponse = _firestore.RunQueryResponse.pb()
BatchGetDocumentsRequest = _firestore.BatchGetDocumentsRequest.pb()
BatchGetDocumentsResponse = _firestore.BatchGetDocumentsResponse.pb()
BatchWriteRequest = _firestore.BatchWriteRequest.pb()
BatchWriteResponse = _firestore.BatchWriteResponse.pb()
CommitRequest = _firestore.CommitRequest.pb()
CommitResponse = _firestore.CommitResponse.pb()
StructuredQuery = _query.StructuredQuery.pb()

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
JOB_FIELDS = tuple(Job.__dataclass_fields__)  # every Job field, "audit" last
# Stored as native timestamps (every other job field as its JSON value): the fields typed datetime.
JOB_DATETIME_FIELDS = tuple(name for name, spec in Job.__dataclass_fields__.items() if "datetime" in str(spec.type))
HIDDEN_FIELDS = ("history", "settled_by")
_JOB_KEYS = frozenset(JOB_FIELDS)
_SCALAR_JOB_FIELDS = tuple(name for name in JOB_FIELDS if name not in ("audit", "payload"))  # put_job writes these two itself
_STATUSES = {status.value: status for status in JobStatus}
_MISFIRES = {misfire.value: misfire for misfire in Misfire}
_OVERLAPS = {overlap.value: overlap for overlap in Overlap}
_DECODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)
_FILTER_OPS = {"==": StructuredQuery.FieldFilter.EQUAL, "<=": StructuredQuery.FieldFilter.LESS_THAN_OR_EQUAL, "<": StructuredQuery.FieldFilter.LESS_THAN}
_ORDER = {"ASCENDING": StructuredQuery.ASCENDING, "DESCENDING": StructuredQuery.DESCENDING}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plain(value: Any) -> Any:
    """A datetime (Firestore's DatetimeWithNanoseconds included) as a plain aware UTC datetime."""
    if isinstance(value, datetime) and (type(value) is not datetime or value.tzinfo is not _UTC):
        value = value.astimezone(_UTC)
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=_UTC)
    return value


# -- payloads -------------------------------------------------------------------------

# Firestore's limits on a map value (measured on the emulator, and Firestore's documented
# quotas): depth counts the payload map itself as 1, as the API's MAX_PAYLOAD_DEPTH does.
FIRESTORE_MAX_DEPTH = 20
FIRESTORE_MAX_KEY_BYTES = 1500
_INT64 = (-(2**63), 2**63 - 1)


def _is_native(payload: dict[str, Any]) -> bool:
    """True when Firestore can store ``payload`` as a map value: no array directly in an
    array, map keys non-empty, not ``__reserved__`` and at most 1,500 bytes, integers
    within int64, at most :data:`FIRESTORE_MAX_DEPTH` levels. Iterative."""
    stack: list[tuple[Any, int, bool]] = [(payload, 1, False)]
    while stack:
        value, depth, in_array = stack.pop()
        kind = type(value)
        if kind is dict:
            if depth > FIRESTORE_MAX_DEPTH:
                return False
            for key, item in value.items():
                if not key or (key.startswith("__") and key.endswith("__") and len(key) >= 4) or len(key.encode("utf-8")) > FIRESTORE_MAX_KEY_BYTES:
                    return False
                stack.append((item, depth + 1, False))
        elif kind is list:
            if in_array or depth > FIRESTORE_MAX_DEPTH:
                return False
            stack.extend((item, depth + 1, True) for item in value)
        elif kind is int and not _INT64[0] <= value <= _INT64[1]:
            return False
    return True


def payload_value(payload: dict[str, Any]) -> dict[str, Any] | str:
    """What the ``payload`` field holds: the payload itself (a map), or its JSON text when
    Firestore cannot store it as a map (see the module docstring)."""
    if _is_native(payload):
        return payload
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def payload_from_value(value: Any) -> Any:
    """The payload a stored ``payload`` field holds (a map, or JSON text: see
    :func:`payload_value`). Raises ValueError for text that is not a JSON object."""
    if not isinstance(value, str):
        return value
    payload = json.loads(value)
    if not isinstance(payload, dict):
        raise ValueError(f"payload text holds a JSON {type(payload).__name__}, not an object")
    return payload


# -- values ---------------------------------------------------------------------------


def decode_value(v: Any) -> Any:
    """One raw ``Value`` as a Python value (timestamps: aware UTC datetimes, microseconds)."""
    kind = v.WhichOneof("value_type")
    if kind == "string_value":
        return v.string_value
    if kind == "timestamp_value":
        ts = v.timestamp_value
        return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    if kind == "integer_value":
        return v.integer_value
    if kind == "null_value":
        return None
    if kind == "map_value":
        return {key: decode_value(item) for key, item in v.map_value.fields.items()}
    if kind == "array_value":
        return [decode_value(item) for item in v.array_value.values]
    if kind == "boolean_value":
        return v.boolean_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return v.bytes_value
    if kind == "reference_value":
        return v.reference_value
    if kind == "geo_point_value":
        return {"latitude": v.geo_point_value.latitude, "longitude": v.geo_point_value.longitude}
    return None  # an unset Value (no kind): Firestore never returns one


def decode_fields(fields: Any, keys: frozenset[str] | None = None) -> dict[str, Any]:
    """A document's ``fields`` map as a dict (only ``keys`` when given). The common scalar
    kinds are decoded inline: this loop runs for every field of every job a tick reads."""
    out: dict[str, Any] = {}
    for key in fields:
        if keys is not None and key not in keys:
            continue
        v = fields[key]
        kind = v.WhichOneof("value_type")
        if kind == "string_value":
            out[key] = v.string_value
        elif kind == "null_value":
            out[key] = None
        elif kind == "timestamp_value":
            ts = v.timestamp_value
            out[key] = _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
        elif kind == "integer_value":
            out[key] = v.integer_value
        else:
            out[key] = decode_value(v)
    return out


def set_timestamp(ts: Any, value: datetime) -> None:
    delta = value - _EPOCH  # exact for any aware datetime, before 1970 too
    ts.seconds = delta.days * 86400 + delta.seconds
    ts.nanos = delta.microseconds * 1000


def set_value(target: Any, value: Any) -> None:
    """Write ``value`` into the raw ``Value`` message ``target``."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif value is None:
        target.null_value = 0
    elif kind is int:
        target.integer_value = value
    elif kind is bool:
        target.boolean_value = value
    elif kind is float:
        target.double_value = value
    elif isinstance(value, datetime):
        set_timestamp(target.timestamp_value, value)
    elif isinstance(value, dict):
        fields = target.map_value.fields
        target.map_value.SetInParent()  # {} is a map, not an unset value
        for key, item in value.items():
            set_value(fields[key], item)
    elif isinstance(value, (list, tuple)):
        values = target.array_value.values
        target.array_value.SetInParent()
        for item in value:
            set_value(values.add(), item)
    elif isinstance(value, Enum):
        set_value(target, value.value)
    elif isinstance(value, bool):
        target.boolean_value = value
    elif isinstance(value, int):
        target.integer_value = int(value)
    elif isinstance(value, float):
        target.double_value = float(value)
    elif isinstance(value, str):
        target.string_value = str(value)
    elif isinstance(value, bytes):
        target.bytes_value = value
    else:
        raise TypeError(f"cannot store a {kind.__name__} in Firestore")


def put_fields(fields: Any, data: dict[str, Any]) -> None:
    for key, value in data.items():
        _put(fields[key], value)


def _put(target: Any, value: Any) -> None:
    """:func:`set_value` with the common scalar kinds inline (one call per field, not two)."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif value is None:
        target.null_value = 0
    elif kind is datetime:
        delta = value - _EPOCH
        ts = target.timestamp_value
        ts.seconds = delta.days * 86400 + delta.seconds
        ts.nanos = delta.microseconds * 1000
    elif kind is int:
        target.integer_value = value
    else:
        set_value(target, value)


# -- documents --------------------------------------------------------------------------


def job_fields(job: Job) -> dict[str, Any]:
    """The job as document data (native datetimes): for hand-planted documents in tests and seeding."""
    data = job.to_dict()
    for name in JOB_DATETIME_FIELDS:
        data[name] = getattr(job, name)
    data["payload"] = payload_value(job.payload)
    return data


def put_job(fields: Any, job: Job) -> None:
    """The job's fields into a document's ``fields`` map (what :func:`job_fields` holds,
    but for the derived ``runs_remaining``, which nothing reads back)."""
    for name in _SCALAR_JOB_FIELDS:
        _put(fields[name], getattr(job, name))
    _put(fields["payload"], payload_value(job.payload))
    audit = fields["audit"].array_value
    audit.SetInParent()
    for entry in job.audit:
        set_value(audit.values.add(), entry.to_dict())


def put_execution(fields: Any, execution: Execution, history_days: int) -> None:
    put_fields(fields, {
        "job_id": execution.job_id, "fire_at": execution.fire_at, "attempt": execution.attempt, "tick_id": execution.tick_id,
        "outcome": execution.outcome.value, "started_at": execution.started_at, "duration_ms": execution.duration_ms,
        "error": execution.error, "source": execution.source.value, "expire_at": execution.started_at + timedelta(days=history_days),
    })
    if execution.task is not None:
        set_value(fields["task"], execution.task)


def tick_fields(tick: TickRecord, history_days: int) -> dict[str, Any]:
    return {
        "tick_id": tick.tick_id, "started_at": tick.started_at, "source": tick.source.value, "occurrence_key": tick.occurrence_key,
        "finished_at": tick.finished_at, "metrics": tick.metrics.to_dict(), "expire_at": tick.started_at + timedelta(days=history_days),
    }


def job_from_data(data: dict[str, Any], where: str) -> Job:
    """The job a document's decoded fields hold, or StoreCorrupt naming ``where``.

    :meth:`Job.from_dict`'s rules (unknown keys ignored, enum defaults, RFC 3339 strings
    accepted for the datetime fields), with the enums looked up in dicts: it runs for
    every job a tick claims."""
    try:
        values = {k: v for k, v in data.items() if k in _JOB_KEYS}
        for name in JOB_DATETIME_FIELDS:
            value = values.get(name)
            if value is not None and (type(value) is not datetime or value.tzinfo is not _UTC):
                values[name] = from_iso(value) if isinstance(value, str) else plain(value)
        values["payload"] = payload_from_value(values["payload"])
        values["status"] = _STATUSES[values["status"]]
        values["misfire"] = _MISFIRES[values.get("misfire", "run_once")]
        values["overlap"] = _OVERLAPS[values.get("overlap", "skip")]
        audit = values.get("audit")
        values["audit"] = tuple(AuditEntry.from_dict(entry) for entry in audit) if audit else ()
        return Job(**values)
    except _DECODE_ERRORS as exc:
        raise StoreCorrupt(f"Firestore document {where} is not a valid job ({exc!r}); crontick will not overwrite it") from None


def job_from_fields(fields: Any, where: str) -> Job:
    return job_from_data(decode_fields(fields, _JOB_KEYS), where)


def claimed_job(fields: Any, where: str, now: datetime, owner: str, lease_until: datetime) -> tuple[str, Job] | None:
    """A due job document as its claim would make it: (the stored status, the claimed job),
    or None when it is not due at ``now``. Raises StoreCorrupt (naming ``where``) for a
    document that does not decode. One decode, one Job: no ``replace`` afterwards."""
    data = decode_fields(fields, _JOB_KEYS)
    try:
        status = data["status"]
        if status == "pending":
            when = data.get("next_run_at")
            due = when is not None and when <= now
        else:
            until = data.get("lease_until")
            due = status == "running" and (until is None or until <= now)
        if not due:
            return None
        data.update(status="running", lease_owner=owner, lease_until=lease_until, lease_epoch=data["lease_epoch"] + 1, attempts=data["attempts"] + 1, updated_at=now)
    except _DECODE_ERRORS as exc:
        raise StoreCorrupt(f"Firestore document {where} is not a valid job ({exc!r}); crontick will not overwrite it") from None
    return status, job_from_data(data, where)


def execution_from_data(d: dict[str, Any], where: str) -> Execution:
    try:
        return Execution(
            job_id=d["job_id"], fire_at=plain(d["fire_at"]), attempt=d["attempt"], tick_id=d["tick_id"],
            outcome=Outcome(d["outcome"]), started_at=plain(d["started_at"]), duration_ms=d["duration_ms"],
            error=d.get("error"), source=Source(d.get("source", Source.MANUAL)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreCorrupt(f"Firestore document {where} is not a valid execution ({exc!r})") from None


def tick_from_data(d: dict[str, Any], where: str) -> TickRecord:
    try:
        return TickRecord(
            tick_id=d["tick_id"], started_at=plain(d["started_at"]), source=Source(d["source"]),
            occurrence_key=d.get("occurrence_key"), finished_at=plain(d.get("finished_at")),
            metrics=TickMetrics(**d.get("metrics", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreCorrupt(f"Firestore document {where} is not a valid tick record ({exc!r})") from None


# -- writes ----------------------------------------------------------------------------


def set_write(path: str, data: dict[str, Any] | None = None, update_time: Any = None) -> Any:
    """A whole-document write (set without merge), preconditioned on ``update_time`` when given."""
    write = Write()
    write.update.name = path
    if data is not None:
        put_fields(write.update.fields, data)
    if update_time is not None:
        write.current_document.update_time.CopyFrom(update_time)
    return write


def create_write(path: str, data: dict[str, Any]) -> Any:
    """A write that fails (ALREADY_EXISTS) if the document exists."""
    write = set_write(path, data)
    write.current_document.exists = False
    return write


def update_write(path: str, data: dict[str, Any], update_time: Any) -> Any:
    """A write of ``data``'s fields only (a field mask), preconditioned on ``update_time``."""
    write = set_write(path, data, update_time)
    write.update_mask.field_paths.extend(data)
    return write


def delete_write(path: str) -> Any:
    write = Write()
    write.delete = path
    return write


def as_raw(write: Any) -> Any:
    """A raw ``Write`` (a proto-plus one is unwrapped, for callers built on the library's types)."""
    return write if isinstance(write, Write) else _write.Write.pb(write)


# -- queries ---------------------------------------------------------------------------


def structured_query(
    collection: str,
    filters: Iterable[tuple[str, str, Any]] = (),
    order: Iterable[tuple[str, str]] = (),
    limit: int | None = None,
    select: Iterable[str] | None = None,
) -> Any:
    """A raw StructuredQuery: ``filters`` as (field, op, value) ANDed, ``order`` as (field, direction)."""
    query = StructuredQuery()
    query.from_.add().collection_id = collection
    filters = list(filters)
    if len(filters) == 1:
        _field_filter(query.where.field_filter, *filters[0])
    elif filters:
        composite = query.where.composite_filter
        composite.op = StructuredQuery.CompositeFilter.AND
        for name, op, value in filters:
            _field_filter(composite.filters.add().field_filter, name, op, value)
    for name, direction in order:
        item = query.order_by.add()
        item.field.field_path = name
        item.direction = _ORDER[direction]
    if limit is not None:
        query.limit.value = limit
    if select is not None:
        query.select.SetInParent()
        for name in select:
            query.select.fields.add().field_path = name
    return query


def _field_filter(target: Any, name: str, op: str, value: Any) -> None:
    target.field.field_path = name
    target.op = _FILTER_OPS[op]
    set_value(target.value, value)
