"""The parameter catalogue: every step's action name and the model of its parameters.

The policy loader checks names and parameters against this catalogue before anything runs;
the implementations (Kubernetes, HTTP, ...) register against these same names. String
parameters may be templates, rendered from the alert when a plan is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from remediator.policy.durations import Duration
from remediator.policy.envnames import EnvName
from remediator.policy.urls import template_problem


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str, info: ValidationInfo) -> str:
    """The scheme is written in the policy, so no label can turn a probe into file:// or gopher://.

    Before rendering (no validation context) template expressions may hold spaces, and the
    template's shape is checked (policy.urls); after rendering, the URL as a whole may not.
    Where a rendered URL may go is the decision core's check (policy.egress).
    """
    problem = None if info.context == RENDERED else template_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}, got {value!r}")
    checked = value if info.context == RENDERED else _TEMPLATE_EXPRESSION.sub("", value)
    if not value.startswith(("http://", "https://")) or any(ch.isspace() for ch in checked):
        raise ValueError(f"expected an http:// or https:// URL without spaces, got {value!r}")
    return value


RENDERED = {"rendered": True}
"""Validation context for parameters whose templates have been rendered."""
_TEMPLATE_EXPRESSION = re.compile(r"{{.*?}}", re.DOTALL)


_URL_CHECK = AfterValidator(_http_url)
HttpUrl = Annotated[str, _URL_CHECK]


@cache
def url_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The model's URL parameters, by the name a policy writes: each is checked for where it
    may send a request once rendered."""
    return tuple(
        field.alias or name
        for name, field in model.model_fields.items()
        if _URL_CHECK in field.metadata
    )


class NoParams(Params):
    pass


class RolloutStatus(Params):
    wait_up_to: Duration = Field(
        default="0s", validate_default=True, description="wait this long for a rollout to finish"
    )


class WaitRollout(Params):
    wait_up_to: Duration = Field(description="wait this long for the rollout to finish")


def _percentage(value: str) -> str:
    if not _PERCENT.fullmatch(value):
        raise ValueError(f"expected a count or a percentage such as 50%, got {value!r}")
    if int(value[:-1]) > 100:
        raise ValueError(f"a percentage is at most 100%, got {value!r}")
    return value


_PERCENT = re.compile(r"\d{1,3}%")
MinAvailable = Annotated[int, Field(ge=0)] | Annotated[str, AfterValidator(_percentage)]
"""Ready replicas that must remain: a count, or a percentage of the desired replicas."""


def _k8s_name(value: str, info: ValidationInfo) -> str:
    """An object name (RFC 1123 subdomain); before rendering, template expressions may stand in."""
    checked = value if info.context == RENDERED else _TEMPLATE_EXPRESSION.sub("x", value)
    if len(checked) > 253 or not _RFC1123_SUBDOMAIN.fullmatch(checked):
        raise ValueError(f"expected a Kubernetes object name (RFC 1123 subdomain), got {value!r}")
    return value


_RFC1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
KubernetesName = Annotated[str, AfterValidator(_k8s_name)]


class RolloutRestart(Params):
    wait: bool = Field(False, description="wait for the restarted rollout to finish")
    min_available: MinAvailable = Field(
        1, description="refuse unless at least this many replicas are ready"
    )


class HttpCheck(Params):
    url: HttpUrl
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    body_contains: str | None = None
    timeout: Duration = Field(default="5s", validate_default=True)


class HttpRequest(Params):
    url: HttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    json_body: dict[str, object] | None = Field(None, alias="json")
    headers_from_env: dict[str, str] = Field(
        default_factory=dict, description="header name -> environment variable holding its value"
    )
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    timeout: Duration = Field(default="10s", validate_default=True)


class RolloutUndo(Params):
    to_revision: int | None = Field(None, ge=1)
    only_if_changed_within: Duration | None = Field(
        None, description="skip unless the current revision is younger than this"
    )


class Scale(Params):
    """Scale to `replicas`, or by `by`, always clamped to [min_replicas, max_replicas]."""

    replicas: int | None = Field(None, ge=0)
    by: int | None = None
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1)

    @model_validator(mode="after")
    def _one_way_within_bounds(self) -> Scale:
        if (self.replicas is None) == (self.by is None):
            raise ValueError("set exactly one of replicas and by")
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        return self


class DeletePod(Params):
    pod: str  # checked as an RFC 1123 name after rendering, by engine.decide
    grace_period_seconds: int | None = Field(
        None, ge=0, description="the pod's own terminationGracePeriodSeconds when not set"
    )
    min_available: MinAvailable = Field(
        1, description="refuse if fewer ready replicas than this would remain"
    )


class NodeStatus(Params):
    """What `kubectl describe node` shows a person deciding about a NotReady node, as data."""

    limit: int = Field(50, ge=1, description="at most this many not-ready pods named")


class PatchConfigMap(Params):
    name: KubernetesName
    data: dict[str, str] = Field(min_length=1)


class PrometheusQuery(Params):
    url: HttpUrl = Field(description="the Prometheus server, e.g. http://prometheus:9090")
    query: str = Field(min_length=1)
    below: float | None = Field(None, description="every sample's value must be under this")
    above: float | None = Field(None, description="every sample's value must be over this")
    timeout: Duration = Field(default="10s", validate_default=True)


class GitHubRateLimit(Params):
    token_env: EnvName = "GITHUB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    api_url: HttpUrl = "https://api.github.com"
    min_remaining: int = Field(0, ge=0, description="the step fails when fewer remain")


class _Postgres(Params):
    dsn_env: EnvName = Field(
        "DATABASE_URL", description="the environment variable holding the database's DSN"
    )
    timeout: Duration = Field(
        default="10s", validate_default=True, description="to connect, and for each statement"
    )


class _PostgresBackends(_Postgres):
    """Which backends a step may signal; the remediator's own sessions are never among them."""

    database: str | None = Field(None, description="only backends connected to this database")
    user: str | None = Field(None, description="only backends of this role")
    application_name: str | None = Field(None, description="only backends of this application")


class TerminateIdleConnections(_PostgresBackends):
    idle_for: Duration = Field(description="terminate connections idle for longer than this")
    include_idle_in_transaction: bool = Field(
        False, description="also terminate sessions idle in an open transaction"
    )
    max_terminate: int = Field(20, ge=1, description="at most this many per run")


class CancelLongQueries(_PostgresBackends):
    running_for: Duration = Field(description="cancel queries active for longer than this")
    terminate: bool = Field(
        False, description="pg_terminate_backend (the whole session) instead of pg_cancel_backend"
    )
    max_cancel: int = Field(20, ge=1, description="at most this many per run")


class ConnectionReport(_Postgres):
    long_running: Duration = Field(
        default="1m", validate_default=True, description="list queries running longer than this"
    )
    limit: int = Field(50, ge=1, description="at most this many rows in each list")


def _aws_name(what: str, pattern: str, longest: int) -> AfterValidator:
    """An AWS resource name; before rendering, template expressions may stand in."""
    compiled = re.compile(pattern)

    def check(value: str, info: ValidationInfo) -> str:
        checked = value if info.context == RENDERED else _TEMPLATE_EXPRESSION.sub("x", value)
        if len(checked) > longest or not compiled.fullmatch(checked):
            raise ValueError(f"expected {what}, got {value!r}")
        return value

    return AfterValidator(check)


AutoScalingGroupName = Annotated[
    str, _aws_name("an Auto Scaling group name (1 to 255 characters)", r"[^\x00-\x1f\x7f]+", 255)
]
EksName = Annotated[
    str,
    _aws_name(
        "an EKS name (a letter or digit, then letters, digits, '-' and '_')",
        r"[A-Za-z0-9][A-Za-z0-9_-]*",
        100,
    ),
]
RdsIdentifier = Annotated[
    str,
    _aws_name(
        "an RDS identifier (a letter, then letters, digits and single hyphens, 1 to 63"
        " characters, not ending in '-')",
        r"[A-Za-z](-?[A-Za-z0-9])*",
        63,
    ),
]


class Capacity(Params):
    """Set the desired capacity to `desired`, or change it by `by`, always clamped to both the
    resource's own bounds and the policy's [min, max]."""

    desired: int | None = Field(None, ge=0)
    by: int | None = None
    min: int = Field(0, ge=0, description="never below this (nor below the group's own minimum)")
    max: int = Field(ge=0, description="never above this (nor above the group's own maximum)")

    @model_validator(mode="after")
    def _one_way_within_bounds(self) -> Capacity:
        if (self.desired is None) == (self.by is None):
            raise ValueError("set exactly one of desired and by")
        if self.min > self.max:
            raise ValueError("min is above max")
        return self


class AutoScalingSetCapacity(Capacity):
    group: AutoScalingGroupName


class EksNodegroupScale(Capacity):
    cluster: EksName
    nodegroup: EksName


class RdsCreateSnapshot(Params):
    instance: RdsIdentifier = Field(description="the DB instance identifier")
    prefix: RdsIdentifier = Field(
        "remediator", description="the snapshot is PREFIX-INSTANCE-YYYYMMDDHHMMSS (run start)"
    )
    wait_up_to: Duration = Field(
        default="0s",
        validate_default=True,
        description="wait this long for the snapshot to become available (0s: do not wait)",
    )


def _docker_name(value: str, info: ValidationInfo) -> str:
    """A container, Compose project or service name; before rendering, templates stand in."""
    checked = value if info.context == RENDERED else _TEMPLATE_EXPRESSION.sub("x", value)
    if len(checked) > 255 or not _DOCKER_NAME.fullmatch(checked):
        raise ValueError(
            f"expected a container, Compose project or service name (a letter or digit, then"
            f" letters, digits, '_', '.' and '-'), got {value!r}"
        )
    return value


_DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
DockerName = Annotated[str, AfterValidator(_docker_name)]


def _socket_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"expected the absolute path of the Docker socket, got {value!r}")
    return value


class DockerRestartContainer(Params):
    """The container by its name, or a Compose service's containers by their labels."""

    name: DockerName | None = Field(None, description="the container's name, exactly")
    project: DockerName | None = Field(
        None, description="with service: the Compose project (com.docker.compose.project)"
    )
    service: DockerName | None = Field(
        None, description="with project: the Compose service (com.docker.compose.service)"
    )
    socket: Annotated[str, AfterValidator(_socket_path)] = Field(
        "/var/run/docker.sock", description="the Docker Engine API's unix socket"
    )
    stop_timeout: Duration = Field(
        default="10s",
        validate_default=True,
        description="wait this long for the container to stop before it is killed",
    )
    max_containers: int = Field(1, ge=1, description="refuse when more containers than this match")

    @model_validator(mode="after")
    def _one_way_to_find(self) -> DockerRestartContainer:
        by_labels = (self.project, self.service)
        if self.name is not None and by_labels != (None, None):
            raise ValueError("set name, or project and service, not both")
        if self.name is None and None in by_labels:
            raise ValueError("set name, or both project and service")
        return self


def _label_name(value: str) -> str:
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value):
        raise ValueError(f"expected a label name such as alertname, got {value!r}")
    return value


LabelName = Annotated[str, AfterValidator(_label_name)]


class _Silences(Params):
    url: HttpUrl = Field(description="the Alertmanager, e.g. http://alertmanager:9093")
    matchers: dict[LabelName, str] = Field(
        min_length=1,
        description="label -> value (templates from the alert); a value rendering empty is left"
        " out, so `{{ labels.x | default('') }}` matches on x only when the alert has it",
    )
    created_by: str = Field("remediator", min_length=1, description="the silence's author")
    timeout: Duration = Field(default="10s", validate_default=True)


class AlertmanagerSilence(_Silences):
    duration: Duration = Field(default="1h", validate_default=True)
    comment: str | None = Field(
        None, description="default: the target and the run's start; name the policy here"
    )

    @model_validator(mode="after")
    def _lasts(self) -> AlertmanagerSilence:
        if self.duration.total_seconds() <= 0:
            raise ValueError("duration must be longer than 0s")
        return self


class AlertmanagerExpireSilence(_Silences):
    """The silence is found again by its matchers and author: on_resolved runs without the
    firing run's step data."""


@dataclass(frozen=True)
class ActionSpec:
    name: str
    params: type[Params]
    mutating: bool
    summary: str

    @property
    def parameters(self) -> list[str]:
        """The parameter names as a policy writes them (`json`, not `json_body`)."""
        return [field.alias or name for name, field in self.params.model_fields.items()]


# Changes that can be made again after a crash without acting twice: they read before they
# write (a restart stamped after the run began is not made again) or set a value. The others
# (a POST to an application's hook, a container restart, a new silence or snapshot) cannot
# tell whether a dead worker made them, so a take-over does not make them again.
REPEATABLE = frozenset(
    {
        "kubernetes.rollout_restart",
        "kubernetes.rollout_undo",
        "kubernetes.scale",
        "kubernetes.delete_pod",
        "kubernetes.patch_configmap",
        "postgres.terminate_idle_connections",
        "postgres.cancel_long_queries",
        "aws.autoscaling_set_capacity",
        "aws.eks_nodegroup_scale",
        "alertmanager.expire_silence",
    }
)
IDEMPOTENT_METHODS = frozenset({"PUT", "DELETE"})  # RFC 9110, 9.2.2


def repeatable(action: str, params: Params) -> bool:
    """Whether the change can be made again after a crash without acting twice: a hook only
    when its method is idempotent, the others as listed."""
    if isinstance(params, HttpRequest):
        return params.method in IDEMPOTENT_METHODS
    return action in REPEATABLE


# Reads whose data rides along with every escalation of the run, not just their message.
DIAGNOSTIC = frozenset(
    {"kubernetes.diagnose", "kubernetes.node_status", "postgres.connection_report"}
)

CATALOGUE: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in [
        ActionSpec("http.check", HttpCheck, False, "probe a URL and expect a status or body"),
        ActionSpec("http.request", HttpRequest, True, "call an application hook"),
        ActionSpec(
            "kubernetes.rollout_status",
            RolloutStatus,
            False,
            "read the workload's rollout: revision, age of the last change, ready replicas",
        ),
        ActionSpec(
            "kubernetes.wait_rollout", WaitRollout, False, "wait for the workload's rollout"
        ),
        ActionSpec(
            "kubernetes.rollout_restart", RolloutRestart, True, "what kubectl rollout restart does"
        ),
        ActionSpec("kubernetes.rollout_undo", RolloutUndo, True, "what kubectl rollout undo does"),
        ActionSpec("kubernetes.scale", Scale, True, "set the replica count within bounds"),
        ActionSpec("kubernetes.delete_pod", DeletePod, True, "delete one pod so it is replaced"),
        ActionSpec("kubernetes.patch_configmap", PatchConfigMap, True, "set keys of a ConfigMap"),
        ActionSpec(
            "kubernetes.diagnose",
            NoParams,
            False,
            "pods, recent events and rollout history, for the escalation",
        ),
        ActionSpec(
            "kubernetes.node_status",
            NodeStatus,
            False,
            "a node's conditions, taints, capacity and the pods on it, for the escalation",
        ),
        ActionSpec("github.rate_limit", GitHubRateLimit, False, "read GitHub's rate limit"),
        ActionSpec(
            "postgres.terminate_idle_connections",
            TerminateIdleConnections,
            True,
            "terminate connections idle longer than a threshold, never the remediator's own",
        ),
        ActionSpec(
            "postgres.cancel_long_queries",
            CancelLongQueries,
            True,
            "cancel (or terminate) queries running longer than a threshold",
        ),
        ActionSpec(
            "postgres.connection_report",
            ConnectionReport,
            False,
            "connections by state and client, long-running queries, ungranted locks",
        ),
        ActionSpec(
            "prometheus.query",
            PrometheusQuery,
            False,
            "an instant PromQL query: ok when it returns samples, all within the bounds",
        ),
        ActionSpec(
            "aws.autoscaling_set_capacity",
            AutoScalingSetCapacity,
            True,
            "set an Auto Scaling group's desired capacity within bounds",
        ),
        ActionSpec(
            "aws.eks_nodegroup_scale",
            EksNodegroupScale,
            True,
            "set an EKS managed node group's desired size within bounds",
        ),
        ActionSpec(
            "aws.rds_create_snapshot",
            RdsCreateSnapshot,
            True,
            "take a manual snapshot of an RDS DB instance, e.g. before a risky step",
        ),
        ActionSpec(
            "docker.restart_container",
            DockerRestartContainer,
            True,
            "restart a container, or a Compose service's, through the Docker Engine API",
        ),
        ActionSpec(
            "alertmanager.silence",
            AlertmanagerSilence,
            True,
            "silence the alert in Alertmanager (reused while one of ours is active)",
        ),
        ActionSpec(
            "alertmanager.expire_silence",
            AlertmanagerExpireSilence,
            True,
            "expire the silences alertmanager.silence made with these matchers and author",
        ),
    ]
}
