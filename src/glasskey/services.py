"""The services of one gateway process, built once at start-up and passed down.

Nothing here is a module-level global: tests build as many independent ``Services`` as they
like, each with its own database, clock and providers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from glasskey.cache import ReadCache
from glasskey.data_dir import prepare_data_dir
from glasskey.ids import new_id
from glasskey.invalidation import Invalidation
from glasskey.keys.auth_failures import AuthFailureLog
from glasskey.keys.auth_throttle import AuthLimits, AuthThrottle, FailureCounter, MemoryFailureCounter, build_counter
from glasskey.keys.ratelimit import RateLimiter
from glasskey.keys.shared_ratelimit import RedisRateLimiter
from glasskey.metrics import Metrics
from glasskey.people.audit import chain_key
from glasskey.people.throttle import MemoryThrottle, Throttle, ThrottleLimits, build_throttle
from glasskey.providers.anthropic import AnthropicProvider
from glasskey.providers.base import Provider
from glasskey.providers.gemini import GeminiProvider
from glasskey.providers.http import UpstreamHTTP
from glasskey.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from glasskey.providers.sealed import sealed_providers
from glasskey.providers.simulated import SimulatedProvider
from glasskey.readiness import DependencyCollector
from glasskey.routing.credentials import CredentialVault
from glasskey.routing.health import HealthBoard, RetryBudget
from glasskey.routing.shared_health import SharedHealthBoard
from glasskey.settings import Settings
from glasskey.startup import prepare_database
from glasskey.store.database import Database
from glasskey.store.writer import GroupCommitWriter


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    providers: dict[str, Provider]
    rate_limiter: RateLimiter | RedisRateLimiter = field(default_factory=RateLimiter)
    # Failed sign-ins and wrong admin credentials, shared by the admin API, the dashboard and /metrics.
    signin_throttle: Throttle = field(default_factory=MemoryThrottle)
    # Failed authentications at the gateway, counted per address and public id (in Redis when configured).
    auth_counter: FailureCounter = field(default_factory=MemoryFailureCounter)
    clock: Callable[[], datetime] = utc_now
    # This process, on every hold it takes: a later process voids the holds of a dead one (gateway.instances).
    instance_id: str = field(default_factory=lambda: new_id("inst"))
    monotonic: Callable[[], float] = time.monotonic
    upstream_http: UpstreamHTTP = field(default_factory=UpstreamHTTP)
    health: HealthBoard = field(default_factory=lambda: HealthBoard(time.monotonic))
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    metrics: Metrics = field(init=False)
    cache: ReadCache = field(init=False)
    writer: GroupCommitWriter = field(init=False)
    auth_throttle: AuthThrottle = field(init=False)
    vault: CredentialVault = field(init=False)
    # Admin changes announced to every process (Redis pub/sub); without Redis, only this process's cache.
    invalidation: Invalidation = field(init=False)

    def __post_init__(self) -> None:
        self.vault = CredentialVault(self.settings.encryption_keys)
        self.metrics = Metrics(self.health)
        self.cache = ReadCache(self.db, ttl_seconds=self.settings.cache_ttl_ms / 1000)
        self.invalidation = Invalidation(self.cache, self.settings.redis_url, board=self.health)
        self.metrics.registry.register(DependencyCollector(self))
        self.writer = GroupCommitWriter(self.db)
        self.metrics.watch_writer(self.writer)
        self.auth_throttle = AuthThrottle(
            self.auth_counter, AuthFailureLog(self.db, lambda: self.clock()), auth_limits(self.settings)
        )

    def close(self) -> None:
        """Finish queued writes and release the database."""
        self.writer.close()
        self.db.dispose()

    @property
    def pepper(self) -> str:
        return self.settings.key_pepper.get_secret_value()


def auth_limits(settings: Settings) -> AuthLimits:
    return AuthLimits(
        receipts_per_minute=settings.auth_failure_receipts_per_minute,
        refused_after_per_minute=settings.auth_failures_refused_after_per_minute,
    )


def signin_limits(settings: Settings) -> ThrottleLimits:
    """The sign-in throttle's windows (``people.throttle``), from the ``GLASSKEY_SIGNIN_FAILURES_*`` settings."""
    return ThrottleLimits(
        per_address=settings.signin_failures_per_address_per_minute,
        per_account=settings.signin_failures_per_account_per_minute,
        whole_gateway=settings.signin_failures_per_minute,
    )


def default_providers(http: UpstreamHTTP) -> dict[str, Provider]:
    """Every provider family, sharing one set of pooled upstream clients."""
    return {
        "openai": OpenAIProvider(http),
        "openai_compatible": OpenAICompatibleProvider(http),
        "anthropic": AnthropicProvider(http),
        "gemini": GeminiProvider(http),
        "simulated": SimulatedProvider(),
    }


def build_services(
    settings: Settings, *, providers: dict[str, Provider] | None = None, migrate: bool = True
) -> Services:
    """Open the database, bring its schema up to date, and seed the catalog and system accounts.

    The SQLite data directory is made private before the engine first opens the file; stored
    routes are checked (credentials sealed, refused upstreams reported) before anything is served.
    """
    if not settings.database_url:
        prepare_data_dir(settings.data_dir, create_database=True)
    db = Database(
        settings.effective_database_url,
        audit_chain_key=chain_key(settings.key_pepper.get_secret_value()),
        pool_size=settings.database_pool_size,
        pool_overflow=settings.database_pool_overflow,
    )
    http = UpstreamHTTP(
        proxy=settings.upstream_proxy.get_secret_value() or None,
        allow_private_upstreams=settings.allow_private_upstreams,
    )
    limiter = RedisRateLimiter(settings.redis_url) if settings.redis_url else RateLimiter()
    # A cached route is at most a cache lifetime old (plus its read): a force change settles for twice that,
    # so a stale copy cannot undo it; a second change made by another process within it waits as long.
    settle_seconds = 2 * settings.cache_ttl_ms / 1000
    health = (
        SharedHealthBoard(time.monotonic, settings.redis_url, force_settle_seconds=settle_seconds)
        if settings.redis_url
        else HealthBoard(time.monotonic, force_settle_seconds=settle_seconds)
    )
    services = Services(
        settings=settings,
        db=db,
        providers=providers or default_providers(http),
        upstream_http=http,
        rate_limiter=limiter,
        signin_throttle=build_throttle(settings.redis_url, signin_limits(settings)),
        auth_counter=build_counter(settings.redis_url, auth_limits(settings)),
        health=health,
    )
    # Every provider, also one a caller passed in, opens sealed credentials just before its call.
    services.providers = sealed_providers(services.providers, services.vault)
    prepare_database(
        db, services.vault, services.clock(), allow_private=settings.allow_private_upstreams, migrate=migrate
    )
    return services
