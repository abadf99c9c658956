"""Every action by its catalogue name, bound to the clients this service was configured with.

Without a Kubernetes API (no kubeconfig, not in a cluster) Kubernetes is dry-run only: a
change says what it would do (live mode or not, and the run ends `dry_run`), a read fails and
says why.
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


NO_KUBERNETES = "no Kubernetes API configured (run in a cluster, or set REMEDIATOR_KUBECONFIG)"


def _unconfigured(name: str) -> Action:
    mutating = CATALOGUE[name].mutating

    async def unconfigured(params: Params, context: StepContext) -> StepResult:
        what = f"{name} on {context.target}"
        if mutating:
            return dry_run(f"would run {what}: dry-run only, {NO_KUBERNETES}")
        return failed(f"cannot read {what}: {NO_KUBERNETES}")

    return unconfigured
