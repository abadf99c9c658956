"""The production store, PostgreSQL: a module a role, over one pool (`connection`)."""

from remediator.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
