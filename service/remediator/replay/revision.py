"""A policy directory as a git revision has it, read with git (no checkout): `git archive` of
the directory's tree at that revision, unpacked into a temporary directory and loaded there."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from remediator.policy.loader import PolicyErrors, load_policies
from remediator.policy.policyset import PolicySet

GIT = shutil.which("git") or "git"


class RevisionError(Exception):
    """The revision or the directory cannot be read with git: the message says why."""


def policies_at(directory: Path, revision: str) -> PolicySet:
    """The policy set in `directory` at `revision`; PolicyErrors naming REV:FILE, or
    RevisionError."""
    prefix = _git(directory, "rev-parse", "--show-prefix").decode().strip()
    top = Path(_git(directory, "rev-parse", "--show-toplevel").decode().strip())
    if revision.startswith("-"):
        raise RevisionError(f"{revision!r} is not a git revision")
    archive = _git(top, "archive", "--format=tar", f"{revision}:{prefix}")
    with tempfile.TemporaryDirectory(prefix="remediator-replay-") as scratch:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(scratch, filter="data")
        try:
            return load_policies(Path(scratch))
        except PolicyErrors as exc:
            raise PolicyErrors(
                [
                    type(error)(
                        Path(f"{revision}:{prefix}{error.file.relative_to(scratch)}"),
                        error.position,
                        error.path,
                        error.message,
                    )
                    for error in exc.errors
                ]
            ) from exc


def _git(directory: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(  # noqa: S603 - git, arguments as a list, never a shell
            [GIT, "-C", str(directory), *args], capture_output=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RevisionError(f"git {args[0]} in {directory}: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise RevisionError(f"git {args[0]} in {directory}: {said}")
    return done.stdout
