"""decide(): from an alert and a policy set to a plan. Purely computational: no I/O, no clock.

The time is an argument, every result is a new frozen value, and a template that renders to
something unsafe becomes a Refused decision carrying the reason, never a partial plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from remediator.alerts import Alert
from remediator.engine.approval import rule_of
from remediator.engine.plan import (
    Decision,
    Escalation,
    NoMatch,
    Plan,
    PlannedStep,
    Refused,
    RenderedTarget,
)
from remediator.policy.egress import Egress
from remediator.policy.matchers import matches_all
from remediator.policy.parameters import CATALOGUE, RENDERED, url_fields
from remediator.policy.policyset import PolicySet
from remediator.policy.regex import compile_anchored
from remediator.policy.schema import PROTECTED_NAMESPACES, Level, Policy, Step
from remediator.policy.templates import RenderError, check_dns_label, check_dns_subdomain, render
from remediator.policy.urls import label_problem


def decide(alert: Alert, policies: PolicySet, now: datetime) -> Decision:
    policy = winner(alert.labels, policies)
    if policy is None:
        return NoMatch(alert.fingerprint, escalation_for(None, alert, policies), now)
    escalation = escalation_for(policy, alert, policies)
    try:
        return _plan(policy, alert, policies, escalation, now)
    except RenderError as exc:
        return Refused(policy.name, alert.fingerprint, str(exc), escalation, now)


def winner(labels: Mapping[str, str], policies: PolicySet) -> Policy | None:
    for policy in policies.candidates(labels):
        if policy.enabled and matches_all(policy.match, labels):
            return policy
    return None


def escalation_for(policy: Policy | None, alert: Alert, policies: PolicySet) -> Escalation:
    if policy is None or policy.severity == "from_label":
        return escalation_by_severity(alert.labels, policies)
    return _escalation(policy.severity, policies)


def escalation_by_severity(labels: Mapping[str, str], policies: PolicySet) -> Escalation:
    """The matrix's level for the alert's `severity` label, and its route."""
    return _escalation(policies.matrix.level_for(labels.get("severity")), policies)


def _escalation(level: Level, policies: PolicySet) -> Escalation:
    route = policies.matrix.levels[level]
    return Escalation(level, tuple(route.channels), route.page_while_remediating)


def template_context(alert: Alert) -> dict[str, Any]:
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "alert": {
            "status": alert.status.value,
            "fingerprint": alert.fingerprint,
            "startsAt": alert.starts_at.isoformat(),
            "generatorURL": alert.generator_url,
        },
    }


def _plan(
    policy: Policy, alert: Alert, policies: PolicySet, escalation: Escalation, now: datetime
) -> Plan:
    context = template_context(alert)
    target = _target(policy, context, policies)
    default_key = f"{policy.name}/{target.namespace or '-'}/{target.name}"
    key = render(policy.rate_limit.key, context) if policy.rate_limit.key else default_key
    check = policy.verify.check
    egress = policies.guardrails.egress
    return Plan(
        policy=policy.name,
        fingerprint=alert.fingerprint,
        target=target,
        steps=_approved_by(
            policy, _steps(policy.steps, context, "steps", policy.step_timeout, egress), policies
        ),
        on_resolved=_steps(policy.on_resolved, context, "on_resolved", policy.step_timeout, egress),
        verify_within=policy.verify.resolved_within,
        verify_check=(
            _step(check, context, "verify.check", policy.step_timeout, egress) if check else None
        ),
        rate_limit_key=str(key),
        rate_limit=tuple(policy.rate_limit.windows),
        circuit_breaker=policy.circuit_breaker,
        escalation=escalation,
        escalate_when=tuple(policy.escalate),
        dry_run=policy.dry_run,
        decided_at=now,
        max_targets=policy.max_targets,
        recurs_within=policy.recurs_within,
    )


def _target(policy: Policy, context: Mapping[str, Any], policies: PolicySet) -> RenderedTarget:
    raw = policy.target
    rendered = {
        field: None if value is None else render(value, context)
        for field, value in raw.model_dump(exclude={"kind"}).items()
    }
    if raw.kind == "Application":
        name = str(rendered["name"])
        if not name.strip():
            raise RenderError("target name renders empty")
        namespace = rendered["namespace"]
        if namespace is not None:
            # An application in a namespace is one the cluster serves (NAME.NAMESPACE.svc): its
            # namespace is allowed like any other kind's, and its name is a name, so no label
            # can move a URL built from them to another host (`evil.example/x?`) or namespace.
            namespace = check_dns_label("target namespace", namespace)
            _check_namespace_allowed(namespace, policy, policies)
            name = check_dns_subdomain("target name", name)
        url = rendered["url"]
        if url is not None and not re.fullmatch(r"https?://[^\s]+", url):
            raise RenderError(f"target url {url!r} is not an http(s) URL")
        return RenderedTarget(raw.kind, name, namespace, None, url)
    if raw.kind == "Node":
        # Cluster-scoped, so no namespace to allow: a Node policy may only read (policy.schema
        # refuses its changes at check time), and its name is checked like any object's.
        name = check_dns_subdomain("target name", rendered["name"])
        return RenderedTarget(raw.kind, name, None, None, None)
    namespace = check_dns_label("target namespace", rendered["namespace"])
    _check_namespace_allowed(namespace, policy, policies)
    name = check_dns_subdomain("target name", rendered["name"])
    container = rendered["container"]
    if container is not None:
        container = check_dns_label("target container", container)
    return RenderedTarget(raw.kind, name, namespace, container, rendered["url"])


def _check_namespace_allowed(namespace: str, policy: Policy, policies: PolicySet) -> None:
    if namespace in PROTECTED_NAMESPACES:
        raise RenderError(f"namespace {namespace!r} is protected and never acted in")
    patterns = [*policy.namespaces, *policies.guardrails.allowed_namespaces]
    if not any(compile_anchored(pattern).matches(namespace) for pattern in patterns):
        raise RenderError(
            f"namespace {namespace!r} is not in the policy's namespaces nor in the global"
            " allowed_namespaces"
        )


def _approved_by(
    policy: Policy, steps: tuple[PlannedStep, ...], policies: PolicySet
) -> tuple[PlannedStep, ...]:
    """Each change with the approval it needs: its own, else the policy's."""
    planned = []
    for index, (step, planned_step) in enumerate(zip(policy.steps, steps, strict=True)):
        approval = step.approval or (policy.approval if planned_step.mutating else None)
        if approval is None:
            planned.append(planned_step)
            continue
        rule = rule_of(approval, policies.guardrails)
        if not rule.approvers:
            raise RenderError(
                f"steps[{index}] ({step.action}) needs approval but names no approvers, and"
                " guardrails.yaml lists none"
            )
        planned.append(replace(planned_step, approval=rule))
    return tuple(planned)


def _steps(
    steps: Sequence[Step],
    context: Mapping[str, Any],
    where: str,
    default_timeout: timedelta,
    egress: Egress,
) -> tuple[PlannedStep, ...]:
    return tuple(
        _step(step, context, f"{where}[{index}]", default_timeout, egress)
        for index, step in enumerate(steps)
    )


def _step(
    step: Step, context: Mapping[str, Any], where: str, default_timeout: timedelta, egress: Egress
) -> PlannedStep:
    spec = CATALOGUE[step.action]
    for name in url_fields(spec.params):
        template = step.params.get(name)
        problem = label_problem(template, context) if isinstance(template, str) else None
        if problem is not None:
            raise RenderError(f"{where} ({step.action}) {name}: refused: {problem}")
    try:
        params = spec.params.model_validate(render(step.params, context), context=RENDERED)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise RenderError(
            f"{where} ({step.action}) parameters after rendering: {problems}"
        ) from exc
    if step.action == "kubernetes.delete_pod":
        check_dns_subdomain(f"{where} pod", getattr(params, "pod", ""))
    for name in url_fields(spec.params):
        refusal = egress.url_refusal(getattr(params, name))
        if refusal is not None:
            raise RenderError(f"{where} ({step.action}) {name}: refused: {refusal}")
    timeout = step.timeout or default_timeout
    return PlannedStep(step.action, params, spec.mutating, step.id, step.when, timeout)
