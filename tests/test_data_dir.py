"""The data directory and the SQLite files are readable by the gateway's user only."""

from __future__ import annotations

import stat
from pathlib import Path

from conftest_helpers import make_settings
from glasskey.data_dir import prepare_data_dir
from glasskey.demo import demo_settings
from glasskey.services import build_services


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_and_its_database_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    services = build_services(make_settings(data_dir))
    try:
        with services.db.write() as conn:  # a write, so the WAL and shared-memory files exist
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
        files = sorted(p.name for p in data_dir.iterdir())
        assert {"glasskey.db", "glasskey.db-wal", "glasskey.db-shm"} <= set(files)
        assert _mode(data_dir) == 0o700
        assert {name: _mode(data_dir / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        services.close()


def test_files_left_world_readable_by_an_older_version_are_narrowed(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    for name in ("glasskey.db", "glasskey.db-wal", "glasskey.toml"):
        (data_dir / name).write_bytes(b"")
        (data_dir / name).chmod(0o644)
    prepare_data_dir(data_dir, create_database=False)
    assert _mode(data_dir) == 0o700
    assert [_mode(data_dir / name) for name in ("glasskey.db", "glasskey.db-wal", "glasskey.toml")] == [0o600] * 3


def test_the_demo_settings_file_is_private_and_has_an_encryption_key(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path / "demo", "127.0.0.1", 8787, environ={})
    assert _mode(tmp_path / "demo") == 0o700
    assert _mode(tmp_path / "demo" / "glasskey.toml") == 0o600
    assert settings.allow_private_upstreams is True
    again = demo_settings(tmp_path / "demo", "127.0.0.1", 8787, environ={})
    assert again.encryption_key.get_secret_value() == settings.encryption_key.get_secret_value()


def test_a_demo_file_from_before_encryption_gets_a_key_appended_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "older-demo"
    data_dir.mkdir()
    path = data_dir / "glasskey.toml"
    path.write_text('admin_token = "admin-token-for-tests-0123456789"\nkey_pepper = "pepper-for-tests-0123456789"\n')
    first = demo_settings(data_dir, "127.0.0.1", 8787, environ={})
    second = demo_settings(data_dir, "127.0.0.1", 8787, environ={})
    assert first.encryption_key.get_secret_value() == second.encryption_key.get_secret_value()
    assert path.read_text().count("encryption_key") == 1
