"""The action catalogue: every step's action name and the model of its parameters.

The policy loader checks names and parameters against this catalogue before anything runs;
the implementations (Kubernetes, HTTP, ...) register against these same names. String
parameters may be templates, rendered from the alert when a plan is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str, info: ValidationInfo) -> str:
    """The scheme is written in the policy, so no label can turn a probe into file:// or gopher://.

    Before rendering (no validation context) template expressions may hold spaces; after
    rendering, the URL as a whole may not.
    """
    checked = value if info.context == RENDERED else _TEMPLATE_EXPRESSION.sub("", value)
    if not value.startswith(("http://", "https://")) or any(ch.isspace() for ch in checked):
        raise ValueError(f"expected an http:// or https:// URL without spaces, got {value!r}")
    return value


RENDERED = {"rendered": True}
"""Validation context for parameters whose templates have been rendered."""
_TEMPLATE_EXPRESSION = re.compile(r"{{.*?}}", re.DOTALL)


HttpUrl = Annotated[str, AfterValidator(_http_url)]


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
    grace_period_seconds: int = Field(30, ge=0)
    min_available: MinAvailable = Field(
        1, description="refuse if fewer ready replicas than this would remain"
    )


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
    token_env: str = "GITHUB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    api_url: HttpUrl = "https://api.github.com"
    min_remaining: int = Field(0, ge=0, description="the step fails when fewer remain")


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


# Reads whose data rides along with every escalation of the run, not just their message.
DIAGNOSTIC = frozenset({"kubernetes.diagnose"})

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
        ActionSpec("github.rate_limit", GitHubRateLimit, False, "read GitHub's rate limit"),
        ActionSpec(
            "prometheus.query",
            PrometheusQuery,
            False,
            "an instant PromQL query: ok when it returns samples, all within the bounds",
        ),
    ]
}
