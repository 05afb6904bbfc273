"""Keys are stored only as hashes: no secret in the database dump or the logs, whatever happens."""

from __future__ import annotations

import logging

import httpx
from sqlalchemy import MetaData, select

from glasskey.keys.service import revoke_key


def test_no_secret_in_database_dump_or_logs(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [gateway.routed_key, gateway.official_key, gateway.new_key(name="extra", settlement="official")]
    for key in secrets:
        httpx.post(
            f"{gateway.v1}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        httpx.get(f"{gateway.v1}/key", headers={"authorization": f"Bearer {key}"})
        # A wrong secret for a real public id, and a malformed body with a real key.
        httpx.get(f"{gateway.v1}/key", headers={"authorization": f"Bearer {key[:-1]}X"})
        httpx.post(f"{gateway.v1}/chat/completions", headers={"authorization": f"Bearer {key}"}, content=b"{")
    with gateway.services.db.write() as conn:
        revoke_key(conn, secrets[2].rsplit("-", 1)[0], gateway.services.clock())
    revoked = httpx.get(f"{gateway.v1}/key", headers={"authorization": f"Bearer {secrets[2]}"})
    assert revoked.status_code == 401
    assert secrets[2].rsplit("-", 1)[1] not in revoked.text

    dump: list[str] = []
    with gateway.services.db.read() as conn:
        metadata = MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                dump.append(repr(tuple(row)))
    text = "\n".join(dump)
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "api_keys" in metadata.tables and len(dump) > 10
    for key in secrets:
        secret = key.rsplit("-", 1)[1]
        assert secret not in text
        assert secret not in logs
