"""The policy file, the severity matrix and the guard-rail file, as pydantic models.

Every model forbids unknown fields: a misspelt key in a reviewed file is an error, not a
setting that silently does nothing.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from remediator.policy.durations import Duration, format_duration
from remediator.policy.egress import DEFAULT_ALLOWED_HOSTS, Egress, HostPattern, parse_host_pattern
from remediator.policy.envnames import EnvName
from remediator.policy.matchers import Matcher, MatcherError, parse_matcher
from remediator.policy.parameters import CATALOGUE
from remediator.policy.regex import RegexError, compile_anchored

Level = Literal["P1", "P2", "P3", "P4"]
LEVELS: tuple[Level, ...] = ("P1", "P2", "P3", "P4")
Channel = Literal["pagerduty", "slack", "email"]
CHANNELS: tuple[Channel, ...] = ("pagerduty", "slack", "email")
Slug = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]


def _matcher(value: object) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError('expected a matcher such as alertname="ApplicationDown"')
    try:
        return parse_matcher(value)
    except MatcherError as exc:
        raise ValueError(str(exc)) from exc


MatcherField = Annotated[Matcher, PlainValidator(_matcher), PlainSerializer(str, return_type=str)]


def _namespace_patterns(patterns: list[str]) -> list[str]:
    """Namespace allow-lists: anchored regexes, run by RE2 as matchers are (a namespace comes
    from a label, so a backtracking engine could be made to take hours)."""
    for pattern in patterns:
        try:
            compile_anchored(pattern)
        except RegexError as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return patterns


NamespacePatterns = Annotated[list[str], AfterValidator(_namespace_patterns)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnTimeout(StrEnum):
    REJECT = "reject"
    APPROVE = "approve"


class Approval(_Model):
    """A person approves the change before it is made: `min_approvals` of `approvers` (Slack
    user ids, email addresses, API identities), within `ttl`; else `on_timeout`."""

    approvers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        description="who may approve; empty: the guard rails' `approvers`",
    )
    min_approvals: int = Field(1, ge=1, le=5, description="distinct people who must approve")
    ttl: Duration = Field(default="15m", validate_default=True)
    on_timeout: OnTimeout = OnTimeout.REJECT

    @model_validator(mode="after")
    def _enough_approvers(self) -> Approval:
        repeated = sorted({a for a in self.approvers if self.approvers.count(a) > 1})
        if repeated:
            raise ValueError(f"approvers must be distinct; repeated: {', '.join(repeated)}")
        if self.approvers and self.min_approvals > len(self.approvers):
            raise ValueError(
                f"min_approvals {self.min_approvals} is more than the {len(self.approvers)}"
                " approvers listed: no request could ever be approved"
            )
        if self.ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        return self


class Step(_Model):
    id: Slug | None = None
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    when: str | None = Field(
        None, description="expression over earlier steps' results, e.g. `not steps.health.ok`"
    )
    timeout: Duration | None = None
    approval: Approval | None = Field(
        None, description="a person approves this change before it is made"
    )

    @field_validator("action")
    @classmethod
    def _action_is_known(cls, value: str) -> str:
        if value not in CATALOGUE:
            close = difflib.get_close_matches(value, CATALOGUE, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown action {value!r}{hint} (known: {', '.join(sorted(CATALOGUE))})"
            )
        return value


class Target(_Model):
    kind: Literal["Deployment", "StatefulSet", "DaemonSet", "Pod", "Application", "Node"]
    name: str
    namespace: str | None = None
    container: str | None = None
    url: str | None = Field(None, description="base URL of an Application target")

    @model_validator(mode="after")
    def _namespaced_objects_have_a_namespace(self) -> Target:
        if self.kind == "Node":
            named = [f for f in ("namespace", "container", "url") if getattr(self, f) is not None]
            if named:
                raise ValueError(
                    f"a Node target is cluster-scoped and names only the node; remove "
                    f"{', '.join(named)}"
                )
        elif self.kind != "Application" and self.namespace is None:
            raise ValueError(f"a {self.kind} target needs a namespace")
        return self


class Window(_Model):
    max: int = Field(ge=1)
    per: Duration

    @field_validator("per")
    @classmethod
    def _within_the_guards_memory(cls, per: timedelta) -> timedelta:
        if not timedelta(0) < per <= timedelta(days=7):
            raise ValueError("a rate-limit window lasts from 1s to 7d (runs are kept a week)")
        return per


class RateLimit(_Model):
    windows: list[Window] = Field(min_length=1)
    key: str | None = Field(None, description="template; default: the policy and its target")


class MaxTargets(_Model):
    """The blast radius: at most `count` distinct targets changed in any `per`. Outages come
    in clusters (a shared dependency down pages every service that needs it): past the bound
    the cause is probably shared, and changing one more target would not fix it."""

    count: int = Field(ge=1)
    per: Duration

    @field_validator("per")
    @classmethod
    def _within_the_guards_memory(cls, per: timedelta) -> timedelta:
        if not timedelta(0) < per <= timedelta(days=7):
            raise ValueError("a max_targets window lasts from 1s to 7d (runs are kept a week)")
        return per


class CircuitBreaker(_Model):
    failures: int = Field(3, ge=1)
    window: Duration = Field(default="1h", validate_default=True)
    cooldown: Duration = Field(default="30m", validate_default=True)


# `verify.http: URL` and `verify.promql: {url, query, below, above}`: the two checks the
# runbooks use, written short; each is `verify.check` with that action.
VERIFY_SHORTHANDS = {"http": "http.check", "promql": "prometheus.query"}


class Verify(_Model):
    resolved_within: Duration = Field(default="10m", validate_default=True)
    check: Step | None = Field(
        None, description="a read (http.check, prometheus.query) whose passing verifies the fix"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand_is_a_check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        written = [name for name in ("check", *VERIFY_SHORTHANDS) if data.get(name) is not None]
        if len(written) > 1:
            raise ValueError(f"verify takes one of check, http and promql; got {written}")
        for name, action in VERIFY_SHORTHANDS.items():
            if name in data:
                rest = {key: value for key, value in data.items() if key != name}
                return {
                    **rest,
                    "check": {"action": action, "params": shorthand_params(name, data[name])},
                }
        return data

    @field_validator("check")
    @classmethod
    def _check_only_reads(cls, check: Step | None) -> Step | None:
        if check is not None and CATALOGUE[check.action].mutating:
            raise ValueError(f"a check must only read; {check.action} changes things")
        return check


def shorthand_params(name: str, value: Any) -> Any:
    """The check's parameters: `http` is the URL alone, `promql` the query's parameters."""
    return {"url": value} if name == "http" else value


class EscalateWhen(StrEnum):
    ON_FAILURE = "on_failure"
    WHEN_BLOCKED = "when_blocked"
    ALWAYS = "always"


class Policy(_Model):
    name: Slug
    description: str = ""
    enabled: bool = True
    priority: int = 0
    match: list[MatcherField] = Field(min_length=1)
    severity: Level | Literal["from_label"] = "from_label"
    target: Target
    namespaces: NamespacePatterns = Field(
        default_factory=list,
        description=(
            "namespaces this policy may act in, beyond the global list: anchored regular"
            " expressions, RE2 syntax as matchers"
        ),
    )
    steps: list[Step] = Field(default_factory=list)
    step_timeout: Duration = Field(
        default="2m", validate_default=True, description="each step's timeout, unless it sets one"
    )
    verify: Verify = Field(default_factory=Verify)
    rate_limit: RateLimit
    max_targets: MaxTargets | None = Field(
        None, description="distinct targets this policy may change in a window (blast radius)"
    )
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    recurs_within: Duration | None = Field(
        None,
        description=(
            "the policy's alert firing again on the target this soon after a verified fix: the"
            " fix did not last, so it is counted a failure, not run again, and escalated"
        ),
    )
    escalate: list[EscalateWhen] = Field(
        default_factory=lambda: [EscalateWhen.ON_FAILURE, EscalateWhen.WHEN_BLOCKED]
    )
    on_resolved: list[Step] = Field(default_factory=list)
    dry_run: bool | None = None
    approval: Approval | None = Field(
        None, description="every change of `steps` is approved by a person before it is made"
    )

    @field_validator("steps", "on_resolved")
    @classmethod
    def _approval_is_for_changes(cls, steps: list[Step], info: ValidationInfo) -> list[Step]:
        """A read changes nothing to approve; an undo runs after the alert resolved, when no
        one waits on it (and a person already approved the change it undoes)."""
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "approval_for_changes",
                    "{why}: approval is for the changes of `steps`",
                    {
                        "why": f"{step.action} only reads"
                        if info.field_name == "steps"
                        else "an on_resolved step runs after the alert resolved"
                    },
                ),
                loc=(index, "approval"),
                input=step.approval,
            )
            for index, step in enumerate(steps)
            if step.approval is not None
            and (info.field_name == "on_resolved" or not CATALOGUE[step.action].mutating)
        ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return steps

    @field_validator("steps")
    @classmethod
    def _step_ids_are_unique(cls, steps: list[Step]) -> list[Step]:
        ids = [step.id for step in steps if step.id is not None]
        duplicated = sorted({step_id for step_id in ids if ids.count(step_id) > 1})
        if duplicated:
            raise ValueError(f"step ids must be unique; repeated: {', '.join(duplicated)}")
        return steps

    @field_validator("steps", "on_resolved")
    @classmethod
    def _a_node_is_only_read(cls, steps: list[Step], info: ValidationInfo) -> list[Step]:
        """A Node target allows reads only: cordoning, draining or replacing a node moves every
        pod on it, in every namespace, past the namespace allow-list; a person decides that."""
        target = info.data.get("target")
        if target is None or target.kind != "Node":
            return steps
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "node_reads_only",
                    "a Node target allows reads only; {action} changes things",
                    {"action": step.action},
                ),
                loc=(index, "action"),
                input=step.action,
            )
            for index, step in enumerate(steps)
            if CATALOGUE[step.action].mutating
        ]
        if errors:
            # A ValidationError (not a ValueError) so that each error sits at its step's
            # `action`: `policies check` then names the very line.
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return steps


def _clock_time(value: object) -> time:
    # YAML reads an unquoted 09:00 as the number 540 (base 60): refuse it rather than guess.
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"expected a time of day in quotes, such as '09:00'; got {value!r}")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Berlin)") from exc
    return value


class Digest(_Model):
    """Email for the level is collected and sent once a day, at `at` in `timezone`."""

    at: Annotated[time, PlainValidator(_clock_time)]
    timezone: Annotated[str, AfterValidator(_time_zone)] = "UTC"

    def next_after(self, moment: datetime) -> datetime:
        """The first digest time at or after `moment`."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        due = datetime.combine(local.date(), self.at, local.tzinfo)
        if due < local:
            due = datetime.combine(local.date() + timedelta(days=1), self.at, local.tzinfo)
        return due


class NextRung(_Model):
    """The ladder: an incident of this level still open `after` this long climbs to `level`."""

    after: Duration
    level: Level


class LevelRoute(_Model):
    channels: list[Channel] = Field(min_length=1)
    respond_within: Duration
    page_while_remediating: bool = False
    digest: Digest | None = None
    next: NextRung | None = None
    resolved_email: bool = Field(
        True, description="email when the incident is over (PagerDuty and Slack always hear it)"
    )


SEND_TIMEOUT_LIMIT = timedelta(seconds=15)  # the outbox's own bound on one attempt


def _send_timeout(value: timedelta) -> timedelta:
    if not timedelta(seconds=1) <= value <= SEND_TIMEOUT_LIMIT:
        raise ValueError("a channel's timeout lasts from 1s to 15s (the outbox's bound)")
    return value


class Budget(_Model):
    """At most `count` messages a channel sends in any `per` (`30/1m`): past it, its messages
    are folded into one summary (notify/budget.py)."""

    count: int = Field(ge=1, le=10_000)
    per: Duration

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        count, slash, per = value.partition("/")
        if not slash or not count.strip().isdigit():
            raise ValueError(f"expected a budget such as 30/1m (messages per time), got {value!r}")
        return {"count": int(count), "per": per.strip()}

    @field_validator("per")
    @classmethod
    def _a_short_window(cls, per: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= per <= timedelta(hours=1):
            raise ValueError("a budget's window lasts from 1s to 1h")
        return per

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.per)}"


class _ChannelConfig(_Model):
    timeout: Annotated[Duration, AfterValidator(_send_timeout)] = Field(
        default="10s", validate_default=True, description="each attempt to send one message"
    )
    budget: Budget | None = Field(
        None,
        description=(
            "at most this many messages in any window (30/1m); past it, the channel's messages "
            "are folded into one summary, listed in full by the API"
        ),
    )


class PagerDutyChannel(_ChannelConfig):
    routing_key_env: EnvName
    events_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue",
        pattern=r"^https?://\S+$",
        description="Events API v2 endpoint (https://events.eu.pagerduty.com/v2/enqueue in the EU)",
    )


class SlackChannel(_ChannelConfig):
    webhook_url_env: EnvName


class EmailChannel(_ChannelConfig):
    smtp_host: str
    smtp_port: int = 587
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username_env: EnvName | None = None
    password_env: EnvName | None = None


class Channels(_Model):
    pagerduty: PagerDutyChannel | None = None
    slack: SlackChannel | None = None
    email: EmailChannel | None = None


class EscalationMatrix(_Model):
    severity_labels: dict[str, Level]
    default_level: Level
    channels: Channels  # before levels, so that levels can be checked against it
    levels: dict[Level, LevelRoute]
    fallback: dict[Channel, list[Channel]] = Field(
        default_factory=dict,
        description=(
            "per channel, the channels a page goes to as well, saying so, when that channel "
            "has not taken it: its send failed after the quick retries, it was refused, or "
            "its breaker is open"
        ),
    )
    resolve_after: Duration = Field(
        timedelta(0),
        description=(
            "an incident's resolve is held this long after its alert resolves; an episode "
            "firing within it resumes the same incident (a flapping alert is one incident). "
            "0s: resolved at once"
        ),
    )

    @field_validator("levels")
    @classmethod
    def _every_level_routes_to_defined_channels(
        cls, levels: dict[Level, LevelRoute], info: ValidationInfo
    ) -> dict[Level, LevelRoute]:
        missing = [level for level in LEVELS if level not in levels]
        if missing:
            raise ValueError(f"levels must define {', '.join(missing)}")
        channels = info.data.get("channels")
        for level, route in levels.items():
            undefined = [name for name in route.channels if getattr(channels, name, None) is None]
            if channels is not None and undefined:
                raise ValueError(
                    f"level {level} uses channels not defined under channels: {undefined}"
                )
        for level in levels:
            climbed = [level]
            while (rung := levels[climbed[-1]].next) is not None:
                if rung.level in climbed:
                    ladder = " -> ".join([*climbed, rung.level])
                    raise ValueError(f"the ladder from {level} goes round in a circle: {ladder}")
                climbed.append(rung.level)
        return levels

    @field_validator("fallback")
    @classmethod
    def _fallbacks_are_other_defined_channels(
        cls, fallback: dict[Channel, list[Channel]], info: ValidationInfo
    ) -> dict[Channel, list[Channel]]:
        channels = info.data.get("channels")
        for name, others in fallback.items():
            # (A fallback of a channel not defined never applies; the levels name that one.)
            for channel in others:
                if channels is not None and getattr(channels, channel) is None:
                    raise ValueError(f"fallback names {channel}, not defined under channels")
            if name in others:
                raise ValueError(f"the fallback of {name} names {name} itself")
        return fallback

    def fallback_of(self, channel: str) -> list[Channel]:
        """Where a page this channel has not taken goes as well."""
        return next((list(others) for name, others in self.fallback.items() if name == channel), [])

    def budget_of(self, channel: str) -> Budget | None:
        """The channel's budget, if it has one (an own channel, the ladder's, never does)."""
        config = getattr(self.channels, channel, None) if channel in CHANNELS else None
        return config.budget if isinstance(config, _ChannelConfig) else None

    def level_for(self, severity_label: str | None) -> Level:
        if severity_label is None:
            return self.default_level
        return self.severity_labels.get(severity_label, self.default_level)


def _host_pattern(value: object) -> HostPattern:
    if isinstance(value, HostPattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected HOST[:PORT] such as '*.svc.cluster.local:8080', got {value!r}")
    return parse_host_pattern(value)


HostPatternField = Annotated[
    HostPattern,
    PlainValidator(_host_pattern),
    PlainSerializer(lambda pattern: pattern.text, return_type=str),
]


class Demotion(_Model):
    """A policy is demoted to approval-required when, over at least `min_runs` runs whose
    outcome is known within `window`, the Wilson lower bound (95%) of its effective share is
    below `below`. A run is effective when it fixed the alert and the fix lasted."""

    min_runs: int = Field(3, ge=1)
    below: float = Field(0.2, gt=0, le=1)
    window: Duration = Field(default="7d", validate_default=True)
    ttl: Duration = Field(default="15m", validate_default=True, description="its requests' ttl")


# Never acted in, whatever a policy or the allow-list says.
PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


class Guardrails(_Model):
    allowed_namespaces: NamespacePatterns = Field(
        default_factory=list,
        description="anchored regular expressions (RE2) where every policy may act",
    )
    allowed_hosts: list[HostPatternField] = Field(
        default_factory=lambda: [parse_host_pattern(text) for text in DEFAULT_ALLOWED_HOSTS],
        description=(
            "HOST[:PORT] patterns the actions may send requests to (policy.egress); loopback,"
            " link-local and metadata addresses only when an entry names them"
        ),
    )
    max_concurrent_runs: int = Field(3, ge=1, description="runs in flight across all replicas")
    global_rate_limit: list[Window] = Field(
        default_factory=list, description="runs of all policies together"
    )
    max_targets: MaxTargets | None = Field(
        None, description="distinct targets all policies together may change in a window"
    )
    run_timeout: Duration = Field(
        default="15m",
        validate_default=True,
        description="a run's steps are stopped after this (its verification wait aside)",
    )
    wait_for_slot: Duration = Field(
        default="10m",
        validate_default=True,
        description=(
            "a run held only by the concurrency cap or by another run on its target waits this"
            " long for its turn, then escalates as blocked"
        ),
    )
    approvers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        description=(
            "who approves where a policy's `approval` names no one, and a demoted policy's"
            " changes: Slack user ids, email addresses, API identities"
        ),
    )
    demotion: Demotion | None = Field(
        None,
        description=(
            "a policy whose runs keep failing to fix its alert asks first (unset or null: never;"
            " the shipped guardrails.yaml sets it)"
        ),
    )

    @property
    def egress(self) -> Egress:
        return Egress(tuple(self.allowed_hosts))
