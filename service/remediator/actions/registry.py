"""Every action by its catalogue name, bound to the clients this service was configured with.

Without a Kubernetes API (no kubeconfig, not in a cluster) the Kubernetes actions can only say
what they would do: in dry-run that is their result, in live mode the step fails and says why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from remediator.actions.base import Action, StepContext, StepResult, dry_run, failed
from remediator.actions.http import HttpActions
from remediator.actions.prometheus import PrometheusActions
from remediator.policy.actions import CATALOGUE, Params


@asynccontextmanager
async def open_actions(kubeconfig: Path | None) -> AsyncIterator[dict[str, Action]]:
    from remediator.actions.kubernetes import KubernetesActions, kubernetes_client

    async with aiohttp.ClientSession() as session:
        actions: dict[str, Action] = {
            name: _unconfigured(name) for name in CATALOGUE if name.startswith("kubernetes.")
        }
        actions |= HttpActions(session).actions() | PrometheusActions(session).actions()
        client = await kubernetes_client(kubeconfig)
        if client is None:
            yield actions
            return
        try:
            yield actions | KubernetesActions(client).actions()
        finally:
            await client.close()


def _unconfigured(name: str) -> Action:
    async def unconfigured(params: Params, context: StepContext) -> StepResult:
        what = f"{name} on {context.target}"
        if context.dry_run:
            return dry_run(f"would run {what} (no Kubernetes API configured to read it)")
        return failed(
            f"{what}: no Kubernetes API configured (run in a cluster, or set REMEDIATOR_KUBECONFIG)"
        )

    return unconfigured
