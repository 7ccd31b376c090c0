"""The query shapes the Firestore store issues, and the composite indexes that serve them.

Every composite query :mod:`storage.firestore` sends is listed in :data:`QUERY_SHAPES`
and shipped in ``firestore.indexes.json`` (``tests/test_firestore_store.py`` checks
both against the queries actually sent, and that the file declares no unused index).
Due jobs are found by two indexed queries only, never a scan::

    status == "pending" AND next_run_at <= now ORDER BY next_run_at LIMIT n+1
    status == "running" AND lease_until <= now ORDER BY lease_until LIMIT n+1

A running job whose ``lease_until`` is null is not found by the second due query
(claims always set it).
"""

from __future__ import annotations

from dataclasses import dataclass

ASCENDING, DESCENDING = "ASCENDING", "DESCENDING"


@dataclass(frozen=True)
class QueryShape:
    """One query the store issues: the collection (by settings key), its equality
    fields and its ordering (range filters are on the first ordered field)."""

    collection: str  # "jobs" | "executions" | "ticks"
    equality: tuple[str, ...]
    order: tuple[tuple[str, str], ...]  # (field, "ASCENDING" | "DESCENDING"); "__name__" allowed

    def needs_composite_index(self) -> bool:
        fields = set(self.equality) | {f for f, _ in self.order if f != "__name__"}
        return len(fields) > 1

    def index_fields(self) -> list[tuple[str, str]]:
        """The composite index serving it: equality fields, then the ordered ones."""
        return [(f, ASCENDING) for f in sorted(self.equality)] + [(f, d) for f, d in self.order if f != "__name__"]


QUERY_SHAPES: tuple[QueryShape, ...] = (
    # open: read one job
    QueryShape("jobs", (), ()),
    # claim_due_jobs / count_due
    QueryShape("jobs", ("status",), (("next_run_at", ASCENDING),)),
    QueryShape("jobs", ("status",), (("lease_until", ASCENDING),)),
    # count_by_status
    QueryShape("jobs", ("status",), ()),
    # list_jobs (ordered by id)
    QueryShape("jobs", (), (("__name__", ASCENDING),)),
    QueryShape("jobs", ("status",), (("__name__", ASCENDING),)),
    QueryShape("jobs", ("job_type",), (("__name__", ASCENDING),)),
    QueryShape("jobs", ("job_type", "status"), (("__name__", ASCENDING),)),
    # list_executions (newest first, optional started_at window)
    QueryShape("executions", (), (("started_at", DESCENDING),)),
    QueryShape("executions", ("job_id",), (("started_at", DESCENDING),)),
    QueryShape("executions", ("outcome",), (("started_at", DESCENDING),)),
    QueryShape("executions", ("job_id", "outcome"), (("started_at", DESCENDING),)),
    # recent_ticks
    QueryShape("ticks", (), (("started_at", DESCENDING),)),
    # delete_finished_jobs (retention: status == completed/cancelled AND updated_at < before)
    QueryShape("jobs", ("status",), (("updated_at", ASCENDING),)),
)
