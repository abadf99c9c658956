from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from remediator.alerts import AlertStatus, Notification
from tests.support.samples import sample, sample_names


@pytest.mark.parametrize("name", sample_names())
def test_every_captured_payload_parses(name: str) -> None:
    body = sample(name)
    notification = Notification.model_validate(body)
    assert notification.group_key == body["groupKey"]
    assert [alert.fingerprint for alert in notification.alerts] == [
        alert["fingerprint"] for alert in body["alerts"]
    ]
    assert [alert.status.value for alert in notification.alerts] == [
        alert["status"] for alert in body["alerts"]
    ]


def test_go_zero_end_time_means_the_end_is_unknown() -> None:
    notification = Notification.model_validate(sample("application-down.firing.json"))
    assert notification.alerts[0].ends_at is None


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param("0001-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC), id="zero-time"),
        pytest.param("1969-12-31T23:59:59Z", datetime(1970, 1, 1, tzinfo=UTC), id="pre-epoch"),
        pytest.param(
            "9999-12-31T23:59:59.999999Z",
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
            id="last-instant",
        ),
        pytest.param(
            "2026-11-23T19:55:00+01:00",
            datetime(2026, 11, 23, 18, 55, tzinfo=UTC),
            id="in-range-kept",
        ),
    ],
)
def test_a_start_outside_the_kept_range_is_clamped_and_the_zero_end_stays_unknown(
    sent: str, kept: datetime
) -> None:
    body = sample("application-down.firing.json")
    body["alerts"][0]["startsAt"] = sent
    [alert] = Notification.model_validate(body).alerts
    assert (alert.starts_at, alert.ends_at) == (kept, None)
    assert alert.starts_at.tzinfo is not None


def test_resolved_alert_keeps_its_end_time_and_start() -> None:
    firing = Notification.model_validate(sample("application-down.firing.json")).alerts[0]
    resolved = Notification.model_validate(sample("application-down.resolved.json")).alerts[0]
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.ends_at == datetime(2026, 11, 23, 20, 0, 12, tzinfo=UTC)
    assert (resolved.fingerprint, resolved.starts_at) == (firing.fingerprint, firing.starts_at)


def test_fields_of_newer_alertmanagers_are_kept() -> None:
    body = sample("application-down.firing.json")
    body["notification_reason"] = "repeat"
    body["routeLabels"] = {"team": "platform"}
    body["alerts"][0]["silencedBy"] = []
    notification = Notification.model_validate(body)
    assert notification.model_extra == {
        "notification_reason": "repeat",
        "routeLabels": {"team": "platform"},
    }
    assert notification.alerts[0].model_extra == {"silencedBy": []}


def test_each_alert_keeps_its_own_status_in_a_mixed_group() -> None:
    body = sample("high-memory-usage.firing-two-pods.json")
    body["alerts"][1]["status"] = "resolved"
    body["alerts"][1]["endsAt"] = "2026-11-23T20:05:07Z"
    notification = Notification.model_validate(body)
    assert notification.status is AlertStatus.FIRING
    assert [alert.status for alert in notification.alerts] == [
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
    ]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param(lambda b: b.update(version="3"), ("version",), id="old-version"),
        pytest.param(lambda b: b.pop("groupKey"), ("groupKey",), id="no-group-key"),
        pytest.param(
            lambda b: b["alerts"][0].update(startsAt="2026-11-23T20:00:07"),
            ("alerts", 0, "startsAt"),
            id="time-without-zone",
        ),
        pytest.param(
            lambda b: b["alerts"][0].update(labels={"severity": 3}),
            ("alerts", 0, "labels", "severity"),
            id="label-not-a-string",
        ),
        pytest.param(
            lambda b: b["alerts"][0].update(fingerprint=""),
            ("alerts", 0, "fingerprint"),
            id="empty-fp",
        ),
    ],
)
def test_invalid_payload_names_the_field(change, path) -> None:  # type: ignore[no-untyped-def]
    body = sample("application-down.firing.json")
    change(body)
    with pytest.raises(ValidationError) as raised:
        Notification.model_validate(body)
    assert [error["loc"] for error in raised.value.errors()] == [path]
