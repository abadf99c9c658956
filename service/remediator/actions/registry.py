"""Every action by its catalogue name, bound to the clients this service was configured with.

Without a Kubernetes API (no kubeconfig, not in a cluster) Kubernetes is dry-run only: a
change says what it would do (live mode or not, and the run ends `dry_run`), a read fails and
says why. So is AWS without a region (REMEDIATOR_AWS_REGION).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from remediator.actions.alertmanager import AlertmanagerActions
from remediator.actions.base import Action, StepContext, StepResult, dry_run, failed
from remediator.actions.docker import DockerActions
from remediator.actions.egress import EgressRules, guarded_session
from remediator.actions.http import HttpActions
from remediator.actions.postgres import PostgresActions
from remediator.actions.prometheus import PrometheusActions
from remediator.policy.egress import DEFAULT_ALLOWED_HOSTS, Egress
from remediator.policy.parameters import CATALOGUE, Params


@asynccontextmanager
async def open_actions(
    kubeconfig: Path | None,
    *,
    aws_region: str | None = None,
    aws_role_arn: str | None = None,
    aws_endpoint_url: str | None = None,
    egress: EgressRules | None = None,
) -> AsyncIterator[dict[str, Action]]:
    """The actions; their HTTP requests go only where `egress` (the live guard rails'
    allowed_hosts; by default the in-cluster names) allows."""
    from remediator.actions.aws import open_aws_actions
    from remediator.actions.kubernetes import KubernetesActions, kubernetes_client

    async with (
        guarded_session(egress or _in_cluster) as session,
        open_aws_actions(aws_region, aws_role_arn, aws_endpoint_url) as aws,
    ):
        actions: dict[str, Action] = {
            name: _unconfigured(name)
            for name in CATALOGUE
            if name.startswith(("kubernetes.", "aws."))
        }
        actions |= aws
        actions |= HttpActions(session).actions() | PrometheusActions(session).actions()
        actions |= DockerActions().actions() | AlertmanagerActions(session).actions()
        actions |= PostgresActions().actions()
        client = await kubernetes_client(kubeconfig)
        if client is None:
            yield actions
            return
        try:
            yield actions | KubernetesActions(client).actions()
        finally:
            await client.close()


_DEFAULT_EGRESS = Egress.of(DEFAULT_ALLOWED_HOSTS)


def _in_cluster() -> Egress:
    return _DEFAULT_EGRESS


NO_KUBERNETES = "no Kubernetes API configured (run in a cluster, or set REMEDIATOR_KUBECONFIG)"
NO_AWS = "no AWS region configured (set REMEDIATOR_AWS_REGION)"


def _unconfigured(name: str) -> Action:
    mutating = CATALOGUE[name].mutating
    reason = NO_AWS if name.startswith("aws.") else NO_KUBERNETES

    async def unconfigured(params: Params, context: StepContext) -> StepResult:
        what = f"{name} on {context.target}"
        if mutating:
            asked = params.model_dump(mode="json", exclude_none=True)
            shown = ", ".join(f"{key}: {value}" for key, value in asked.items())
            return dry_run(f"would run {what} ({shown or 'no parameters'}): dry-run only, {reason}")
        return failed(f"cannot read {what}: {reason}")

    return unconfigured
