"""The policy directory's git revision, as loaded and reloaded, in every remediation's row."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from remediator.metrics import Metrics
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Store
from tests.support.services import missing_service
from tests.support.world import POLICY, open_world, write_policies


def git(directory: Path, *args: str) -> str:
    binary = shutil.which("git")
    if binary is None:
        missing_service("git", "install it with `apt-get install git`")
    assert binary is not None
    # No user or system configuration (signing, hooks, templates) gets into the test's repo.
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    answer = subprocess.run(
        [binary, "-C", str(directory), *args], capture_output=True, text=True, check=True, env=env
    )
    return answer.stdout.strip()


def commit(directory: Path, message: str) -> str:
    """Commit everything in the directory; the new HEAD."""
    git(directory, "add", "--all")
    git(directory, "commit", "--quiet", "--message", message)
    return git(directory, "rev-parse", "HEAD")


def policy_repository(tmp_path: Path) -> Path:
    policies = write_policies(tmp_path / "policies", POLICY)
    git(policies, "init", "--quiet")
    git(policies, "config", "user.email", "author@example.com")
    git(policies, "config", "user.name", "Policy Author")
    return policies


def edit(policies: Path) -> None:
    """A change that still validates, so a reload takes it."""
    path = policies / "probe-and-fix.yaml"
    path.write_text(path.read_text().replace("severity: P2", "severity: P3"))


async def test_the_revision_is_the_commit_and_dirty_after_an_uncommitted_edit(
    tmp_path: Path,
) -> None:
    policies = policy_repository(tmp_path)
    head = commit(policies, "policies")
    live = LivePolicies.load(policies, Metrics().policies)
    assert live.revision == head

    edit(policies)
    assert live.revision == head  # what was loaded, until a reload
    assert await live.reload()
    [edited] = [policy for policy in live.current.policies if policy.name == "probe-and-fix"]
    assert edited.severity == "P3"  # the edit is live
    assert live.revision == f"{head}+dirty"

    committed = commit(policies, "P3")
    assert await live.reload()
    assert live.revision == committed != head


async def test_each_remediation_carries_the_revision_it_was_decided_under(
    store: Store, tmp_path: Path
) -> None:
    policies = policy_repository(tmp_path)
    head = commit(policies, "policies")
    async with open_world(store, policies) as world:
        await world.post("firing", starts_at="2027-01-15T08:00:00Z")
        assert await world.dispatcher.run_once() == 1
        [first] = await world.runs()
        assert (first.outcome, first.policy_revision) == ("verifying", head)

        edit(policies)
        assert await world.live.reload()
        world.clock.advance(601)  # the first run's window ends: it fails, keeping its revision
        await world.post("firing", starts_at="2027-01-15T09:00:00Z")
        assert await world.dispatcher.run_once() == 1
        before, after = await world.runs()
        assert (before.id, before.outcome, before.policy_revision) == (first.id, "failed", head)
        assert (after.outcome, after.policy_revision) == ("verifying", f"{head}+dirty")
