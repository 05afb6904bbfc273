"""Settings from defaults, ``GLASSKEY_*`` variables and a TOML file; loud on mistakes, quiet on secrets."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from glasskey.settings import Settings, SettingsError, load_settings

ADMIN_TOKEN = "admin-token-never-printed-0123456789"
PEPPER = "pepper-never-printed-0123456789abcdef"
ENCRYPTION_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI="
SECRETS = {
    "GLASSKEY_ADMIN_TOKEN": ADMIN_TOKEN,
    "GLASSKEY_KEY_PEPPER": PEPPER,
    "GLASSKEY_ENCRYPTION_KEY": ENCRYPTION_KEY,
}


def test_defaults_listen_on_localhost_8787_with_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={**SECRETS, "GLASSKEY_DATA_DIR": str(tmp_path)})
    assert settings.port == 8787
    assert settings.host == "127.0.0.1"
    assert settings.hold_ttl_seconds == 900
    url = make_url(settings.effective_database_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database == str((tmp_path / "glasskey.db").resolve())
    assert settings.effective_public_url == "http://127.0.0.1:8787"


def test_the_default_data_dir_is_relative_to_where_glasskey_runs() -> None:
    settings = load_settings(environ=SECRETS)
    assert settings.data_dir == Path("./glasskey-data")
    assert settings.effective_database_url.endswith("/glasskey-data/glasskey.db")


def test_environment_variables_set_typed_settings() -> None:
    settings = load_settings(
        environ={
            **SECRETS,
            "GLASSKEY_PORT": "9001",
            "GLASSKEY_HOST": "0.0.0.0",
            "GLASSKEY_DATABASE_URL": "postgresql+psycopg://u@db/glasskey",
            "GLASSKEY_PUBLIC_URL": "https://gateway.example.com/",
            "GLASSKEY_HOLD_TTL_SECONDS": "60",
            "PATH": "/usr/bin",  # not ours: ignored
        }
    )
    assert settings.port == 9001
    assert settings.host == "0.0.0.0"
    assert settings.effective_database_url == "postgresql+psycopg://u@db/glasskey"
    assert settings.effective_public_url == "https://gateway.example.com"
    assert settings.hold_ttl_seconds == 60
    assert settings.admin_token.get_secret_value() == ADMIN_TOKEN


def test_a_toml_file_sets_settings_and_the_environment_and_overrides_win_over_it(tmp_path: Path) -> None:
    config = tmp_path / "glasskey.toml"
    config.write_text(
        f'port = 7000\nhost = "10.0.0.1"\nlog_level = "debug"\nadmin_token = "{ADMIN_TOKEN}"\nkey_pepper = "{PEPPER}"\n'
        f'encryption_key = "{ENCRYPTION_KEY}"\n'
    )
    from_file = load_settings(config, environ={})
    assert (from_file.port, from_file.host, from_file.log_level) == (7000, "10.0.0.1", "debug")
    layered = load_settings(config, environ={"GLASSKEY_PORT": "7001", "GLASSKEY_HOST": "10.0.0.2"}, host="10.0.0.3")
    assert (layered.port, layered.host) == (7001, "10.0.0.3")


def test_the_config_file_can_be_named_by_glasskey_config(tmp_path: Path) -> None:
    config = tmp_path / "glasskey.toml"
    config.write_text("port = 7100\n")
    settings = load_settings(environ={**SECRETS, "GLASSKEY_CONFIG": str(config)})
    assert settings.port == 7100


def test_a_misspelt_environment_variable_stops_start_up_naming_it() -> None:
    with pytest.raises(SettingsError, match="GLASSKEY_PROT"):
        load_settings(environ={**SECRETS, "GLASSKEY_PROT": "9000"})


def test_a_misspelt_key_in_the_file_stops_start_up_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "glasskey.toml"
    config.write_text("prot = 9000\n")
    with pytest.raises(SettingsError, match="prot") as caught:
        load_settings(config, environ=SECRETS)
    assert str(config) in str(caught.value)


def test_a_missing_or_broken_config_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ=SECRETS)
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken, environ=SECRETS)


@pytest.mark.parametrize("missing", ["admin_token", "key_pepper"])
def test_a_missing_secret_stops_start_up_naming_it(missing: str) -> None:
    environ = {name: value for name, value in SECRETS.items() if name != f"GLASSKEY_{missing.upper()}"}
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=environ)
    assert missing in str(caught.value)
    assert f"GLASSKEY_{missing.upper()}" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("GLASSKEY_PORT", "0"), ("GLASSKEY_PORT", "eighty"), ("GLASSKEY_HOLD_TTL_SECONDS", "1")],
)
def test_an_invalid_value_stops_start_up_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(environ={**SECRETS, name: value})


def test_a_secret_too_short_is_refused_without_repeating_it() -> None:
    short = "tiny-secret"
    with pytest.raises(SettingsError, match="admin_token") as caught:
        load_settings(environ={**SECRETS, "GLASSKEY_ADMIN_TOKEN": short})
    assert short not in str(caught.value)
    # The one minimum docs/security.md states, not a weaker one from another check.
    assert "at least 32 characters" in str(caught.value) and "16" not in str(caught.value)


def test_settings_never_print_their_secrets() -> None:
    settings = load_settings(environ=SECRETS)
    for shown in (repr(settings), str(settings), f"{settings}", str(settings.model_dump())):
        assert ADMIN_TOKEN not in shown
        assert PEPPER not in shown


def test_settings_are_frozen() -> None:
    settings = load_settings(environ=SECRETS)
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]
    assert isinstance(settings, Settings)


@pytest.mark.parametrize(
    "weak",
    [
        "admin-token-of-31-characters-00",  # one short of 32
        "a" * 40,
        "ab" * 20,
        "0123456789" * 4,
        "passwordpasswordpasswordpassword",
    ],
)
def test_a_weak_admin_token_stops_start_up_naming_the_setting(weak: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={**SECRETS, "GLASSKEY_ADMIN_TOKEN": weak})
    assert "GLASSKEY_ADMIN_TOKEN" in str(caught.value)
    assert weak not in str(caught.value)


def test_a_generated_admin_token_is_strong_enough() -> None:
    for _ in range(20):
        token = secrets.token_urlsafe(32)
        assert load_settings(environ={**SECRETS, "GLASSKEY_ADMIN_TOKEN": token}).admin_token.get_secret_value() == token


@pytest.mark.parametrize("value", ["", "not-a-fernet-key", "c2hvcnQ="])
def test_an_encryption_key_that_is_not_a_fernet_key_stops_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="GLASSKEY_ENCRYPTION_KEY") as caught:
        load_settings(environ={**SECRETS, "GLASSKEY_ENCRYPTION_KEY": value})
    assert "not-a-fernet-key" not in str(caught.value)


def test_the_encryption_key_is_required() -> None:
    environ = {name: value for name, value in SECRETS.items() if name != "GLASSKEY_ENCRYPTION_KEY"}
    with pytest.raises(SettingsError, match="GLASSKEY_ENCRYPTION_KEY"):
        load_settings(environ=environ)


def test_previous_encryption_keys_follow_the_current_one() -> None:
    previous = [Fernet.generate_key().decode() for _ in range(2)]
    settings = load_settings(environ={**SECRETS, "GLASSKEY_PREVIOUS_ENCRYPTION_KEYS": " , ".join(previous)})
    assert settings.encryption_keys == [ENCRYPTION_KEY, *previous]
    assert ENCRYPTION_KEY not in repr(settings) and previous[0] not in repr(settings)
    with pytest.raises(SettingsError, match="GLASSKEY_PREVIOUS_ENCRYPTION_KEYS"):
        load_settings(environ={**SECRETS, "GLASSKEY_PREVIOUS_ENCRYPTION_KEYS": previous[0] + ",oops"})


def test_private_upstreams_are_refused_unless_allowed() -> None:
    assert load_settings(environ=SECRETS).allow_private_upstreams is False
    assert load_settings(environ={**SECRETS, "GLASSKEY_ALLOW_PRIVATE_UPSTREAMS": "true"}).allow_private_upstreams
