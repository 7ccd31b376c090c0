"""In-memory store: the reference implementation and the fake tests assert on by state.

Not durable and not shared between processes; one lock serialises every call,
so within one process it is exactly as atomic as the interface promises.
"""

from __future__ import annotations

import threading
from typing import Any

from storage.table import JobTable, TableStore, empty_document


class MemoryStore(TableStore):
    kind = "memory"

    def __init__(self, *, history_limit: int = 50) -> None:
        self._table = JobTable(empty_document(), history_limit=history_limit)
        self._lock = threading.Lock()

    def _call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return getattr(self._table, verb)(*args, **kwargs)
