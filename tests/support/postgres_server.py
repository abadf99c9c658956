"""A PostgreSQL cluster of the test's own, to kill: the machine's shared server must live on.

initdb into a directory of the test's, `pg_ctl start` on a free loopback port (TCP only, trust
authentication), `stop(mode="immediate")` as a crash does it (no checkpoint, crash recovery at
the next start) and `start()` again on the same port and data. As root (initdb refuses root)
the cluster is owned and run by the `postgres` user, in a directory of its own under /tmp,
as pytest's tmp_path is closed to other users.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import free_port, missing_service

_SERVER_USER = "postgres"  # who runs the cluster when the tests run as root


def postgres_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, from pg_config, or the newest
    /usr/lib/postgresql/N/bin (Debian keeps them off PATH)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    if pg_config := shutil.which("pg_config"):
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0 and (Path(found.stdout.strip()) / "initdb").exists():
            return Path(found.stdout.strip())
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_major_version)
    return versions[-1].parent if versions else None


def _major_version(initdb: Path) -> int:
    version = initdb.parent.parent.name  # /usr/lib/postgresql/15/bin/initdb
    return int(version) if version.isdigit() else 0


@dataclass
class PostgresServer:
    binaries: Path
    directory: Path  # holds data/ and server.log
    port: int
    user: str | None  # run as this user (the tests run as root), else as ourselves

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls, tmp_path: Path) -> PostgresServer:
        binaries = postgres_binaries()
        if binaries is None:
            missing_service(
                "the PostgreSQL server binaries (initdb, pg_ctl)",
                "install them with `apt-get install postgresql`",
            )
        assert binaries is not None
        user = _SERVER_USER if os.geteuid() == 0 else None
        if user is None:
            directory = tmp_path / "postgres"
            directory.mkdir()
        else:
            directory = Path(tempfile.mkdtemp(prefix="remediator-postgres-"))
            owner = pwd.getpwnam(user)
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        server = cls(binaries, directory, free_port(), user)
        server._run(
            "initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {server.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"  # TCP only: no socket path to share or clean
            )
        return server

    def start(self) -> None:
        """Start (after a crash: recover) and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: backends die at once, nothing is checkpointed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [str(self.binaries / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            user=self.user,
        )
        return status.returncode == 0

    def remove(self) -> None:
        if self.running():
            self.stop("immediate")
        if self.user is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *arguments: str) -> None:
        done = subprocess.run(
            [str(self.binaries / program), *arguments],
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.directory,
            timeout=90,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(
                f"{program} {' '.join(arguments)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}{log[-4000:]}"
            )
