"""Benchmark of policy matching and decide(): the alertname index against a full scan.

Run from the repository root (`make bench` runs it after the intake benchmark):

    .venv/bin/python bench/decide.py                   # 1,000 policies
    .venv/bin/python bench/decide.py --policies 5000

It writes N policy files (95% with an `alertname="..."` matcher, 5% without one, so some
policies must be tried for every alert) beside the shipped severity matrix, times
`remediator policies check` on them (the pre-commit hook's cost), then times choosing the
winning policy for a stream of alerts two ways in the same run: through the PolicySet's
alertname index, and by scanning every policy in order (the baseline). Last, the whole
decide() (matching, rendering, plan) per alert.
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from remediator.alerts import Alert, AlertStatus
from remediator.cli.policies import check
from remediator.engine.decide import decide, winner
from remediator.policy.loader import load_policies
from remediator.policy.matchers import matches_all
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import Policy

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 1, 1, tzinfo=UTC)

POLICY = """\
name: policy-{index}
priority: {priority}
match:
{matchers}
target:
  kind: Deployment
  namespace: "{{{{ labels.namespace }}}}"
  name: "{{{{ labels.deployment }}}}"
steps:
  - action: kubernetes.rollout_status
  - action: kubernetes.rollout_restart
rate_limit:
  windows:
    - {{max: 1, per: 30m}}
"""


def write_policies(directory: Path, count: int, rng: random.Random) -> None:
    shutil.copy(ROOT / "policies" / "escalation.yaml", directory / "escalation.yaml")
    (directory / "guardrails.yaml").write_text("allowed_namespaces: ['prod-.*']\n")
    for index in range(count):
        if index % 20 == 19:  # no alertname matcher: tried for every alert
            matchers = [f'team="team-{index}"', 'namespace=~"prod-.*"']
        else:
            matchers = [f'alertname="Alert{index}"', 'namespace=~"prod-.*"', 'severity!="info"']
        text = POLICY.format(
            index=index,
            priority=rng.randrange(0, 100),
            matchers="\n".join(f"  - '{matcher}'" for matcher in matchers),
        )
        (directory / f"policy-{index:05d}.yaml").write_text(text)


def alerts(count: int, policies: int, rng: random.Random) -> list[Alert]:
    made = []
    for number in range(count):
        target = rng.randrange(int(policies * 1.1))  # one in eleven matches no policy
        made.append(
            Alert(
                status=AlertStatus.FIRING,
                labels={
                    "alertname": f"Alert{target}",
                    "namespace": "prod-api",
                    "deployment": f"api-{number % 50}",
                    "severity": "critical",
                },
                annotations={"summary": "bench"},
                starts_at=NOW,
                fingerprint=f"{number:016x}",
            )
        )
    return made


def scan(labels: Mapping[str, str], policies: PolicySet) -> Policy | None:
    """The baseline: every policy in winning order until one matches."""
    for policy in policies.policies:
        if policy.enabled and matches_all(policy.match, labels):
            return policy
    return None


def per_second(work: Callable[[], object], items: int, repeats: int) -> tuple[float, float]:
    """Median and worst items/s over repeats."""
    rates = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        work()
        rates.append(items / (time.perf_counter() - started))
    return statistics.median(rates), min(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)

    with tempfile.TemporaryDirectory(prefix="remediator-bench-") as temporary:
        directory = Path(temporary)
        write_policies(directory, args.policies, rng)
        started = time.perf_counter()
        assert check(directory, io.StringIO()) == 0
        check_seconds = time.perf_counter() - started
        tracemalloc.start()
        policies = load_policies(directory)
        loaded_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()

    stream = alerts(args.alerts, args.policies, rng)
    indexed = [winner(alert.labels, policies) for alert in stream]
    scanned = [scan(alert.labels, policies) for alert in stream]
    assert indexed == scanned, "the index and the scan disagree"
    matched = sum(policy is not None for policy in indexed)

    def by_index() -> None:
        for alert in stream:
            winner(alert.labels, policies)

    def by_scan() -> None:
        for alert in stream:
            scan(alert.labels, policies)

    def decisions() -> None:
        for alert in stream:
            decide(alert, policies, NOW)

    index_rate, index_worst = per_second(by_index, len(stream), args.repeats)
    scan_rate, scan_worst = per_second(by_scan, len(stream), args.repeats)
    decide_rate, decide_worst = per_second(decisions, len(stream), args.repeats)

    print(f"remediator decide benchmark: {args.policies} policies, {len(stream)} alerts")
    print(f"({matched} of them match a policy), median of {args.repeats} runs\n")
    print(f"policies check of {args.policies} files: {check_seconds:.2f} s")
    print(f"policy set in memory: {loaded_bytes / 2**20:.1f} MiB (tracemalloc, while loading)\n")
    print(f"{'matching':<28}{'alerts/s':>12}{'worst run':>12}{'us/alert':>10}")
    for name, rate, worst in (
        ("full scan (baseline)", scan_rate, scan_worst),
        ("alertname index", index_rate, index_worst),
        ("decide(), with rendering", decide_rate, decide_worst),
    ):
        print(f"{name:<28}{rate:>12,.0f}{worst:>12,.0f}{1e6 / rate:>10.1f}")
    print(f"\nindex / scan: {index_rate / scan_rate:.0f}x")


if __name__ == "__main__":
    main()
