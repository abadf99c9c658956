from __future__ import annotations

import os

import pytest

from remediator.cli import main
from remediator.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)


def test_a_new_install_runs_in_dry_run_on_the_embedded_store() -> None:
    settings = load_settings()
    assert settings.mode == "dry-run"
    assert settings.database_url == "sqlite:///./remediator.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 9095)
    assert settings.redis_url is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_LISTEN", "127.0.0.1:8080")
    monkeypatch.setenv("REMEDIATOR_DATABASE_URL", "postgresql://db/remediator")
    monkeypatch.setenv("REMEDIATOR_MAX_BODY_BYTES", "1024")
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "postgresql://db/remediator"
    assert settings.max_body_bytes == 1024


def test_a_command_line_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_LISTEN", "127.0.0.1:8080")
    assert load_settings({"listen": "[::1]:9000"}).port == 9000


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        pytest.param(
            "REMEDIATOR_LISTEN",
            "9095",
            "REMEDIATOR_LISTEN (--listen): expected HOST:PORT",
            id="listen",
        ),
        pytest.param("REMEDIATOR_LISTEN", "h:70000", "port from 1 to 65535", id="port"),
        pytest.param("REMEDIATOR_DATABASE_URL", "mysql://x", "REMEDIATOR_DATABASE_URL", id="db"),
        pytest.param("REMEDIATOR_REDIS_URL", "localhost:6379", "REMEDIATOR_REDIS_URL", id="redis"),
        pytest.param(
            "REMEDIATOR_MODE", "yolo", "REMEDIATOR_MODE (--mode): Input should be", id="mode"
        ),
        pytest.param("REMEDIATOR_MAX_BODY_BYTES", "-1", "REMEDIATOR_MAX_BODY_BYTES", id="size"),
        pytest.param(
            "REMEDIATOR_MAX_BODY_BYTES", "lots", "REMEDIATOR_MAX_BODY_BYTES", id="size-nan"
        ),
        pytest.param(
            "REMEDIATOR_EXTERNAL_URL", "remediator:9095", "REMEDIATOR_EXTERNAL_URL", id="url"
        ),
        pytest.param("REMEDIATOR_MOOD", "live", "REMEDIATOR_MOOD: unknown setting", id="typo"),
        pytest.param(
            "REMEDIATOR_CONSOLE_SECRET", "short", "at least 32 characters", id="console-secret"
        ),
        pytest.param(
            "REMEDIATOR_CONSOLE_TRUSTED_HEADER",
            "X-Forwarded-Email",
            "REMEDIATOR_CONSOLE_TRUSTED_HEADER and REMEDIATOR_CONSOLE_TRUSTED_PROXIES must be set"
            " together",
            id="header-without-proxies",
        ),
        pytest.param(
            "REMEDIATOR_CONSOLE_TRUSTED_PROXIES",
            "10.0.0.1/8",
            "REMEDIATOR_CONSOLE_TRUSTED_PROXIES (--console-trusted-proxies): value is not a valid",
            id="proxies-host-bits",
        ),
        pytest.param(
            "REMEDIATOR_POLICY_REPOSITORY_URL",
            "https://git.example/org/repo/blob/main/policies/{file}",
            "expected {revision} where the commit goes",
            id="repository-without-revision",
        ),
        pytest.param(
            "REMEDIATOR_POLICY_REPOSITORY_URL",
            "https://git.example/{commit}/{file}",
            "only {revision} and {file} may stand in braces",
            id="repository-unknown-placeholder",
        ),
    ],
)
def test_an_invalid_setting_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert len(raised.value.lines) == 1
    assert expected in raised.value.lines[0]


def test_live_mode_refuses_to_start_without_webhook_authentication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REMEDIATOR_MODE", "live")
    with pytest.raises(SettingsError, match="REMEDIATOR_MODE=live refuses to start"):
        load_settings()
    monkeypatch.setenv("REMEDIATOR_WEBHOOK_TOKEN", "s3cret")
    assert load_settings().mode == "live"


BASIC = {"REMEDIATOR_WEBHOOK_USERNAME": "alertmanager", "REMEDIATOR_WEBHOOK_PASSWORD": "pw"}


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        pytest.param({"REMEDIATOR_WEBHOOK_TOKEN": ""}, "REMEDIATOR_WEBHOOK_TOKEN", id="token"),
        pytest.param({"REMEDIATOR_WEBHOOK_TOKEN": " \t"}, "REMEDIATOR_WEBHOOK_TOKEN", id="blank"),
        pytest.param(
            BASIC | {"REMEDIATOR_WEBHOOK_USERNAME": ""}, "REMEDIATOR_WEBHOOK_USERNAME", id="user"
        ),
        pytest.param(
            BASIC | {"REMEDIATOR_WEBHOOK_PASSWORD": " "}, "REMEDIATOR_WEBHOOK_PASSWORD", id="pass"
        ),
        pytest.param(BASIC | {"REMEDIATOR_API_TOKEN": ""}, "REMEDIATOR_API_TOKEN", id="api"),
    ],
)
def test_live_mode_refuses_an_empty_credential_and_names_it(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("REMEDIATOR_MODE", "live")
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    option = "--" + named.removeprefix("REMEDIATOR_").lower().replace("_", "-")
    assert raised.value.lines == [
        f"{named} ({option}): must not be empty or blank: give it a value, or unset it"
    ]


def test_basic_authentication_needs_both_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_WEBHOOK_USERNAME", "alertmanager")
    with pytest.raises(SettingsError, match="must be set together"):
        load_settings()


def test_serve_prints_the_bad_setting_and_exits_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--listen", "nowhere"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "remediator: REMEDIATOR_LISTEN (--listen): expected HOST:PORT with a port from 1 to 65535,"
        " got 'nowhere'",
    ]
    assert main(["serve", "--mode", "live"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "remediator: REMEDIATOR_MODE=live refuses to start without webhook authentication: set"
        " REMEDIATOR_WEBHOOK_TOKEN, or REMEDIATOR_WEBHOOK_USERNAME and REMEDIATOR_WEBHOOK_PASSWORD",
    ]


def test_the_console_trusts_a_header_only_with_its_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_CONSOLE_TRUSTED_HEADER", "X-Forwarded-Email")
    monkeypatch.setenv("REMEDIATOR_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32,::1/128")
    settings = load_settings()
    assert sorted(map(str, settings.console_trusted_proxies)) == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "::1/128",
    ]
