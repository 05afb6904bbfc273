"""How long authentication takes for a known, an unknown and a garbage public id (issue 18 #14).

In process, no server: ``Lifecycle.key_of`` (the key lookup every endpoint runs: the one-second
read cache, then the secret's HMAC) on a SQLite database with one key, the default cache TTL.

    .venv/bin/python -m bench.auth_timing [--rounds 3000]

Cases, each timed over ``--rounds`` calls, interleaved round by round so that the machine's changes
of speed fall on every case alike:
- ``known, right secret``: the key itself;
- ``known, wrong secret``: its public id with another secret;
- ``unknown, same id``: one public id no key has, again and again;
- ``unknown, fresh id``: a new random public id every call (what an enumeration sends);
- ``garbage``: a token that is not shaped like a key (no lookup at all).
Prints the median and p90 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from glasskey.errors import APIKeyError
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.keys import secret as key_secret
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import create_key
from glasskey.orgs.service import create_org
from glasskey.services import build_services
from glasskey.settings import load_settings


def _settings(data_dir: Path) -> object:
    return load_settings(
        environ={},
        data_dir=data_dir,
        admin_token="bench-admin-token-" + Fernet.generate_key().decode()[:32],
        key_pepper="bench-pepper-0123456789abcdef",
        encryption_key=Fernet.generate_key().decode(),
    )


async def _time_one(lifecycle: Lifecycle, token: str) -> float:
    began = time.perf_counter()
    with contextlib.suppress(APIKeyError):
        await lifecycle.key_of(f"Bearer {token}")
    return (time.perf_counter() - began) * 1e6


async def measure(rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(_settings(Path(tmp)))  # type: ignore[arg-type]
        try:
            with services.db.write() as conn:
                org = create_org(conn, "bench", services.clock())
                _, full_key = create_key(
                    conn, pepper=services.pepper, org_id=org.id, name="bench", policy=KeyPolicy(), now=services.clock()
                )
            lifecycle = Lifecycle(services)
            known = full_key.rsplit("-", 1)[0]
            absent = key_secret.generate()[0]
            cases: dict[str, Callable[[], str]] = {
                "known, right secret": lambda: full_key,
                "known, wrong secret": lambda: f"{known}-{'x' * key_secret.SECRET_LENGTH}",
                "unknown, same id": lambda: absent,
                "unknown, fresh id": lambda: key_secret.generate()[0],
                "garbage": lambda: "gk-garbage-not-a-key",
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            for token_of in cases.values():  # warm every path once
                await _time_one(lifecycle, token_of())
            for _ in range(rounds):
                for name, token_of in cases.items():
                    token = token_of()
                    times[name].append(await _time_one(lifecycle, token))
            return times
        finally:
            services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    times = asyncio.run(measure(args.rounds))
    print(f"{'case':<22} {'p50 µs':>8} {'p90 µs':>8}")
    for name, values in times.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"{name:<22} {statistics.median(values):>8.1f} {p90:>8.1f}")


if __name__ == "__main__":
    main()
