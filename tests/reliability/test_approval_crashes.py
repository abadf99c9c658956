"""A run waiting for approval when its replica is killed -9 (issue 19): nothing waits in a
process, so the approval given meanwhile, through another replica's API, is honoured once, by
whichever replica is alive, and the change is made exactly once."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.fake_kubernetes import NAMESPACE
from tests.support.replicas import deployment_path, live_replicas, post_webhook
from tests.support.service_process import OPERATOR_TOKEN, eventually
from tests.support.webhooks import webhook, webhook_alert

POLICY = """\
name: restart-after-approval
match:
  - alertname="ApprovalCrash"
severity: P3
target:
  kind: Deployment
  namespace: "{{ labels.namespace }}"
  name: "{{ labels.deployment }}"
steps:
  - action: kubernetes.rollout_restart
    params: {min_available: 0}
    approval: {approvers: [operator]}
verify:
  resolved_within: 1h
rate_limit:
  windows:
    - {max: 1, per: 1h}
"""


async def test_a_replica_killed_while_its_run_waits_for_approval_loses_nothing(
    tmp_path: Path, postgres_dsn: str, own_redis: str
) -> None:
    async with (
        live_replicas(
            tmp_path,
            2,
            {"restart-after-approval.yaml": POLICY},
            "",
            database_url=postgres_dsn,
            redis_url=own_redis,
            lease_seconds="3",
        ) as deployment,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        kubernetes, replicas = deployment.kubernetes, deployment.replicas
        kubernetes.seed_deployment(NAMESPACE, "cart", replicas=2, ready=2)
        labels = {"alertname": "ApprovalCrash", "namespace": NAMESPACE, "deployment": "cart"}
        alert = webhook_alert(labels, fingerprint="fp-cart", starts_at="2027-01-15T08:00:00Z")
        first = await replicas.ready(0)
        assert await post_webhook(session, first.url, webhook(alert)) == 200

        async def asked() -> bool:
            worker = await deployment.db.fetchval(
                "SELECT e.claimed_by FROM alert_events e JOIN approvals a ON a.event_id = e.id"
                " JOIN remediations r ON r.id = a.remediation_id"
                " WHERE a.state = 'pending' AND r.outcome = 'awaiting_approval'"
            )
            asking.append(worker)
            return worker is not None

        asking: list[str | None] = []
        await eventually(asked, what="the run to ask for approval")
        pids = {s: service.process.pid for s, service in enumerate(replicas.services) if service}
        [slot] = [s for s, pid in pids.items() if str(asking[-1]).endswith(f":{pid}")]
        await replicas.kill(slot)  # kill -9 the replica whose run asked
        survivor = await replicas.ready(1 - slot)
        approval = await deployment.db.fetchval("SELECT id FROM approvals")

        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        url = f"{survivor.url}/api/v1/approvals/{approval}"
        async with session.post(url, json={"decision": "approve"}, headers=headers) as answer:
            assert answer.status == 200, await answer.text()

        path = deployment_path("cart")

        async def restarted() -> bool:
            return any(call.restarted for call in kubernetes.writes_to(path))

        await eventually(restarted, what="the approved restart")
        outcome = await deployment.db.fetchval(
            "SELECT outcome FROM remediations WHERE kind = 'firing' ORDER BY started_at DESC"
        )
        assert outcome == "verifying"
        patches = [call for call in kubernetes.writes_to(path) if call.restarted]
        assert len(patches) == 1
        assert {call.replica for call in patches} == {1 - slot}
