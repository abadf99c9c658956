"""The live policy set: replaced on file change or SIGHUP, and only by a set that validates whole.

A bad edit never replaces a good set: the old one stays live, the errors are logged with file
and line, /health says degraded, and a metric counts the failed reload.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import structlog
import watchfiles

from remediator.metrics import PolicyMetrics
from remediator.policy.loader import PolicyErrors, load_policies
from remediator.policy.policyset import PolicySet

log = structlog.get_logger("remediator.policies")


class LivePolicies:
    def __init__(self, directory: Path, initial: PolicySet, metrics: PolicyMetrics) -> None:
        self.directory = directory
        self.current = initial
        self.last_error: str | None = None
        self._metrics = metrics
        self.revision = git_revision(directory)
        metrics.policies_loaded.set(len(initial.policies))

    @classmethod
    def load(cls, directory: Path, metrics: PolicyMetrics) -> LivePolicies:
        """The directory's policies at start-up; raises PolicyErrors when they do not validate."""
        return cls(directory, load_policies(directory), metrics)

    async def reload(self) -> bool:
        try:
            candidate = await asyncio.to_thread(load_policies, self.directory)
            revision = await asyncio.to_thread(git_revision, self.directory)
        except PolicyErrors as exc:
            count = len(exc.errors)
            self.last_error = f"{count} error{'s' * (count > 1)}, first: {exc.errors[0]}"
            self._metrics.policy_reloads.labels("failed").inc()
            for error in exc.errors:
                log.error("policy reload refused; the previous set stays live", error=str(error))
            return False
        self.current = candidate
        self.revision = revision
        self.last_error = None
        self._metrics.policy_reloads.labels("ok").inc()
        self._metrics.policies_loaded.set(len(candidate.policies))
        log.info("policies reloaded", policies=len(candidate.policies))
        return True

    async def follow(self, stop: asyncio.Event) -> None:
        """Reload on SIGHUP and after file changes until stop is set."""
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[bool]] = set()

        def on_sighup() -> None:
            task = loop.create_task(self.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            await self.watch(stop)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload after every batch of file changes until stop is set."""
        async for _ in watchfiles.awatch(self.directory, stop_event=stop, debounce=500):
            await self.reload()

    def health(self) -> dict[str, str]:
        if self.last_error is None:
            return {"status": "ok", "policies": str(len(self.current.policies))}
        return {"status": "degraded", "detail": f"last reload refused ({self.last_error})"}


def git_revision(directory: Path) -> str | None:
    """The commit the policy directory is checked out at (with "+dirty" for local edits), or
    None outside a git checkout: recorded with every remediation."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run(  # noqa: S603 - git, fixed arguments, the configured directory
            [git, "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            [git, "-C", str(directory), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head
