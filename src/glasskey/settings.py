"""Typed settings, read from ``GLASSKEY_*`` environment variables and an optional TOML file.

A misspelt setting (in the file or the environment) or a missing required one stops start-up
with a message that names it. Secrets are ``SecretStr`` so they never print in a repr, a log or
a traceback.
"""

from __future__ import annotations

import hmac
import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from glasskey.errors import GatewayError
from glasskey.secret_strength import weakness_of

ENV_PREFIX = "GLASSKEY_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Variables that configure the process around the settings rather than the settings themselves.
_ENV_NOT_SETTINGS = {"GLASSKEY_CONFIG", "GLASSKEY_TEST_POSTGRES_URL", "GLASSKEY_TEST_REDIS_URL"}


class SettingsError(GatewayError):
    """Start-up configuration is wrong; the message names the setting."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path("./glasskey-data"), description="where the SQLite file lives")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite in data_dir")
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=1, le=65535)
    admin_token: SecretStr = Field(description="bearer token of the admin API and dashboard")
    key_pepper: SecretStr = Field(description="HMAC key under which API key secrets are hashed")
    public_url: str = Field(default="", description="base URL shown in explanations; default from host:port")
    hold_ttl_seconds: int = Field(default=900, ge=10, description="a hold not settled by then expires")
    request_body_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    cache_ttl_ms: int = Field(
        default=1000, ge=0, le=60_000, description="how long keys, routes and models are cached per process"
    )
    database_pool_size: int = Field(
        default=10, ge=1, le=1000, description="PostgreSQL connections each gateway process keeps open"
    )
    database_pool_overflow: int = Field(
        default=20, ge=0, le=1000, description="PostgreSQL connections a process may open beyond the pool under load"
    )
    redis_url: str = Field(default="", description="share rate limits across processes; empty keeps them local")
    probe_interval_seconds: int = Field(default=0, ge=0, description="active probes of idle routes; 0 is off")
    research_resume_at_startup: bool = Field(
        default=False,
        description="resume interrupted research jobs at start-up (and those of processes found dead later), "
        "charged to their keys without a person asking; off: a person resumes each",
    )
    log_level: str = Field(
        default="info", description="debug, info, warning, error or critical: glasskey's own logs and uvicorn's"
    )
    auth_failure_receipts_per_minute: int = Field(
        default=20, ge=0, le=100_000, description="failed authentications per address or public id with a receipt"
    )
    auth_failures_refused_after_per_minute: int = Field(
        default=120, ge=1, le=1_000_000, description="past this, failed authentications are refused 429"
    )
    signin_failures_per_address_per_minute: int = Field(
        default=10, ge=1, le=100_000, description="failed sign-ins from one client address before 429"
    )
    signin_failures_per_account_per_minute: int = Field(
        default=10, ge=1, le=100_000, description="failed sign-ins for one account (email) before 429"
    )
    signin_failures_per_minute: int = Field(
        default=300, ge=1, le=1_000_000, description="failed sign-ins on the whole gateway before 429"
    )
    body_read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="the longest a client may take to send a request body"
    )
    header_read_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="the longest a client may take to send a request line and headers"
    )
    headers_max_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="the largest request line and headers, in bytes"
    )
    connections_max: int = Field(
        default=2048, ge=1, le=1_000_000, description="connections and requests in flight the server takes at once"
    )
    connections_per_address_max: int = Field(
        default=256,
        ge=1,
        le=1_000_000,
        description="open connections, and requests in flight, from one client address (each per process)",
    )
    upstream_proxy: SecretStr = Field(
        default=SecretStr(""),
        description="an http:// proxy URL every upstream call goes through (https:// upstreams in a CONNECT "
        "tunnel); empty: none, and HTTPS_PROXY in the environment is never read (it may carry credentials)",
    )
    encryption_key: SecretStr = Field(description="Fernet key sealing route credentials at rest (docs/security.md)")
    previous_encryption_keys: SecretStr = Field(
        default=SecretStr(""), description="comma-separated keys still opened during a key rotation"
    )
    smtp_url: SecretStr = Field(
        default=SecretStr(""),
        description="mail invitation links: smtp://[user:password@]host[:port][?from=address&starttls=1] or "
        "smtps://...; empty: the inviter is shown the link to copy",
    )
    allow_private_upstreams: bool = Field(
        default=False, description="let routes reach loopback and private addresses (never link-local or metadata)"
    )

    @field_validator("upstream_proxy")
    @classmethod
    def _proxy_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        # TLS to the proxy itself (an https:// proxy) is not offered: uvloop cannot run TLS inside TLS.
        if url and (not url.startswith("http://") or not urlsplit(url).hostname):
            raise ValueError("must be an http:// URL (or empty for no proxy)")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and (urlsplit(url).scheme not in ("smtp", "smtps") or not urlsplit(url).hostname):
            raise ValueError("must be an smtp:// or smtps:// URL with a host (or empty for no mail)")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("key_pepper")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        # The admin token has its own, stricter rule below (32 characters and more): a single
        # message per setting, so an operator is never told two different minimums.
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_strong(cls, value: SecretStr) -> SecretStr:
        weakness = weakness_of(value.get_secret_value())
        if weakness is not None:
            raise ValueError(weakness)
        return value

    @field_validator("encryption_key", "previous_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        keys = value.get_secret_value().split(",")
        if info.field_name == "previous_encryption_keys":
            keys = [key for key in keys if key.strip()]  # none is the usual case
        for key in keys:
            try:
                Fernet(key.strip())
            except ValueError:
                # Fernet's own message is kept out: some versions quote part of the value.
                raise ValueError(
                    "must be 32 url-safe base64 bytes, as `glasskey routes generate-encryption-key` prints"
                ) from None
        return value

    @property
    def encryption_keys(self) -> list[str]:
        """The key that seals, then the previous ones that may still open (a rotation in progress)."""
        previous = [key.strip() for key in self.previous_encryption_keys.get_secret_value().split(",")]
        return [self.encryption_key.get_secret_value().strip(), *(key for key in previous if key)]

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'glasskey.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def secret_matches(expected: SecretStr, sent: str) -> bool:
    """Constant-time comparison of a presented secret (the admin token) with the configured one."""
    # Bytes, because compare_digest refuses non-ASCII text, and a header or form may carry any.
    return hmac.compare_digest(sent.encode(), expected.get_secret_value().encode())


def _check_environment(environ: dict[str, str]) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for name in environ:
        if name.startswith(ENV_PREFIX) and name not in known and name not in _ENV_NOT_SETTINGS:
            raise SettingsError(f"unknown setting {name} in the environment (known: {', '.join(sorted(known))})")


def load_settings(
    config_file: Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: explicit overrides win over the environment, which wins over the file."""
    env = dict(os.environ if environ is None else environ)
    _check_environment(env)
    file_values: dict[str, Any] = {}
    path = config_file or (Path(env["GLASSKEY_CONFIG"]) if env.get("GLASSKEY_CONFIG") else None)
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
        unknown = set(file_values) - set(Settings.model_fields)
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(sorted(unknown))} in {path}")
    values = {**file_values}
    for name in Settings.model_fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = env[env_name]
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            hint = f"GLASSKEY_{name.upper()}" if name in Settings.model_fields else name
            problems.append(f"{name} ({hint}): {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
