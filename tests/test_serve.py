"""`remediator serve` and `remediator alerts` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from remediator.alerts import Notification
from remediator.cli import main
from remediator.store import open_store
from tests.support.builders import recorded_run
from tests.support.policies import SHIPPED_POLICIES, SHIPPED_POLICY_COUNT
from tests.support.samples import sample
from tests.support.service_process import ServiceProcess, eventually


async def test_sigterm_finishes_the_request_in_flight(tmp_path: Path, postgres_dsn: str) -> None:
    service = await ServiceProcess.start(
        tmp_path, database_url=postgres_dsn, webhook_token="s3cret"
    )
    locker = await asyncpg.connect(postgres_dsn)
    try:
        response_status, answer = await post_while_table_locked_and_terminate(service, locker)
    finally:
        await locker.close()
    assert (response_status, answer) == (200, {"accepted": 1, "duplicates": 0})
    assert service.process.wait(timeout=30) == 0
    store = await open_store(postgres_dsn)
    assert [record.alertname for record in await store.recent_alerts(10)] == ["ApplicationDown"]
    await store.close()


async def post_while_table_locked_and_terminate(
    service: ServiceProcess, locker: asyncpg.Connection
) -> tuple[int, object]:
    """Send SIGTERM while an intake request waits on a table lock, then release the lock."""
    lock = locker.transaction()
    await lock.start()
    await locker.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(
            session.post(
                f"{service.url}/api/v1/alerts",
                json=sample("application-down.firing.json"),
                headers={"Authorization": "Bearer s3cret"},
            )
        )

        async def intake_waits_on_the_lock() -> bool:
            # Inside a transaction pg_stat_activity is a snapshot: take a new one each time.
            await locker.execute("SELECT pg_stat_clear_snapshot()")
            waiting = await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO notifications%'"
            )
            return bool(waiting)

        try:
            await eventually(intake_waits_on_the_lock, what="the intake to wait on the table lock")
            service.process.terminate()
            await eventually(
                lambda: refuses_connections(service.url), what="the listener to close after SIGTERM"
            )
        finally:
            await lock.commit()
        async with await in_flight as response:
            return response.status, await response.json()


async def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        _, probe = await asyncio.open_connection(host, int(port))
    except OSError:
        return True
    probe.close()
    await probe.wait_closed()
    return False


async def test_sigterm_closes_the_sqlite_store_cleanly(tmp_path: Path) -> None:
    database = tmp_path / "remediator.db"
    service = await ServiceProcess.start(tmp_path, database_url=f"sqlite:///{database}")
    async with aiohttp.ClientSession() as session:
        url = f"{service.url}/api/v1/alerts"
        async with session.post(url, json=sample("application-down.firing.json")) as response:
            assert response.status == 200
    assert Path(f"{database}-wal").exists()
    assert service.stop() == 0
    assert not Path(f"{database}-wal").exists(), "a clean close checkpoints and removes the WAL"


async def test_a_store_that_cannot_open_stops_start_up_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMEDIATOR_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/remediator.db")
    assert await asyncio.to_thread(main, ["migrate"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("remediator: store unavailable: cannot open SQLite database")


async def test_alerts_lists_what_the_store_holds(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    store = await open_store(database_url)
    notification = Notification.model_validate(sample("high-memory-usage.firing-two-pods.json"))
    await store.record_notification(notification, b"{}", datetime.now(UTC))
    await store.close()
    assert await asyncio.to_thread(main, ["alerts", "--json", "--database-url", database_url]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert await asyncio.to_thread(main, ["alerts", "--database-url", database_url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert sorted(line["fingerprint"] for line in lines) == ["1799bf3a65c094ce", "538acb84eff23449"]
    assert set(lines[0]) == {
        "fingerprint",
        "alertname",
        "status",
        "labels",
        "annotations",
        "target",
        "startsAt",
        "endsAt",
        "firstReceived",
        "lastReceived",
        "deliveries",
    }
    assert lines[0]["deliveries"] == 1
    assert lines[0]["startsAt"] == "2026-11-23T20:00:07.214279+00:00"
    assert re.split(r"\s{2,}", table[0]) == [
        "ALERTNAME",
        "STATUS",
        "LABELS",
        "TARGET",
        "STARTS AT",
        "ENDS AT",
        "SUMMARY",
        "FINGERPRINT",
    ]
    assert re.split(r"\s{2,}", table[1])[:2] == ["HighMemoryUsage", "firing"]
    assert len(table) == 3


async def test_the_service_reloads_policies_on_file_change_and_on_sighup(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, policies)
    service = await ServiceProcess.start(
        tmp_path, database_url=f"sqlite:///{tmp_path / 'r.db'}", policies=str(policies)
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def policies_check() -> dict[str, str]:
                async with session.get(f"{service.url}/health", headers=service.operator) as answer:
                    checks: dict[str, str] = (await answer.json())["checks"]["policies"]
                    return checks

            (policies / "high-error-rate.yaml").write_text("name: [unclosed\n")

            async def degraded() -> bool:
                return (await policies_check())["status"] == "degraded"

            await eventually(degraded, what="/health to report the refused reload")
            assert (
                f"1 error, first: {policies}/high-error-rate.yaml:2:1: YAML syntax error"
                in (await policies_check())["detail"]
            )

            (policies / "high-error-rate.yaml").unlink()
            os.kill(service.process.pid, signal.SIGHUP)

            left = str(SHIPPED_POLICY_COUNT - 1)

            async def one_policy_less() -> bool:
                return (await policies_check()) == {"status": "ok", "policies": left}

            await eventually(one_policy_less, what="the reload after the file was removed")
            async with session.get(f"{service.url}/metrics") as answer:
                metrics = await answer.text()
            assert 'remediator_policy_reloads_total{outcome="failed"}' in metrics
            assert f"remediator_policies_loaded {left}.0" in metrics
    finally:
        assert service.stop() == 0


def test_serve_refuses_to_start_on_invalid_policies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copy(SHIPPED_POLICIES / "escalation.yaml", tmp_path)
    (tmp_path / "bad.yaml").write_text("name: bad\n")
    code = main(
        ["serve", "--policies", str(tmp_path), "--database-url", f"sqlite:///{tmp_path}/r.db"]
    )
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"remediator: {tmp_path}/bad.yaml:1:1: match: Field required")
    assert lines[-1].endswith("policy errors; not starting")


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
        env |= {
            "REMEDIATOR_LISTEN": f"127.0.0.1:{port}",
            "REMEDIATOR_DATABASE_URL": f"sqlite:///{tmp_path}/remediator.db",
            "REMEDIATOR_POLICIES": str(SHIPPED_POLICIES),
        }
        done = subprocess.run(
            [sys.executable, "-m", "remediator", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"remediator: cannot listen on 127.0.0.1:{port} (REMEDIATOR_LISTEN): Address already in use"
    ]
    assert "listening" not in done.stdout


@pytest.mark.parametrize("command", [["alerts"], ["history"], ["history", "--run", "abc"]])
async def test_reading_commands_in_a_directory_without_a_store_say_so_and_create_none(
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REMEDIATOR_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert await asyncio.to_thread(main, command) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("remediator: no store at remediator.db")
    assert "--database-url or REMEDIATOR_DATABASE_URL" in line
    assert list(tmp_path.iterdir()) == []


async def test_alerts_shows_key_labels_summary_target_and_end_time(
    capsys: pytest.CaptureFixture[str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(database_url)
    body = sample("high-memory-usage.firing-two-pods.json")
    await store.record_notification(Notification.model_validate(body), b"{}", datetime.now(UTC))
    [first, *_] = await store.recent_alerts(10)
    await store.save_remediation(
        replace(
            await recorded_run(store),
            id="run-2",
            event_id=2,
            fingerprint=first.fingerprint,
            starts_at=first.starts_at,
            target="Deployment/prod/claude-manager",
        )
    )
    await store.close()
    monkeypatch.setenv("COLUMNS", "300")
    assert await asyncio.to_thread(main, ["alerts", "--database-url", database_url]) == 0
    rows = {
        row[-1]: row
        for row in map(re.compile(r"\s{2,}").split, capsys.readouterr().out.splitlines())
    }
    labels = first.labels
    assert rows[first.fingerprint] == [
        "HighMemoryUsage",
        "firing",
        ",".join(f"{name}={labels[name]}" for name in ("namespace", "deployment", "pod")),
        "Deployment/prod/claude-manager",
        first.starts_at.strftime("%Y-%m-%d %H:%M:%S"),
        first.ends_at.strftime("%Y-%m-%d %H:%M:%S") if first.ends_at else "-",
        first.annotations["summary"],
        first.fingerprint,
    ]
