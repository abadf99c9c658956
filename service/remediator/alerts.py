"""The Alertmanager webhook payload (version 4), as Alertmanager 0.25 and newer send it.

Unknown fields are kept, not refused: newer Alertmanagers add fields (`notification_reason`,
`routeLabels`) and the raw body is stored beside the parsed alerts anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Alertmanager writes Go's zero time for "no end known yet".
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Alert(_Model):
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(min_length=1)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _timestamps_carry_a_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp must carry a time zone, as RFC 3339 requires")
        return value

    @field_validator("ends_at")
    @classmethod
    def _zero_time_means_unknown(cls, value: datetime | None) -> datetime | None:
        return None if value == _GO_ZERO_TIME else value

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class Notification(_Model):
    version: Literal["4"]
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[Alert]
