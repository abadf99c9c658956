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
    pod: str
    grace_period_seconds: int = Field(30, ge=0)


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
            "kubernetes.rollout_restart", NoParams, True, "what kubectl rollout restart does"
        ),
        ActionSpec("kubernetes.rollout_undo", RolloutUndo, True, "what kubectl rollout undo does"),
        ActionSpec("kubernetes.scale", Scale, True, "set the replica count within bounds"),
        ActionSpec("kubernetes.delete_pod", DeletePod, True, "delete one pod so it is replaced"),
        ActionSpec("github.rate_limit", GitHubRateLimit, False, "read GitHub's rate limit"),
    ]
}
