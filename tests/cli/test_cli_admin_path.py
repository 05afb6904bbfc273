"""The CLI's admin verbs on their own light path (cli.context): no gateway services, Alembic only to
migrate, and every change they commit announced to running gateways through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest
import redis.asyncio as async_redis
from click.testing import CliRunner, Result

from conftest_helpers import require_redis
from glasskey.cache import ReadCache
from glasskey.cli import main
from glasskey.invalidation import CHANNEL, Invalidation
from glasskey.settings import load_settings
from glasskey.store.database import Database
from glasskey.store.migrations import upgrade
from glasskey.store.schema import at_head

# What the gateway needs and an admin verb never should: the upstream client, the migrations'
# machinery, Redis' client, the web framework, the composition root.
NOT_ON_THE_LIST_PATH = ("aiohttp", "alembic", "redis", "fastapi", "uvicorn", "glasskey.services", "glasskey.app")
CREATED = re.compile(r"created key \S+ \((key_\w+), (gk-\w+)\)")
LIST_COMMANDS = (
    ("orgs", "list"),
    ("keys", "list"),
    ("keys", "explain", "nightly"),
    ("wallets", "show", "acme"),
    ("receipts", "list"),
    ("models", "list"),
    ("routes", "list"),
)


@pytest.fixture
def run(env):
    runner = CliRunner()

    def invoke(*args: str, extra_env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, list(args), env={**env, **(extra_env or {})})

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_the_list_commands_import_neither_the_upstream_client_nor_alembic_nor_redis(run, env, tmp_path):
    ok(run("orgs", "create", "acme"))  # migrates the fresh database: the next process finds it at head
    created = ok(run("keys", "create", "--org", "acme", "--name", "nightly"))
    prefix = CREATED.search(created).group(2)  # type: ignore[union-attr]
    script = (
        "import json, sys\n"
        "from glasskey.cli import main\n"
        f"for command in {[[prefix if part == 'nightly' else part for part in c] for c in LIST_COMMANDS]!r}:\n"
        "    main(command, standalone_mode=False)\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "acme" in done.stdout and "nightly" in done.stdout
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "glasskey.cli.context" in loaded  # the light path was taken
    assert not {name for name in loaded if name.split(".")[0] in NOT_ON_THE_LIST_PATH or name in NOT_ON_THE_LIST_PATH}


def test_a_database_behind_head_is_migrated_by_the_first_verb(run, env, tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'glasskey.db'}")
    try:
        upgrade(db, "0007")
        assert not at_head(db)
        assert ok(run("keys", "list")).strip() == "No keys."
        assert at_head(db)
    finally:
        db.dispose()


def test_db_upgrade_leaves_a_database_the_verbs_can_use_as_it_is(run):
    # The verbs take a database at head as prepared: db upgrade opens the system accounts a top-up needs.
    assert "revision" in ok(run("db", "upgrade"))
    ok(run("orgs", "create", "acme"))
    assert "topped up" in ok(run("wallets", "topup", "acme", "routed", "5")).lower()


def test_a_cli_change_reaches_a_running_gateways_cache_through_redis(run, env):
    url = require_redis()
    settings = load_settings(environ={**env, "GLASSKEY_REDIS_URL": url})
    ok(run("orgs", "create", "acme"))
    created = ok(run("keys", "create", "--org", "acme", "--name", "nightly"))
    key_id = CREATED.search(created).group(1)  # type: ignore[union-attr]
    db = Database(settings.effective_database_url)
    cache = ReadCache(db)
    gateway = Invalidation(cache, url)  # what a running gateway listens with
    # Pub/sub is shared by every Redis database, so other tests' announcements may arrive too: the
    # CLI's are told apart by what they say, never counted by cache generations alone.
    watcher = async_redis.Redis.from_url(url)

    async def story() -> tuple[list[str], int, int, Result]:
        listening = asyncio.create_task(gateway.listen())
        pubsub = watcher.pubsub()
        await pubsub.subscribe(CHANNEL)
        try:
            while cache.generation == 0:  # subscribed (it drops its cache once on subscribing)
                await asyncio.sleep(0.01)
            before = cache.generation
            listed = await asyncio.to_thread(run, "keys", "list", extra_env={"GLASSKEY_REDIS_URL": url})
            revoked = await asyncio.to_thread(run, "keys", "revoke", key_id, extra_env={"GLASSKEY_REDIS_URL": url})
            said: list[str] = []
            deadline = asyncio.get_running_loop().time() + 1.0
            while asyncio.get_running_loop().time() < deadline and not any("revoke" in s for s in said):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    said.append(message["data"].decode())
            for _ in range(100):  # the gateway's own listener applies it too
                if cache.generation > before:
                    break
                await asyncio.sleep(0.01)
            ok(listed)
            return said, before, cache.generation, revoked
        finally:
            listening.cancel()
            await pubsub.aclose()
            await watcher.aclose()
            await gateway.aclose()

    try:
        said, before, after, revoked = asyncio.run(story())
    finally:
        db.dispose()
    assert "revoked key nightly" in ok(revoked)
    from_the_cli = [what for what in (text.split(" ", 1)[1] for text in said) if what.startswith("cli ")]
    assert from_the_cli == ["cli keys revoke"]  # the read announced nothing, the change once
    assert after > before and gateway.received >= 1


def test_a_change_made_while_redis_is_away_is_saved_and_says_gateways_see_it_within_their_ttl(run):
    ok(run("orgs", "create", "acme"))
    away = {"GLASSKEY_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    result = run("keys", "create", "--org", "acme", "--name", "nightly", extra_env=away)
    assert result.exit_code == 0, result.output
    assert "Redis could not be told" in result.stderr and "cache TTL" in result.stderr
    assert "nightly" in ok(run("keys", "list"))
