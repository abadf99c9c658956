"""A resolution under an older startsAt, one table of cases, run on both backends.

The rule (README, "The webhook intake"): it also resolves every later episode of the same
fingerprint still firing that began before its endsAt; one whose endsAt is at or before the later
episode's startsAt leaves it alone, and a payload's own resolution of an episode takes
precedence. The rule's SQL is written once (`remediator.store.statements.OVERTAKEN`); each
backend writes the intake around it, so each runs every case.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from remediator.alerts import AlertStatus, Notification
from remediator.store import Store
from tests.support.webhooks import NO_END, webhook, webhook_alert

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
F, G = "5e1f0a7c2d9b4e36", "0c4b7d1e9a2f6358"
START = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)

# A state: (fingerprint, minute it started, status, minute it ended or None).
State = tuple[str, float, AlertStatus, float | None]
# An episode's outcome: (fingerprint, minute it started) -> (status, minute it ended or None).
Episodes = dict[tuple[str, float], tuple[AlertStatus, float | None]]


def moment(minute: float) -> datetime:
    return START + timedelta(minutes=minute)


def notification(*states: State) -> Notification:
    alerts = [
        webhook_alert(
            {"alertname": "ApplicationDown", "instance": fingerprint},
            fingerprint=fingerprint,
            starts_at=moment(starts).isoformat(),
            status=status,
            ends_at=NO_END if ends is None else moment(ends).isoformat(),
        )
        for fingerprint, starts, status, ends in states
    ]
    return Notification.model_validate(webhook(*alerts))


OLD_RESOLVED_NEW_FIRING = [[(F, 0, FIRING, None)], [(F, 0, RESOLVED, 5)], [(F, 6, FIRING, None)]]
THREE_FIRING = [[(F, 0, FIRING, None)], [(F, 6, FIRING, None)], [(F, 7, FIRING, None)]]

CASES = [
    pytest.param(
        OLD_RESOLVED_NEW_FIRING,
        [(F, 0, RESOLVED, 9)],
        1,
        {(F, 0): (RESOLVED, 5), (F, 6): (RESOLVED, 9)},
        4,
        id="it-ends-the-later-episode-it-covers",
    ),
    pytest.param(
        OLD_RESOLVED_NEW_FIRING,
        [(F, 0, RESOLVED, 5.5)],
        0,
        {(F, 0): (RESOLVED, 5), (F, 6): (FIRING, None)},
        3,
        id="one-ending-before-the-later-episode-is-a-repeat",
    ),
    pytest.param(
        OLD_RESOLVED_NEW_FIRING,
        [(F, 0, RESOLVED, 6)],
        0,
        {(F, 0): (RESOLVED, 5), (F, 6): (FIRING, None)},
        3,
        id="one-ending-as-the-later-episode-starts-is-a-repeat",
    ),
    pytest.param(
        THREE_FIRING,
        [(F, 0, RESOLVED, 9)],
        1,
        {(F, 0): (RESOLVED, 9), (F, 6): (RESOLVED, 9), (F, 7): (RESOLVED, 9)},
        6,
        id="it-ends-every-later-episode-it-covers",
    ),
    pytest.param(
        THREE_FIRING,
        [(F, 0, RESOLVED, 9), (F, 6, RESOLVED, 6.5)],
        2,
        {(F, 0): (RESOLVED, 9), (F, 6): (RESOLVED, 6.5), (F, 7): (RESOLVED, 9)},
        6,
        id="an-episodes-own-resolution-in-the-payload-comes-first",
    ),
    pytest.param(
        [[(F, 0, FIRING, None)], [(F, 6, FIRING, None)]],
        [(F, 0, RESOLVED, 9), (F, 6, RESOLVED, None)],
        2,
        {(F, 0): (RESOLVED, 9), (F, 6): (RESOLVED, None)},
        4,
        id="an-own-resolution-without-an-end-comes-first-too",
    ),
    pytest.param(
        [[(F, 0, FIRING, None)], [(F, 3, FIRING, None)], [(F, 6, FIRING, None)]],
        [(F, 0, RESOLVED, 9), (F, 3, RESOLVED, 8)],
        2,
        {(F, 0): (RESOLVED, 9), (F, 3): (RESOLVED, 8), (F, 6): (RESOLVED, 9)},
        6,
        id="the-earliest-resolution-covering-an-episode-ends-it",
    ),
    pytest.param(
        [[(F, 0, FIRING, None)], [(F, 6, FIRING, None)], [(F, 6, RESOLVED, 6.5)]],
        [(F, 0, RESOLVED, 9)],
        1,
        {(F, 0): (RESOLVED, 9), (F, 6): (RESOLVED, 6.5)},
        4,
        id="an-episode-already-resolved-keeps-its-end",
    ),
    pytest.param(
        [[(G, 6, FIRING, None)]],
        [(F, 0, RESOLVED, 9)],
        1,
        {(F, 0): (RESOLVED, 9), (G, 6): (FIRING, None)},
        2,
        id="another-alert-is-left-alone",
    ),
]


@pytest.mark.parametrize(("before", "payload", "accepted", "episodes", "events"), CASES)
async def test_a_resolution_under_an_older_starts_at(
    store: Store,
    before: list[list[State]],
    payload: list[State],
    accepted: int,
    episodes: Episodes,
    events: int,
) -> None:
    for states in before:
        await store.record_notification(notification(*states), b"{}", RECEIVED)
    result = await store.record_notification(notification(*payload), b"{}", RECEIVED)
    assert (result.accepted, result.duplicates) == (accepted, len(payload) - accepted)

    found = {
        (r.fingerprint, r.starts_at): (r.status, r.ends_at) for r in await store.recent_alerts(20)
    }
    assert found == {
        (fingerprint, moment(starts)): (status, None if ends is None else moment(ends))
        for (fingerprint, starts), (status, ends) in episodes.items()
    }
    queued = await store.pending_events(50)
    assert len(queued) == events
    resolved = {(e.fingerprint, e.starts_at) for e in queued if e.kind is RESOLVED}
    assert resolved == {
        (fingerprint, moment(starts))
        for (fingerprint, starts), (status, _) in episodes.items()
        if status is RESOLVED
    }
    again = await store.record_notification(notification(*payload), b"{}", RECEIVED)
    assert (again.accepted, again.duplicates) == (0, len(payload))
