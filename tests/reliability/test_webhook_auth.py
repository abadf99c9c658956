"""Webhook authentication (issue 9): no, wrong and expired credentials; basic vs bearer; TLS.

Each case is sent to a `remediator serve` process, and the store is then read directly: a
refused webhook writes no row at all. Expired credentials are rotated-out ones: the service
reads its bearer tokens from REMEDIATOR_WEBHOOK_TOKEN_FILE (any line of it) and re-reads the
file when it changes, as a Kubernetes Secret volume changes in place; a real Alertmanager
reading its own `credentials_file` follows a rotation without a restart, over HTTPS with
`tls_config.ca_file`, while one still sending the old token, or plain HTTP, gets nothing in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from remediator.config import SettingsError, load_settings
from tests.support.alertmanager import post_to_alertmanager, running_alertmanager
from tests.support.figures import Figures
from tests.support.policies import SHIPPED_POLICIES
from tests.support.service_process import ServiceProcess, eventually
from tests.support.webhooks import webhook, webhook_alert

SCENARIO = "Webhook auth: no, wrong, expired credentials; basic vs bearer; TLS when configured"
EXPECTED = "401, nothing stored"
OLD_TOKEN = "t0ken-" + "a" * 26  # rotated out during the test
TOKEN = "t0ken-" + "b" * 26
NEXT_TOKEN = "t0ken-" + "c" * 26
USER, PASSWORD = "alertmanager", "pa55-w0rd"
_NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
ALERTMANAGER_CONFIG = """
route:
  receiver: remediator
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: remediator
    webhook_configs:
      - url: {url}/api/v1/alerts
        send_resolved: true
        max_alerts: 0
        http_config: {http_config}
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what Alertmanager's tls_config.ca_file names
    cert: Path  # the service's chain, for 127.0.0.1
    key: Path
    client: ssl.SSLContext  # trusts the CA, as Alertmanager does
    authority: trustme.CA  # for a renewed certificate


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    authority.cert_pem.write_to_path(str(ca))
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return Certificates(ca, cert, key, ssl.create_default_context(cafile=str(ca)), authority)


@pytest.fixture(autouse=True)
def _no_remediator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings refuses unknown REMEDIATOR_* variables, and the suite sets some of its own."""
    for name in [name for name in os.environ if name.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)


def replace_file(path: Path, text: str) -> None:
    """Write a whole new file and rename it over the old one, as the kubelet swaps a Secret."""
    fresh = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fresh.write_text(text)
    fresh.replace(path)


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def probe(alertname: str) -> bytes:
    """One firing alert no policy matches: stored and escalated, never acted on."""
    labels = {"alertname": alertname, "severity": "warning", "instance": "auth-probe"}
    alert = webhook_alert(labels, fingerprint=uuid.uuid4().hex[:16], starts_at=_NOW)
    return json.dumps(webhook(alert)).encode()


@dataclass(frozen=True)
class Stored:
    notifications: int
    alerts: int
    events: int
    alertnames: frozenset[str]


async def stored(database_url: str) -> Stored:
    """What the store holds, read straight from its tables."""
    queries = [
        "SELECT count(*) FROM notifications",
        "SELECT count(*) FROM alerts",
        "SELECT count(*) FROM alert_events",
    ]
    if database_url.startswith("sqlite:///"):
        uri = f"file:{database_url.removeprefix('sqlite:///')}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as sqlite:
            counts = [sqlite.execute(query).fetchone()[0] for query in queries]
            names = [row[0] for row in sqlite.execute("SELECT alertname FROM alerts")]
    else:
        postgres = await asyncpg.connect(database_url)
        try:
            counts = [await postgres.fetchval(query) for query in queries]
            names = [row[0] for row in await postgres.fetch("SELECT alertname FROM alerts")]
        finally:
            await postgres.close()
    return Stored(counts[0], counts[1], counts[2], frozenset(names))


NOTHING = Stored(0, 0, 0, frozenset())


async def post(
    session: aiohttp.ClientSession, url: str, authorization: str | None, body: bytes
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with session.post(f"{url}/api/v1/alerts", data=body, headers=headers) as answer:
        # RFC 7235: a 401 names the scheme it wants
        challenged = " challenged" if "WWW-Authenticate" in answer.headers else ""
        return answer.status, challenged


async def refused_401s(service: ServiceProcess) -> float:
    async with aiohttp.ClientSession() as session:
        metrics_url = f"{service.url}/metrics"
        async with session.get(metrics_url, ssl=service.client_ssl or True) as answer:
            text = await answer.text()
    line = 'remediator_intake_requests_total{code="401"} '
    return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


async def webhook_requests(alertmanager: str, *, failed: bool = False) -> float:
    """Webhook requests this Alertmanager made, or those of them that failed."""
    metric = f"alertmanager_notification_requests{'_failed' * failed}_total{{"
    async with aiohttp.ClientSession() as session, session.get(f"{alertmanager}/metrics") as page:
        text = await page.text()
    return sum(
        float(row.rsplit(" ", 1)[1])
        for row in text.splitlines()
        if row.startswith(metric) and 'integration="webhook"' in row
    )


@contextlib.contextmanager
def alertmanager_posting_to(
    binary: str, directory: Path, name: str, url: str, http_config: str
) -> Iterator[str]:
    config = directory / f"{name}.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(url=url, http_config=http_config))
    with running_alertmanager(binary, config, directory, name=name) as alertmanager:
        yield alertmanager


async def alertmanager_alert(alertmanager: str, alertname: str) -> None:
    labels = {"alertname": alertname, "severity": "warning", "instance": "auth-probe"}
    now = datetime.now(UTC)
    await post_to_alertmanager(
        alertmanager, now + timedelta(hours=1), [labels], starts_at=now - timedelta(minutes=1)
    )


@pytest.fixture
async def bearer_service(
    tmp_path: Path, certificates: Certificates
) -> AsyncIterator[tuple[ServiceProcess, Path, str]]:
    """Live mode over HTTPS, its bearer tokens in a file; the SQLite store, one process."""
    tokens = tmp_path / "webhook-tokens"
    tokens.write_text(f"{OLD_TOKEN}\n")
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    service = await ServiceProcess.start(
        tmp_path,
        client_ssl=certificates.client,
        database_url=database_url,
        mode="live",
        webhook_token_file=str(tokens),
        tls_cert_file=str(certificates.cert),
        tls_key_file=str(certificates.key),
    )
    yield service, tokens, database_url
    assert service.stop() == 0


async def test_bearer_over_tls_refuses_every_wrong_or_rotated_out_credential(
    bearer_service: tuple[ServiceProcess, Path, str],
    certificates: Certificates,
    alertmanager_binary: str,
    tmp_path: Path,
    figures: Figures,
) -> None:
    service, tokens, database_url = bearer_service
    body = probe("RefusedProbe")
    wrong = {
        "no credentials": None,
        "a wrong token": "Bearer not-the-token",
        "the token with a character more": f"Bearer {OLD_TOKEN}x",
        "the token with a character less": f"Bearer {OLD_TOKEN[:-1]}",
        "an empty bearer token": "Bearer ",
        "the token as a basic password (basic where bearer is configured)": basic(
            f"{USER}:{OLD_TOKEN}"
        ),
        "the token base64-encoded as basic": basic(OLD_TOKEN),
        "the token under another scheme": f"Token {OLD_TOKEN}",
        "the token without a scheme": OLD_TOKEN,
    }
    answers: dict[str, str] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=certificates.client)) as s:
        for case, authorization in wrong.items():
            status, challenge = await post(s, service.url, authorization, body)
            answers[case] = f"{status}{challenge}"
        # Rotation: the file now holds the current and the next token, and no longer the old.
        replace_file(tokens, f"{TOKEN}\n{NEXT_TOKEN}\n")
        status, challenge = await post(s, service.url, f"Bearer {OLD_TOKEN}", body)
        answers["the rotated-out (expired) token"] = f"{status}{challenge}"
    plain_url = service.url.replace("https://", "http://")
    async with aiohttp.ClientSession() as session:
        try:
            status, _ = await post(session, plain_url, f"Bearer {TOKEN}", body)
            answers["plain HTTP to the TLS port"] = f"{status}"
        except aiohttp.ClientError as exc:
            answers["plain HTTP to the TLS port"] = f"handshake failed ({type(exc).__name__})"
    after_refusals = await stored(database_url)
    refused_by_intake = await refused_401s(service)

    # Through real Alertmanagers: one still sending the rotated-out token, one over plain HTTP.
    trust = f'tls_config: {{ca_file: "{certificates.ca}"}}'
    stale = f"{{authorization: {{type: Bearer, credentials: {OLD_TOKEN}}}, {trust}}}"
    current = tmp_path / "alertmanager-token"
    current.write_text(TOKEN)
    bearer_file = f'authorization: {{type: Bearer, credentials_file: "{current}"}}'
    with contextlib.ExitStack() as stack:
        stale_am = stack.enter_context(
            alertmanager_posting_to(alertmanager_binary, tmp_path, "stale", service.url, stale)
        )
        plain_am = stack.enter_context(
            alertmanager_posting_to(
                alertmanager_binary, tmp_path, "plain", plain_url, f"{{{bearer_file}}}"
            )
        )
        good_am = stack.enter_context(
            alertmanager_posting_to(
                alertmanager_binary, tmp_path, "good", service.url, f"{{{bearer_file}, {trust}}}"
            )
        )
        await alertmanager_alert(stale_am, "StaleTokenProbe")
        await alertmanager_alert(plain_am, "PlainHttpProbe")
        await alertmanager_alert(good_am, "BeforeRotation")

        async def each_tried() -> bool:
            return all([await webhook_requests(am) >= 1 for am in (stale_am, plain_am)])

        await eventually(each_tried, what="both Alertmanagers to try a delivery")
        refused_deliveries = [
            await webhook_requests(am, failed=True) for am in (stale_am, plain_am)
        ]

        async def arrived(alertname: str) -> bool:
            return alertname in (await stored(database_url)).alertnames

        # A wait that times out is left to the figure and the assertions below to report.
        with contextlib.suppress(AssertionError):
            await eventually(lambda: arrived("BeforeRotation"), what="the alert with the token")
        # Alertmanager switches to the next token (its Secret rotated), then the old one goes.
        replace_file(current, NEXT_TOKEN)
        replace_file(tokens, f"{NEXT_TOKEN}\n")
        await alertmanager_alert(good_am, "AfterRotation")
        with contextlib.suppress(AssertionError):
            await eventually(lambda: arrived("AfterRotation"), what="the alert after rotation")
        stored_names = (await stored(database_url)).alertnames
        good_failures = await webhook_requests(good_am, failed=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=certificates.client)) as s:
        current_token, _ = await post(s, service.url, f"Bearer {NEXT_TOKEN}", probe("Direct"))
        previous_token, _ = await post(s, service.url, f"Bearer {TOKEN}", body)

    refused = [
        case
        for case, answer in answers.items()
        if answer == "401 challenged" or answer.startswith("handshake failed")
    ]
    intake_cases = len(answers) - 1  # the plain-HTTP one never reaches the intake
    rows = after_refusals.notifications + after_refusals.alerts + after_refusals.events
    let_in = stored_names & {"StaleTokenProbe", "PlainHttpProbe"}
    passed = (
        len(refused) == len(answers)
        and after_refusals == NOTHING
        and refused_by_intake == intake_cases
        and stored_names == {"BeforeRotation", "AfterRotation"}
        and min(refused_deliveries) >= 1
        and good_failures == 0
        and (current_token, previous_token) == (200, 401)
    )
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"bearer over TLS: {len(refused)} of {len(answers)} wrong, expired or plain-HTTP cases"
            f" rejected, {rows} rows written; real Alertmanagers with a rotated-out token or"
            f" plain HTTP: {len(let_in)} of 2 alerts stored; one with credentials_file followed"
            f" a token rotation with {good_failures:.0f} failed deliveries"
        ),
        passed=passed,
    )
    assert answers == {case: "401 challenged" for case in wrong} | {
        "the rotated-out (expired) token": "401 challenged",
        "plain HTTP to the TLS port": answers["plain HTTP to the TLS port"],
    }
    assert answers["plain HTTP to the TLS port"].startswith("handshake failed"), answers
    assert after_refusals == NOTHING
    assert refused_by_intake == intake_cases
    assert stored_names == {"BeforeRotation", "AfterRotation"}
    assert min(refused_deliveries) >= 1
    assert good_failures == 0  # the rotation cost no delivery: both tokens held meanwhile
    assert (current_token, previous_token) == (200, 401)


async def test_basic_auth_refuses_wrong_users_passwords_and_bearer_tokens(
    tmp_path: Path, postgres_dsn: str, alertmanager_binary: str, figures: Figures
) -> None:
    service = await ServiceProcess.start(
        tmp_path, database_url=postgres_dsn, webhook_username=USER, webhook_password=PASSWORD
    )
    try:
        body = probe("RefusedProbe")
        wrong = {
            "no credentials": None,
            "a wrong password": basic(f"{USER}:not-the-password"),
            "a wrong user": basic(f"someone:{PASSWORD}"),
            "the user in another case": basic(f"{USER.upper()}:{PASSWORD}"),
            "the password with a character more": basic(f"{USER}:{PASSWORD}x"),
            "no password": basic(f"{USER}:"),
            "no colon": basic(f"{USER}{PASSWORD}"),
            "not base64": "Basic !!not-base64!!",
            "the password as a bearer token (bearer where basic is configured)": (
                f"Bearer {PASSWORD}"
            ),
            "the basic credentials as a bearer token": "Bearer "
            + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        }
        answers = {}
        async with aiohttp.ClientSession() as session:
            for case, authorization in wrong.items():
                status, challenge = await post(session, service.url, authorization, body)
                answers[case] = f"{status}{challenge}"
            after_refusals = await stored(postgres_dsn)
            refused_by_intake = await refused_401s(service)
            password_file = tmp_path / "alertmanager-password"
            password_file.write_text(PASSWORD)
            http_config = f'{{basic_auth: {{username: {USER}, password_file: "{password_file}"}}}}'
            with alertmanager_posting_to(
                alertmanager_binary, tmp_path, "basic", service.url, http_config
            ) as alertmanager:
                await alertmanager_alert(alertmanager, "BasicAuthProbe")

                async def arrived() -> bool:
                    return "BasicAuthProbe" in (await stored(postgres_dsn)).alertnames

                await eventually(arrived, what="the alert Alertmanager sent with basic auth")
    finally:
        assert service.stop() == 0
    refused = [case for case, answer in answers.items() if answer == "401 challenged"]
    rows = after_refusals.notifications + after_refusals.alerts + after_refusals.events
    passed = after_refusals == NOTHING and len(refused) == refused_by_intake == len(wrong)
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"basic: {len(refused)} of {len(wrong)} wrong or bearer cases rejected with 401,"
            f" {rows} rows written; a real Alertmanager with basic_auth delivered"
        ),
        passed=passed,
    )
    assert answers == {case: "401 challenged" for case in wrong}
    assert after_refusals == NOTHING
    assert refused_by_intake == len(wrong)


def serve_exit(tmp_path: Path, **settings: str) -> tuple[int, str]:
    """`remediator serve` with these settings alone: its exit code and what it said."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.update({f"REMEDIATOR_{name.upper()}": value for name, value in settings.items()})
    env["REMEDIATOR_POLICIES"] = str(SHIPPED_POLICIES)
    env["REMEDIATOR_LISTEN"] = "127.0.0.1:1"  # never reached: it must refuse before binding
    done = subprocess.run(
        [sys.executable, "-m", "remediator", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr


def test_live_mode_refuses_to_start_without_webhook_authentication(
    tmp_path: Path, certificates: Certificates
) -> None:
    database = tmp_path / "remediator.db"
    code, said = serve_exit(
        tmp_path,
        mode="live",
        database_url=f"sqlite:///{database}",
        tls_cert_file=str(certificates.cert),  # TLS is no authentication
        tls_key_file=str(certificates.key),
    )
    assert code == 2
    assert "REMEDIATOR_MODE=live refuses to start without webhook authentication" in said
    assert not database.exists()  # it stopped before opening the store
    blank = tmp_path / "blank-tokens"
    blank.write_text("\n  \n")
    code, said = serve_exit(tmp_path, mode="live", webhook_token_file=str(blank))
    assert code == 2
    assert "REMEDIATOR_WEBHOOK_TOKEN_FILE (--webhook-token-file): " in said
    assert "holds no token" in said


async def served_serial(service: ServiceProcess, client: ssl.SSLContext) -> int:
    host, port = service.url.removeprefix("https://").split(":")
    _, writer = await asyncio.open_connection(host, int(port), ssl=client)
    try:
        peer = writer.get_extra_info("ssl_object").getpeercert()
        return int(peer["serialNumber"], 16)
    finally:
        writer.close()
        await writer.wait_closed()


def serial_of(chain: Path) -> int:
    return x509.load_pem_x509_certificate(chain.read_bytes()).serial_number


async def test_a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_never(
    tmp_path: Path, certificates: Certificates
) -> None:
    """As cert-manager renews a mounted Secret: the files are replaced in place, key and
    certificate one after the other. New connections get the new certificate; a pair that
    does not load is reported and the one before it is still served."""
    service = await ServiceProcess.start(
        tmp_path,
        client_ssl=certificates.client,
        tls_cert_file=str(certificates.cert),
        tls_key_file=str(certificates.key),
    )
    try:
        first = await served_serial(service, certificates.client)
        assert first == serial_of(certificates.cert)
        renewed = certificates.authority.issue_cert("127.0.0.1", "localhost")
        replace_file(certificates.key, renewed.private_key_pem.bytes().decode())
        chain = b"".join(blob.bytes() for blob in renewed.cert_chain_pems)
        replace_file(certificates.cert, chain.decode())
        new = serial_of(certificates.cert)

        async def serves_the_renewed_one() -> bool:
            return await served_serial(service, certificates.client) == new

        await eventually(serves_the_renewed_one, what="the renewed certificate to be served")
        replace_file(certificates.cert, "not a certificate\n")

        async def reports_the_broken_one() -> bool:
            return "new certificate not loaded" in service.log_path.read_text()

        await eventually(reports_the_broken_one, what="the broken certificate to be reported")
        still = await served_serial(service, certificates.client)
    finally:
        assert service.stop() == 0
    assert first != new
    assert still == new


def encrypted_key(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("cert alone", "REMEDIATOR_TLS_CERT_FILE and REMEDIATOR_TLS_KEY_FILE must be set together"),
        ("key alone", "REMEDIATOR_TLS_CERT_FILE and REMEDIATOR_TLS_KEY_FILE must be set together"),
        ("cert missing", "REMEDIATOR_TLS_CERT_FILE (--tls-cert-file): cannot read"),
        ("cert is a directory", "REMEDIATOR_TLS_CERT_FILE (--tls-cert-file): cannot read"),
        ("cert not PEM", "REMEDIATOR_TLS_CERT_FILE (--tls-cert-file): "),
        ("key missing", "REMEDIATOR_TLS_KEY_FILE (--tls-key-file): cannot read"),
        ("key not PEM", "REMEDIATOR_TLS_KEY_FILE (--tls-key-file): "),
        ("key encrypted", "REMEDIATOR_TLS_KEY_FILE (--tls-key-file): "),
        ("key of another certificate", "REMEDIATOR_TLS_KEY_FILE and REMEDIATOR_TLS_CERT_FILE"),
        ("token file missing", "REMEDIATOR_WEBHOOK_TOKEN_FILE (--webhook-token-file): cannot"),
        ("token file and token", "not several"),
    ],
)
def test_unusable_tls_and_token_files_stop_start_up_naming_the_setting(
    case: str, expected: str, tmp_path: Path, certificates: Certificates
) -> None:
    other = trustme.CA().issue_cert("127.0.0.1")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN)
    cert, key = str(certificates.cert), str(certificates.key)
    settings = {
        "cert alone": {"tls_cert_file": cert},
        "key alone": {"tls_key_file": key},
        "cert missing": {"tls_cert_file": str(tmp_path / "absent.pem"), "tls_key_file": key},
        "cert is a directory": {"tls_cert_file": str(tmp_path), "tls_key_file": key},
        "cert not PEM": {"tls_cert_file": key, "tls_key_file": key},
        "key missing": {"tls_cert_file": cert, "tls_key_file": str(tmp_path / "absent.key")},
        "key not PEM": {"tls_cert_file": cert, "tls_key_file": cert},
        "key encrypted": {
            "tls_cert_file": cert,
            "tls_key_file": str(encrypted_key(tmp_path / "encrypted.key")),
        },
        "key of another certificate": {"tls_cert_file": cert, "tls_key_file": str(other_key)},
        "token file missing": {"webhook_token_file": str(tmp_path / "absent-tokens")},
        "token file and token": {"webhook_token_file": str(tokens), "webhook_token": TOKEN},
    }[case]
    with pytest.raises(SettingsError) as refused:
        load_settings(settings)
    assert any(line.startswith(expected) or expected in line for line in refused.value.lines), (
        refused.value.lines
    )
