"""The JSON-file store: every job in one file, for local and single-machine use.

Safe across threads and processes on one machine:

* every call holds an exclusive lock on ``<file>.lock`` (an OS-level ``flock``,
  released by the kernel if the process dies: storage/flock.py) for its whole
  read-modify-write;
* every write goes to a temporary file in the same folder, is fsync'd, then
  atomically replaces the old file (``os.replace``), and the folder is fsync'd,
  so a crash at any instant leaves either the old or the new file, whole;
* a file that does not parse, or has an unknown ``schema_version``, raises
  :class:`~scheduler.errors.StoreCorrupt` naming it, and is never overwritten;
  so does one nested too deeply for ``json`` (a payload stored before the API
  refused them, or a hand edit), whose message also names the jobs whose
  payload nests more than 32 levels (found by parsing again in a thread with a
  large stack: see :func:`_deeply_nested_jobs`).

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

An idle tick reads nothing more: a claim that found nothing due remembers, with the
file's generation, when the next job falls due, and the claims before that time over
the same generation return at once (any write, here or in another process, makes a
new generation). So an idle tick costs the lock and a 64-byte read, whatever the
number of jobs.

Writing re-encodes only what changed: the JSON text of each job and of each job's
execution list is kept, and the document's two big sections note the keys set or
removed since the last write (:class:`_Section`); a write encodes those records and
joins the rest as they were (:class:`~storage.table.JobTable` replaces records, never
changes one in place). A tick that settles a batch thus encodes the batch, not every
job in the file. Records are encoded by orjson (about 12x the standard library's C
encoder on a job record here: 1.2 against 14 us), falling back to the standard library
for what orjson refuses (a lone surrogate, an integer beyond 64 bits, nesting beyond
255 levels: only a hand edit or a file older than the API's checks holds one). orjson
writes non-ASCII text as UTF-8 rather than ``\\u`` escapes, and a non-finite number
(``Infinity``, ``NaN``: again only a hand edit or an old file) as ``null``, so the file
stays strict JSON that any tool reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from scheduler.errors import StoreCorrupt, StoreUnavailable
from storage import flock
from storage.table import SCHEMA_VERSION, JobTable, TableStore, empty_document

log = logging.getLogger(__name__)

_GENERATION_RE = re.compile(rb'^\{"generation":\s*"([0-9a-f]{32})"')



def _make_encode() -> Any:
    """``orjson.dumps(value)`` (UTF-8 bytes), else (for what orjson refuses: see the module
    docstring) ``json.dumps(value, separators=(",", ":")).encode()`` with the C encoder built
    once, not per call as ``JSONEncoder.encode`` does (a write encodes each changed record on its own)."""
    import json.encoder as stdlib

    import orjson

    def default(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    if stdlib.c_make_encoder is None:  # pragma: no cover - CPython always has _json
        encode_text = json.JSONEncoder(separators=(",", ":")).encode
        return lambda value: encode_text(value).encode()
    # No circular-reference markers: records come from JSON or the table codec (no cycles),
    # and the encoder is shared by every store of the process.
    encoder = stdlib.c_make_encoder(None, default, stdlib.encode_basestring_ascii, None, ":", ",", False, False, True)
    dumps, refused = orjson.dumps, orjson.JSONEncodeError
    # A datetime or dataclass in a record is a bug: passed through, the standard encoder refuses it.
    strict = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def encode(value: Any) -> bytes:
        try:
            return dumps(value, option=strict)
        except refused:
            if isinstance(value, str):
                return stdlib.encode_basestring_ascii(value).encode()
            return "".join(encoder(value, 0)).encode()  # ASCII: the standard encoder escapes the rest

    return encode


_encode = _make_encode()


def _record_text(name: str, record: Any) -> bytes:
    """One record of a section as the file holds it: ``"name":<its JSON>``."""
    return _encode(name) + b":" + _encode(record)
# A file json.loads cannot parse for its nesting is parsed again in a worker thread with
# this stack and recursion limit, to name the jobs at fault. CPython 3.11's json uses
# about 200 bytes of C stack per level (measured: 80,000 levels fit in 16 MiB), so
# 100,000 levels stay far inside 256 MiB; deeper files get a RecursionError again.
DEEP_PARSE_STACK_BYTES = 256 * 1024 * 1024
DEEP_PARSE_RECURSION_LIMIT = 100_000
NAMED_PAYLOAD_DEPTH = 32  # the API's payload limit (scheduler.jobspec.MAX_PAYLOAD_DEPTH)


class JsonFileStore(TableStore):
    kind = "json"

    def __init__(self, path: str | os.PathLike[str], *, history_limit: int = 50, lock_timeout: float = 10.0) -> None:
        self.configured_path = Path(path)
        # Resolved once (see the module docstring): os.replace on a link would replace the link.
        self.path = Path(os.path.realpath(path))
        self.history_limit = history_limit
        self.lock_timeout = lock_timeout
        self.lock_path = f"{self.path}.lock"
        self._mutex = threading.Lock()  # guards the cache between this process's threads
        self._cache: tuple[bytes, dict[str, Any]] | None = None
        # Per section ("jobs", "executions"): (the section object, {key: b'"key":<its JSON>'}).
        self._texts: dict[str, tuple[dict[str, Any], dict[str, bytes]]] = {}
        # (generation, time): a claim over the file of that generation found no job due before
        # that time; a claim over the same generation earlier than it scans nothing (idle ticks).
        self._quiet: tuple[bytes, str] | None = None
        self.fsynced_writes = 0  # file replacements made by this instance (benchmarks read it)
        self._too_deep_memo: tuple[bytes, str] | None = None

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
        were left by a process killed mid-write; they never hold the only copy. Cleaning
        up is no reason to refuse a start: a lock not had in time (LockTimeout is an
        OSError) leaves them to the next start."""
        try:
            with self._mutex, self._file_lock():
                for orphan in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                    try:
                        orphan.unlink()
                        log.info("Removed a temp file left by an interrupted write", extra={"json_fields": {"file": str(orphan)}})
                    except OSError:
                        pass
        except OSError as exc:
            log.warning("Left temp files of interrupted writes for the next start", extra={"json_fields": {"action": "json_temp_cleanup_skipped", "error": str(exc)}})

    def _file_lock(self) -> AbstractContextManager[None]:
        return flock.hold(self.lock_path, self.lock_timeout)

    def _call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            try:
                with self._file_lock():
                    doc = self._load()
                    table = JobTable(doc, history_limit=self.history_limit)
                    generation = self._cache[0] if self._cache is not None else None
                    claim = verb == "claim_due_jobs"
                    if claim and self._quiet is not None and generation == self._quiet[0]:
                        table.quiet_until = self._quiet[1]
                    try:
                        result = getattr(table, verb)(*args, **kwargs)
                        if claim and not table.dirty and generation is not None and table.soonest is not None:
                            self._quiet = (generation, table.soonest)
                        if table.dirty:
                            self._save(doc)
                    except BaseException:
                        if table.dirty:
                            self._cache = None  # the cached doc was changed but not saved
                        raise
                    return result
            except flock.LockTimeout:
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
            return _tracked(empty_document())
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        doc = self._parse(raw)
        self._cache = (match.group(1), doc) if match else None
        return doc

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(raw)
        except RecursionError:
            raise StoreCorrupt(self._too_deep(raw)) from None
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
        return _tracked(doc)

    def _too_deep(self, raw: bytes) -> str:
        """The StoreCorrupt message for a file nested too deeply for ``json.loads`` here:
        names the jobs at fault when a deeper parse (:func:`_deeply_nested_jobs`) finds them.
        Remembered per file content, since a service serving 503 asks on every call."""
        digest = hashlib.sha256(raw).digest()
        if self._too_deep_memo is not None and self._too_deep_memo[0] == digest:
            return self._too_deep_memo[1]
        job_ids = _deeply_nested_jobs(raw)
        if job_ids:
            shown = ", ".join(repr(job_id) for job_id in job_ids[:20]) + (f" and {len(job_ids) - 20} more" if len(job_ids) > 20 else "")
            message = (
                f"{self.path} is nested too deeply to read: job(s) {shown} have a payload nested more than "
                f"{NAMED_PAYLOAD_DEPTH} levels deep; remove or flatten them by hand, crontick will not overwrite the file"
            )
        else:
            message = f"{self.path} is nested too deeply to read (no job payload is the cause that could be found); fix or move it, crontick will not overwrite it"
        log.error("JSON store file nested too deeply", extra={"json_fields": {"action": "store_file_too_deep", "file": str(self.path), "job_ids": job_ids[:100]}})
        self._too_deep_memo = (digest, message)
        return message

    def _encoded(self, doc: dict[str, Any], generation: str) -> list[bytes]:
        """``json.dumps({"generation": generation, **doc}, separators=(",", ":")).encode()`` in
        chunks to write one after another, re-encoding only the jobs and execution lists set
        or removed since the last write (a :class:`_Section` notes them; a section seen for
        the first time is encoded whole).

        Chunks, not one joined text: each section is one ``b",".join`` of its records' kept
        texts, written as it is. Joining the whole file as well, then encoding it, made two
        more 1 MB copies a write, and their allocations pushed glibc past its heap trim
        threshold, so every write also page-faulted fresh memory (2.6 against 1.4 ms a
        write of 1,000 jobs, measured)."""
        chunks = [b'{"generation":' + _encode(generation)]
        for key, value in doc.items():
            chunks.append(b"," + _encode(key) + b":")
            if key not in _SECTIONS or not isinstance(value, dict):
                chunks.append(_encode(value))
                continue
            known = self._texts.get(key)
            if isinstance(value, _Section) and known is not None and known[0] is value:
                texts = known[1]
                added = []
                for name in value.changed:
                    if name not in value:
                        texts.pop(name, None)
                    elif name in texts:
                        texts[name] = _record_text(name, value[name])
                    else:
                        added.append(name)
                if added:  # new keys are the last ones of the section: add them in its order
                    wanted = set(added)
                    tail = []
                    for name in reversed(value):
                        if not wanted:
                            break
                        if name in wanted:
                            tail.append(name)
                            wanted.discard(name)
                    for name in reversed(tail):
                        texts[name] = _record_text(name, value[name])
            else:
                texts = {name: _record_text(name, record) for name, record in value.items()}
            if isinstance(value, _Section):
                value.changed.clear()
            self._texts[key] = (value, texts)
            chunks += [b"{", b",".join(texts.values()), b"}"]
        chunks.append(b"}")
        return chunks

    def _save(self, doc: dict[str, Any]) -> None:
        generation = uuid.uuid4().hex
        chunks = self._encoded(doc, generation)
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
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


_SECTIONS = ("jobs", "executions")


class _Section(dict):  # type: ignore[type-arg]
    """A section of the document ("jobs", "executions") that notes the keys set or removed
    since the last write, so that the write re-encodes those records only. Every way
    :class:`~storage.table.JobTable` changes a section goes through these methods (it
    replaces records, never edits one in place)."""

    __slots__ = ("changed",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.changed: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changed.add(key)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self.changed.add(key)
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> _Section:
        self.update(other)
        return self

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self.changed.add(key)
        return key, value

    def clear(self) -> None:
        self.changed.update(self)
        super().clear()


def _tracked(doc: dict[str, Any]) -> dict[str, Any]:
    for key in _SECTIONS:
        if isinstance(doc.get(key), dict) and not isinstance(doc[key], _Section):
            doc[key] = _Section(doc[key])
    return doc


def _deeply_nested_jobs(raw: bytes) -> list[str]:
    """Ids of the jobs in ``raw`` whose payload nests more than :data:`NAMED_PAYLOAD_DEPTH`
    levels, sorted; empty when none does or when even this parse fails.

    Only called after ``json.loads`` raised RecursionError: parses again in a thread
    with a :data:`DEEP_PARSE_STACK_BYTES` stack and the recursion limit raised to
    :data:`DEEP_PARSE_RECURSION_LIMIT` for the time of the parse (the limit is
    process-wide; this is an error path of a store that cannot serve anyway).
    """
    found: list[str] = []

    def parse() -> None:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, DEEP_PARSE_RECURSION_LIMIT))
        try:
            doc = json.loads(raw)
        except (RecursionError, ValueError, UnicodeDecodeError, MemoryError):
            return
        finally:
            sys.setrecursionlimit(limit)
        jobs = doc.get("jobs") if isinstance(doc, dict) else None
        if isinstance(jobs, dict):
            found.extend(sorted(str(job_id) for job_id, data in jobs.items() if isinstance(data, dict) and _nesting(data.get("payload")) > NAMED_PAYLOAD_DEPTH))

    try:
        previous = threading.stack_size(DEEP_PARSE_STACK_BYTES)
    except (ValueError, RuntimeError):  # the platform refuses that stack size: name the file only
        return []
    try:
        worker = threading.Thread(target=parse, name="crontick-deep-parse", daemon=True)
        worker.start()
    finally:
        threading.stack_size(previous)
    worker.join()
    return found


def _nesting(value: Any) -> int:
    """Levels of arrays and objects in ``value`` (``{}`` is 1), iteratively; stops
    counting past :data:`NAMED_PAYLOAD_DEPTH`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > NAMED_PAYLOAD_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
