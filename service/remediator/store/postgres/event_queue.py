"""The production store's event queue: its statements, claims any number of replicas share.

Watching for events other replicas queue is `wakes`.
"""

from __future__ import annotations

from remediator.store import statements
from remediator.store.portable import PortableEventQueue
from remediator.store.postgres.wakes import PostgresWakes

# The queue's statements find events by id through the pending index only: its predicate,
# `done_at IS NULL`, must appear in every one of them, or each claim and completion scans the
# whole table (done events are kept for the retention period).
_CLAIM_EVENTS = statements.claim_events(lock="FOR UPDATE SKIP LOCKED")
_RENEW_EVENTS = (
    "UPDATE alert_events SET lease_until = $3"
    " WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND done_at IS NULL RETURNING id"
)
_COMPLETE_EVENTS = (
    "UPDATE alert_events SET done_at = $3"
    " WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND done_at IS NULL"
)


class PostgresEventQueue(PortableEventQueue, PostgresWakes):
    _CLAIM_EVENTS = _CLAIM_EVENTS
    _RENEW_EVENTS = _RENEW_EVENTS
    _COMPLETE_EVENTS = _COMPLETE_EVENTS
