"""The Alertmanager webhook payload (version 4), as Alertmanager 0.25 and newer send it.

Unknown fields are kept, not refused: newer Alertmanagers add fields (`notification_reason`,
`routeLabels`) and the raw body is stored beside the parsed alerts anyway. What the model
accepts the store can write: no string holds a NUL character (PostgreSQL text cannot), and
every timestamp has a UTC instant within the years 1 to 9999, and a fingerprint fits the
key's index. Validation stops at the first bad
alert and the first bad label of a set, so a body of a million wrong alerts costs one error, not
gigabytes of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# Alertmanager writes Go's zero time for "no end known yet".
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
# The instants an alert's times are kept within: one outside is clamped to the nearer bound,
# the same on both stores. No alert began before the Unix epoch, and PostgreSQL's driver
# reads the first and last instants Python holds (0001-01-01, 9999-12-31T23:59:59.999999) as
# -infinity and infinity, which come back without a time zone.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_NO_NUL = "^[^\\x00]*$"  # the JSON schema of the same rule
_TIMESTAMP = (
    "RFC 3339, with its time zone; its UTC time within the years 1 to 9999, and kept within"
    " 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z (a time outside is clamped to the nearer)"
)
# What a datetime can hold in UTC: a time zone can take an instant out of Python's range.
_FIRST, _LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


_NUL = "a NUL character (\\u0000) cannot be stored"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(_NUL)
    return value


Text = Annotated[
    str,
    AfterValidator(_no_nul),
    WithJsonSchema({"type": "string", "pattern": _NO_NUL}),
]
"""A string the store can keep as text: anything but a NUL character."""
NO_NUL = AfterValidator(_no_nul)
"""Text's rule alone, to follow other constraints (a length checked first, as a string)."""
_WebhookText = Annotated[str, WithJsonSchema({"type": "string", "pattern": _NO_NUL})]
"""The same, checked by Notification.from_webhook in one pass over the body, not string by
string: a webhook of 100 alerts holds thousands of strings."""
Labels = Annotated[
    dict[_WebhookText, _WebhookText],
    Field(fail_fast=True),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": _NO_NUL},
            "additionalProperties": {"type": "string", "pattern": _NO_NUL},
        }
    ),
]
"""Label names and values (or annotations): text to text."""


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Alert(_Model):
    status: AlertStatus
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt", description=_TIMESTAMP, ge=_FIRST, le=_LAST)
    ends_at: datetime | None = Field(
        None, alias="endsAt", description=_TIMESTAMP, ge=_FIRST, le=_LAST
    )
    generator_url: _WebhookText = Field("", alias="generatorURL")
    # Alertmanager's are 16 hex digits; PostgreSQL's key index holds no more than 2.7 kB.
    fingerprint: _WebhookText = Field(
        min_length=1, max_length=128, json_schema_extra={"minLength": 1, "maxLength": 128}
    )

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _timestamps_carry_a_zone(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a time zone, as RFC 3339 requires")
        return value

    @field_validator("ends_at")
    @classmethod
    def _zero_time_means_unknown(cls, value: datetime | None) -> datetime | None:
        return None if value == _GO_ZERO_TIME else value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _within_the_kept_range(cls, value: datetime | None) -> datetime | None:
        """Clamped, not refused: a refusal would drop every alert of the notification (a 4xx
        is not retried), and the same clamp on every delivery keeps the alert's identity."""
        if value is None:
            return None
        return min(max(value, EARLIEST), LATEST)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def texts(self) -> Iterator[tuple[tuple[str, ...], str]]:
        """Every string the store keeps, with its location (by JSON name)."""
        yield ("fingerprint",), self.fingerprint
        yield ("generatorURL",), self.generator_url
        yield from _label_texts("labels", self.labels)
        yield from _label_texts("annotations", self.annotations)


class Notification(_Model):
    version: Literal["4"]
    group_key: _WebhookText = Field(alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: _WebhookText
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: _WebhookText = Field("", alias="externalURL")
    alerts: list[Alert] = Field(fail_fast=True)

    @field_validator("truncated_alerts", mode="before")
    @classmethod
    def _integral_number_is_a_count(cls, value: object) -> object:
        """2.0 is an integer to JSON Schema, and so to the strict parse; "2" stays refused."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @classmethod
    def from_webhook(cls, body: bytes) -> Notification:
        """Parse a webhook body as its JSON schema says: strictly, so a number is not taken for
        a timestamp nor a string for a count, and by the JSON names only. Raises
        ValidationError naming each bad field."""
        # By the JSON names only: `ends_at` in a body is an unknown field, not `endsAt`.
        notification = cls.model_validate_json(body, strict=True, by_alias=True, by_name=False)
        if _may_hold_nul(body):
            nul = next((at for at, text in notification.texts() if "\x00" in text), None)
            if nul is not None:
                error = InitErrorDetails(
                    type=PydanticCustomError("nul_character", _NUL), loc=nul, input=body
                )
                raise ValidationError.from_exception_data(cls.__name__, [error])
        return notification

    def texts(self) -> Iterator[tuple[tuple[int | str, ...], str]]:
        """Every string the store keeps, with its location (by JSON name)."""
        yield ("groupKey",), self.group_key
        yield ("receiver",), self.receiver
        yield ("externalURL",), self.external_url
        yield from _label_texts("groupLabels", self.group_labels)
        yield from _label_texts("commonLabels", self.common_labels)
        yield from _label_texts("commonAnnotations", self.common_annotations)
        for index, alert in enumerate(self.alerts):
            for at, text in alert.texts():
                yield ("alerts", index, *at), text


_ESCAPED_NUL = re.compile(rb"\\u0000")


def _may_hold_nul(body: bytes) -> bool:
    """JSON carries a NUL only escaped: look for the escape from the first backslash (a
    memchr away; most bodies have none or few)."""
    first = body.find(b"\\")
    return first >= 0 and _ESCAPED_NUL.search(body, first) is not None


def _label_texts(name: str, labels: dict[str, str]) -> Iterator[tuple[tuple[str, ...], str]]:
    for key, value in labels.items():
        yield (name, key, "[key]"), key
        yield (name, key), value
