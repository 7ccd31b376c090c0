"""The JSON-file store: every job in one file, for local and single-machine use.

Safe across threads and processes on one machine:

* every call holds an exclusive ``filelock`` on ``<file>.lock`` (an OS-level
  ``flock``, released by the kernel if the process dies) for its whole
  read-modify-write;
* every write goes to a temporary file in the same folder, is fsync'd, then
  atomically replaces the old file (``os.replace``), and the folder is fsync'd,
  so a crash at any instant leaves either the old or the new file, whole;
* a file that does not parse, or has an unknown ``schema_version``, raises
  :class:`~scheduler.errors.StoreCorrupt` naming it, and is never overwritten.

Symlinks: the configured path (``SCHEDULER_JSON_PATH``) is resolved once, with
``os.path.realpath``, when the store is built, and the store then locks
(``<target>.lock``), reads and atomically replaces the *target*; the link itself
is never touched, so it keeps working when ops tooling manages the link, and a
store opened on the link and one opened on the target share one file and one
lock. ``open()`` logs both paths (action ``json_store_opened``). A link changed
to point elsewhere takes effect at the next start.

Parsing is the expensive part, so the parsed document is cached. The cache is
keyed by a random ``generation`` token written first in every file this store
writes; a call re-reads only the first bytes to check it, and re-parses when
another process has written since. A file without the token (edited by hand) is
parsed on every call.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from scheduler.errors import StoreCorrupt, StoreUnavailable
from storage.table import SCHEMA_VERSION, JobTable, TableStore, empty_document

log = logging.getLogger(__name__)

_GENERATION_RE = re.compile(rb'^\{"generation":\s*"([0-9a-f]{32})"')


class JsonFileStore(TableStore):
    kind = "json"

    def __init__(self, path: str | os.PathLike[str], *, history_limit: int = 50, lock_timeout: float = 10.0) -> None:
        self.configured_path = Path(path)
        # Resolved once (see the module docstring): os.replace on a link would replace the link.
        self.path = Path(os.path.realpath(path))
        self.history_limit = history_limit
        self.lock_timeout = lock_timeout
        self._file_lock = FileLock(f"{self.path}.lock", timeout=lock_timeout)
        self._mutex = threading.Lock()  # guards the cache between this process's threads
        self._cache: tuple[bytes, dict[str, Any]] | None = None
        self.fsynced_writes = 0  # file replacements made by this instance (benchmarks read it)

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the folder of {self.path}: {exc}") from exc
        self._call("count_by_status")
        self._remove_orphaned_temp_files()
        log.info(
            "JSON store opened",
            extra={"json_fields": {"action": "json_store_opened", "path": str(self.configured_path), "resolved_path": str(self.path), "symlink": self.configured_path.is_symlink()}},
        )

    def _remove_orphaned_temp_files(self) -> None:
        """Temp files are only written under the lock, so any found while holding it
        were left by a process killed mid-write; they never hold the only copy."""
        with self._mutex, self._file_lock:
            for orphan in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                try:
                    orphan.unlink()
                    log.info("Removed a temp file left by an interrupted write", extra={"json_fields": {"file": str(orphan)}})
                except OSError:
                    pass

    def _call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            try:
                with self._file_lock:
                    doc = self._load()
                    table = JobTable(doc, history_limit=self.history_limit)
                    try:
                        result = getattr(table, verb)(*args, **kwargs)
                        if table.dirty:
                            self._save(doc)
                    except BaseException:
                        if table.dirty:
                            self._cache = None  # the cached doc was changed but not saved
                        raise
                    return result
            except Timeout:
                raise StoreUnavailable(f"could not lock {self.path} within {self.lock_timeout:g} s") from None
            except OSError as exc:  # the lock file itself could not be opened
                raise StoreUnavailable(f"cannot lock {self.path}: {exc}") from exc

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(64)
                match = _GENERATION_RE.match(head)
                if match and self._cache is not None and self._cache[0] == match.group(1):
                    return self._cache[1]
                raw = head + fh.read()
        except FileNotFoundError:
            self._cache = None
            return empty_document()
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        doc = self._parse(raw)
        self._cache = (match.group(1), doc) if match else None
        return doc

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreCorrupt(f"{self.path} is not valid JSON ({exc}); fix or move it, crontick will not overwrite it") from None
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            version = doc.get("schema_version") if isinstance(doc, dict) else None
            raise StoreCorrupt(
                f"{self.path} has unknown schema_version {version!r} (expected {SCHEMA_VERSION}); crontick will not overwrite it"
            )
        for key, kind in (("jobs", dict), ("executions", dict), ("ticks", list)):
            if not isinstance(doc.get(key), kind):
                raise StoreCorrupt(f"{self.path}: {key!r} must be a JSON {kind.__name__}; crontick will not overwrite it")
        doc.pop("generation", None)
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        generation = uuid.uuid4().hex
        payload = json.dumps({"generation": generation, **doc}, separators=(",", ":")).encode()
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc
        _fsync_folder(folder)
        self.fsynced_writes += 1
        self._cache = (generation.encode(), doc)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; best effort where the OS refuses it.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of folder not supported", extra={"json_fields": {"folder": str(folder)}})
    finally:
        os.close(fd)
