"""The Django router of tests/fleet_data/test_replica.py: every read goes to
the ``replica`` alias, every write to ``default`` (the primary)."""

from __future__ import annotations

from typing import Any

REPLICA = "replica"


class ReadReplicaRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return REPLICA

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the same rows, on the primary or its copy

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default"  # the replica gets the schema by streaming
