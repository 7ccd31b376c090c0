"""Stores: where jobs live. ``create_store`` picks one from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.base import ClaimResult, ExtendResult, JobStore, RestoreResult, SettleResult

if TYPE_CHECKING:
    from scheduler.settings import Settings

__all__ = ["ClaimResult", "ExtendResult", "JobStore", "RestoreResult", "SettleResult", "create_store"]


def create_store(settings: Settings) -> JobStore:
    """Build (not open) the store ``SCHEDULER_STORAGE`` names."""
    if settings.storage == "memory":
        from storage.memory import MemoryStore

        return MemoryStore(history_limit=settings.history_limit)
    if settings.storage == "firestore":
        # Imported here so that a service on the JSON store never loads the Firestore library.
        from storage.firestore import FirestoreStore

        return FirestoreStore.from_settings(settings)
    if settings.storage == "postgres":
        # Likewise: psycopg is loaded only by a service on the PostgreSQL store.
        from storage.postgres import PostgresStore

        return PostgresStore.from_settings(settings)
    from storage.jsonfile import JsonFileStore

    return JsonFileStore(settings.json_path, history_limit=settings.history_limit, lock_timeout=settings.json_lock_timeout_seconds)
