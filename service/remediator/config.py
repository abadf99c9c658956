"""Settings from REMEDIATOR_* environment variables, each also a `remediator serve` option.

Start-up refuses a setting it cannot use and says which one, in one line per problem: a
typo in a variable name or a live install without webhook authentication must not start.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from remediator.identities import check_name, read_users

ENV_PREFIX = "REMEDIATOR_"


class SettingsError(Exception):
    """Settings that cannot be used; each line names the variable and what is wrong."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    listen: str = Field("0.0.0.0:9095", description="host:port the HTTP server binds")
    database_url: str = Field(
        "sqlite:///./remediator.db",
        description="sqlite:///PATH (embedded) or postgresql://... (several replicas)",
    )
    redis_url: str | None = Field(
        None, description="redis://... for shared guards; unset: in process"
    )
    policies: Path = Field(Path("./policies"), description="directory of policy files")
    mode: Literal["dry-run", "live"] = Field(
        "dry-run", description="dry-run decides and records; live acts"
    )
    dry_run_channels: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        description="in dry-run, the channels that still deliver (comma-separated, e.g. slack"
        " pointed at a test channel); the others record 'would send' and deliver nothing",
    )
    webhook_token: SecretStr | None = Field(None, description="bearer token Alertmanager must send")
    webhook_username: str | None = Field(None, description="basic-auth user Alertmanager must send")
    webhook_password: SecretStr | None = Field(None, description="basic-auth password")
    webhook_token_file: Path | None = Field(
        None,
        description="file of bearer tokens Alertmanager may send, one a line; re-read when it"
        " changes, so a rotated Secret takes effect without a restart",
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain to serve HTTPS with (with REMEDIATOR_TLS_KEY_FILE)"
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of REMEDIATOR_TLS_CERT_FILE, not encrypted"
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="largest webhook body accepted")
    body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="longest a request's body may take to arrive (webhook, pause, resume); 408",
    )
    max_events_in_flight: int = Field(
        32,
        ge=1,
        le=10_000,
        description="alert events one replica runs at once, each on its own (decision to page)",
    )
    lease_seconds: float = Field(
        60.0,
        ge=3,
        le=3600,
        description="how long a dead worker's event claims and target leases outlive it",
    )
    kubeconfig: Path | None = Field(
        None,
        description="kubeconfig for the Kubernetes actions; unset: the in-cluster account, if any",
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token for the operator API (pause, resume, guards); unset: closed"
    )
    api_identity: str = Field(
        "operator",
        description="the name REMEDIATOR_API_TOKEN's caller goes by (an operator): who the"
        " audit says answered, and the name an approval request's approvers list",
    )
    users_file: Path | None = Field(
        None,
        description="YAML file of the operator API's users, each a name, a role (operator or"
        " viewer) and the SHA-256 of its token; re-read when it changes",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="log threshold"
    )
    database_pool_min: int = Field(
        1, ge=1, le=100, description="PostgreSQL connections each replica keeps open"
    )
    database_pool_max: int = Field(
        10, ge=1, le=1000, description="most PostgreSQL connections each replica opens"
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="alerts, runs and messages older than this are pruned"
    )
    aws_region: str | None = Field(
        None, description="AWS region for the aws.* actions; unset: they can only run in dry-run"
    )
    aws_role_arn: str | None = Field(
        None,
        description="IAM role the aws.* actions assume through STS; unset: the default"
        " credential chain",
    )
    aws_endpoint_url: str | None = Field(
        None, description="one endpoint for every AWS API (localstack, moto); unset: AWS's own"
    )

    external_url: str | None = Field(
        None,
        description="the address people reach Remediator at (https://remediator.example.com):"
        " every message links its run there, <url>/ui/runs/<id> (the console); unset: no link",
    )

    slack_signing_secret: SecretStr | None = Field(
        None,
        description="the Slack app's signing secret: Approve and Reject buttons are answered at"
        " POST /slack/interactions only with it; unset: that route answers 404",
    )
    slack_signing_secret_file: Path | None = Field(
        None,
        description="a file holding the Slack signing secret instead (any line of it is"
        " accepted, for a rotation); re-read when it changes",
    )
    slack_response_url_prefix: str = Field(
        "https://hooks.slack.com/",
        description="an answered button's message is updated only through a Slack response_url"
        " that starts with this",
    )

    console_secret: SecretStr | None = Field(
        None,
        description="signs the console's sign-in cookies and form tokens: at least 32"
        " characters, the same on every replica; unset: a random one at each start (sign-ins"
        " then end at a restart and hold on one replica only)",
    )
    console_session_hours: float = Field(
        12.0, gt=0, le=720, description="how long a sign-in to the console lasts"
    )
    console_trusted_header: str | None = Field(
        None,
        description="the header an authenticating proxy (oauth2-proxy) names the signed-in"
        " person in, e.g. X-Forwarded-Email; believed only from"
        " REMEDIATOR_CONSOLE_TRUSTED_PROXIES; the role is the users file's for that name, else"
        " viewer",
    )
    console_trusted_proxies: Annotated[frozenset[IPvAnyNetwork], NoDecode] = Field(
        frozenset(),
        description="the proxies whose REMEDIATOR_CONSOLE_TRUSTED_HEADER is believed,"
        " comma-separated networks (10.0.0.0/8,127.0.0.1/32)",
    )
    policy_repository_url: str | None = Field(
        None,
        description="where the policy files are read at a revision, with {revision} and {file}"
        " (https://github.com/org/repo/blob/{revision}/policies/{file}): the console links each"
        " run's policy there; unset: no link",
    )

    @field_validator("dry_run_channels", "console_trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT with a port from 1 to 65535, got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
            return value
        if value.startswith(("postgresql://", "postgres://")):
            return value
        raise ValueError(f"expected sqlite:///PATH or postgresql://..., got {value!r}")

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_supported(cls, value: str | None) -> str | None:
        if value is None or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        raise ValueError(f"expected redis://, rediss:// or unix://, got {value!r}")

    @field_validator("aws_region")
    @classmethod
    def _aws_region_is_a_region(cls, value: str | None) -> str | None:
        if value is None or _AWS_REGION.fullmatch(value):
            return value
        raise ValueError(f"expected an AWS region such as eu-west-1, got {value!r}")

    @field_validator("aws_role_arn")
    @classmethod
    def _aws_role_arn_is_a_role(cls, value: str | None) -> str | None:
        if value is None or _AWS_ROLE_ARN.fullmatch(value):
            return value
        raise ValueError(
            f"expected an IAM role ARN such as arn:aws:iam::123456789012:role/NAME, got {value!r}"
        )

    @field_validator("external_url")
    @classmethod
    def _external_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        blank = any(ch.isspace() or not ch.isprintable() for ch in value)
        if parts.scheme in ("http", "https") and parts.netloc and not blank:
            return value
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")

    @field_validator("console_secret")
    @classmethod
    def _console_secret_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_CONSOLE_SECRET:
            raise ValueError(
                f"must be at least {MIN_CONSOLE_SECRET} characters (openssl rand -hex 32)"
            )
        return value

    @field_validator("console_trusted_header")
    @classmethod
    def _trusted_header_is_a_header_name(cls, value: str | None) -> str | None:
        if value is None or _HEADER_NAME.fullmatch(value):
            return value
        raise ValueError(f"expected a header name such as X-Forwarded-Email, got {value!r}")

    @field_validator("policy_repository_url")
    @classmethod
    def _repository_url_has_a_revision(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        blank = any(ch.isspace() or not ch.isprintable() for ch in value)
        try:
            value.format(revision="r", file="f")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                f"only {{revision}} and {{file}} may stand in braces, got {value!r}"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.netloc or blank:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        if "{revision}" not in value:
            raise ValueError(
                "expected {revision} where the commit goes, as in"
                " https://github.com/org/repo/blob/{revision}/policies/{file}"
            )
        return value

    @field_validator("slack_response_url_prefix")
    @classmethod
    def _response_url_prefix_names_a_host(cls, value: str) -> str:
        """It ends its host with a path: `https://hooks.slack.com` would let
        `https://hooks.slack.com.example.net/` through."""
        parts = urlsplit(value)
        blank = any(ch.isspace() or not ch.isprintable() for ch in value)
        if parts.scheme in ("http", "https") and parts.hostname and parts.path and not blank:
            return value
        raise ValueError(
            f"expected an http:// or https:// URL with a host and a path, such as"
            f" https://hooks.slack.com/, got {value!r}"
        )

    @field_validator("aws_endpoint_url")
    @classmethod
    def _aws_endpoint_is_http(cls, value: str | None) -> str | None:
        if value is None or (
            value.startswith(("http://", "https://")) and not any(ch.isspace() for ch in value)
        ):
            return value
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")

    @field_validator(
        "webhook_token", "webhook_username", "webhook_password", "api_token", "slack_signing_secret"
    )
    @classmethod
    def _credential_is_not_blank(cls, value: SecretStr | str | None) -> SecretStr | str | None:
        """A blank credential would be a lock any empty header opens: refuse it, never ignore."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and not text.strip():
            raise ValueError("must not be empty or blank: give it a value, or unset it")
        return value

    @field_validator("webhook_token_file", "slack_signing_secret_file")
    @classmethod
    def _token_file_holds_a_token(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_tokens(value)
        return value

    @field_validator("api_identity")
    @classmethod
    def _api_identity_is_a_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("users_file")
    @classmethod
    def _users_file_is_valid(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_users(value)
        return value

    @field_validator("tls_cert_file")
    @classmethod
    def _cert_file_is_a_pem_certificate(cls, value: Path | None) -> Path | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in _read_text(value):
            raise ValueError(f"{str(value)!r} is not a PEM certificate (no BEGIN CERTIFICATE)")
        return value

    @field_validator("tls_key_file")
    @classmethod
    def _key_file_is_a_pem_key(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        text = _read_text(value)
        if not _PEM_PRIVATE_KEY.search(text):
            raise ValueError(f"{str(value)!r} is not a PEM private key (no BEGIN PRIVATE KEY)")
        if "ENCRYPTED" in text:
            raise ValueError(
                f"{str(value)!r} is encrypted: the service cannot ask for its passphrase;"
                " give it the key unencrypted (a Secret's file, readable only by the service)"
            )
        return value

    @model_validator(mode="after")
    def _tls_files_make_a_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "REMEDIATOR_TLS_CERT_FILE and REMEDIATOR_TLS_KEY_FILE must be set together"
            )
        try:
            self.server_ssl_context()
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                "REMEDIATOR_TLS_KEY_FILE and REMEDIATOR_TLS_CERT_FILE cannot serve HTTPS"
                f" together (is the key the certificate's?): {exc}"
            ) from None
        return self

    @model_validator(mode="after")
    def _authentication_is_complete(self) -> Settings:
        basic = (self.webhook_username is not None, self.webhook_password is not None)
        if any(basic) and not all(basic):
            raise ValueError(
                "REMEDIATOR_WEBHOOK_USERNAME and REMEDIATOR_WEBHOOK_PASSWORD must be set together"
            )
        if self.database_pool_min > self.database_pool_max:
            raise ValueError(
                f"REMEDIATOR_DATABASE_POOL_MIN ({self.database_pool_min}) is more than"
                f" REMEDIATOR_DATABASE_POOL_MAX ({self.database_pool_max})"
            )
        schemes = [
            name
            for name, is_set in (
                ("REMEDIATOR_WEBHOOK_TOKEN", self.webhook_token is not None),
                ("REMEDIATOR_WEBHOOK_TOKEN_FILE", self.webhook_token_file is not None),
                ("REMEDIATOR_WEBHOOK_USERNAME/PASSWORD", all(basic)),
            )
            if is_set
        ]
        if len(schemes) > 1:
            raise ValueError(f"set one of {' or '.join(schemes)}, not several")
        if self.slack_signing_secret is not None and self.slack_signing_secret_file is not None:
            raise ValueError(
                "set one of REMEDIATOR_SLACK_SIGNING_SECRET or"
                " REMEDIATOR_SLACK_SIGNING_SECRET_FILE, not both"
            )
        if (self.console_trusted_header is None) != (not self.console_trusted_proxies):
            raise ValueError(
                "REMEDIATOR_CONSOLE_TRUSTED_HEADER and REMEDIATOR_CONSOLE_TRUSTED_PROXIES must"
                " be set together: the header is believed only from those proxies"
            )
        if self.aws_region is None and (self.aws_role_arn or self.aws_endpoint_url):
            raise ValueError(
                "REMEDIATOR_AWS_ROLE_ARN and REMEDIATOR_AWS_ENDPOINT_URL need"
                " REMEDIATOR_AWS_REGION: set it, or unset them"
            )
        if self.mode == "live" and not schemes:
            raise ValueError(
                "REMEDIATOR_MODE=live refuses to start without webhook authentication: set"
                " REMEDIATOR_WEBHOOK_TOKEN, or REMEDIATOR_WEBHOOK_USERNAME and"
                " REMEDIATOR_WEBHOOK_PASSWORD"
            )
        return self

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The context HTTPS is served with (TLS 1.2 or newer), or None: plain HTTP."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert_file, self.tls_key_file, password=no_passphrase)
        return context

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


MIN_CONSOLE_SECRET = 32
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")


def read_tokens(path: Path) -> tuple[str, ...]:
    """The bearer tokens a token file holds, one a line (blank lines aside); raises ValueError
    naming the file when it cannot be read or holds none."""
    tokens = tuple(line.strip() for line in _read_text(path).splitlines() if line.strip())
    if not tokens:
        raise ValueError(f"{str(path)!r} holds no token: write one, or unset the setting")
    return tokens


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None


def no_passphrase() -> str:
    """Asked for by OpenSSL only for an encrypted key: never prompt on a terminal."""
    raise ssl.SSLError("the private key is encrypted")


_AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_AWS_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def option_help(field: str) -> str:
    """A setting's help for its command-line option: what it is, its choices, its default
    and its environment variable (argparse's % escaped)."""
    info = Settings.model_fields[field]
    notes = []
    choices = [str(choice) for choice in get_args(info.annotation) if isinstance(choice, str)]
    if choices:
        notes.append("one of " + ", ".join(choices))
    default = info.get_default(call_default_factory=True)
    if default is None or default == frozenset():
        notes.append("default: unset")
    else:
        notes.append(f"default: {default}")
    text = f"{info.description} ({'; '.join(notes)}) [{env_name(field)}]"
    return text.replace("%", "%%")


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment, with command-line `overrides` taking precedence."""
    unknown = sorted(
        name
        for name in os.environ
        if name.startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX) :].lower() not in Settings.model_fields
    )
    problems = [f"{name}: unknown setting (known: {_known_names()})" for name in unknown]
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        problems += [_describe(error) for error in exc.errors()]
    if problems:
        raise SettingsError(problems)
    return settings


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:
        return message
    field = str(error["loc"][0])
    return f"{env_name(field)} ({option_name(field)}): {message}"


def _known_names() -> str:
    return ", ".join(env_name(field) for field in Settings.model_fields)
