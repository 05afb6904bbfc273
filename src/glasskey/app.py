"""The ASGI application: ``/v1`` for clients, ``/admin/api`` for operators, one error mapping.

``build_app(services)`` is the only place the pieces are put together. Every response
carries ``x-request-id``; every ``GlasskeyError`` becomes the brief's error shape through
``gateway.http.error_response`` and nowhere else. The app it returns is the lean front door of
``gateway.asgi``, which serves the two hot endpoints itself and hands everything else (and the
lifespan) to the Starlette app built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from glasskey import __version__
from glasskey.admin.api import admin_refusal, build_admin_app
from glasskey.alerts.runner import AlertRunner
from glasskey.dashboard import build_dashboard
from glasskey.errors import ClientError, GlasskeyError, NotFound
from glasskey.gateway import instances, liveness
from glasskey.gateway.anthropic_api import routes_anthropic
from glasskey.gateway.asgi import GatewayApp
from glasskey.gateway.gemini_api import gemini_routes
from glasskey.gateway.http import JSONResponse, error_response, request_id_of, routes_v1
from glasskey.gateway.lifecycle import Lifecycle
from glasskey.gateway.sweeper import sweep_expired_holds
from glasskey.invalidation import InvalidationMiddleware
from glasskey.people.throttle import scopes
from glasskey.readiness import readiness
from glasskey.request_ids import RequestIdMiddleware
from glasskey.research.http import routes_research
from glasskey.research.runner import JobRunner
from glasskey.routing.probes import probe_idle_routes
from glasskey.routing.shared_health import SharedHealthBoard
from glasskey.services import Services
from glasskey.store.outage import OUTAGES, gateway_failure

log = logging.getLogger("glasskey")
SWEEP_INTERVAL_SECONDS = 30.0


def render_error(request: Request, error: GlasskeyError) -> Response:
    return error_response(error, request_id_of(request))


async def _glasskey_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GlasskeyError)
    return render_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render_error(request, NotFound(f"No such endpoint: {request.method} {request.url.path}"))
    return render_error(
        request, ClientError(str(exc.detail), code=f"http_{exc.status_code}", status_code=exc.status_code)
    )


async def _outage(request: Request, exc: Exception) -> Response:
    # The database or Redis is down: a 503 naming the gateway, on every endpoint.
    failure = gateway_failure(exc)
    assert failure is not None
    log.warning("%s %s failed on an outage: %r", request.method, request.url.path, exc)
    return render_error(request, failure)


def build_app(services: Services) -> GatewayApp:
    lifecycle = Lifecycle(services)
    research_runner = JobRunner(services, lifecycle)

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "name": "glasskey",
                "version": __version__,
                "gateway": f"{services.settings.effective_public_url}/v1",
                "admin_api": f"{services.settings.effective_public_url}/admin/api/docs",
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # Database reachable and migrations at head, else 503; Redis down only degrades (listed).
        ready, body = await readiness(services)
        return JSONResponse(body, status_code=200 if ready else 503)

    admin_app = build_admin_app(services)

    async def metrics(request: Request) -> Response:
        # Metrics name orgs and routes: they need the admin token (Prometheus sends it as a bearer).
        # Wrong tokens count in the sign-in throttle here too: /metrics must not be a side door for guessing.
        attempt = scopes(request.client.host if request.client is not None else "")
        await services.signin_throttle.check(attempt)
        refusal = admin_refusal(services.settings.admin_token, request.headers.get("authorization"))
        if refusal is not None:
            if refusal.code != "missing_admin_token":
                await services.signin_throttle.fail(attempt)
            raise refusal
        return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        liveness_lock = await _start_instance(services)
        # Set by the liveness check when it finds a process dead, so the resume round takes up its
        # research jobs at once instead of at the next heartbeat (only when resume is configured).
        resume_now = asyncio.Event() if services.settings.research_resume_at_startup else None
        async with anyio.create_task_group() as group:
            group.start_soon(_sweep_forever, services)
            group.start_soon(_beat_forever, services)
            if liveness_lock is not None:
                group.start_soon(_watch_liveness_forever, services, liveness_lock, resume_now)
            # Alerts are evaluated and their webhooks sent here, off the request path (alerts.runner).
            group.start_soon(
                AlertRunner(
                    services.db, services.vault, services.clock, allow_private=services.settings.allow_private_upstreams
                ).run_forever
            )
            if services.settings.probe_interval_seconds > 0:
                group.start_soon(_probe_forever, services)
            if resume_now is not None:
                group.start_soon(_resume_research_forever, research_runner, resume_now, instances.HEARTBEAT_SECONDS)
            group.start_soon(services.invalidation.listen)
            if isinstance(services.health, SharedHealthBoard):
                group.start_soon(services.health.run)
            yield
            group.cancel_scope.cancel()
        await services.invalidation.aclose()
        if isinstance(services.health, SharedHealthBoard):
            await services.health.aclose()
        await services.upstream_http.aclose()
        await services.rate_limiter.aclose()
        await services.signin_throttle.aclose()
        await services.auth_throttle.aclose()  # writes the failed-authentication counts still pending
        await anyio.to_thread.run_sync(services.writer.close)
        if liveness_lock is not None:
            # Last: a free lock tells the other processes this one is gone.
            await anyio.to_thread.run_sync(liveness_lock.release)

    routes: list[Route | Mount] = [
        Route("/api", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        # Full /v1 paths of the Anthropic Messages API, before the /v1 mount that would answer 404.
        *routes_anthropic(lifecycle),
        # The Gemini API's /v1beta paths, and its POST /v1/models/{model}:method before the /v1 mount.
        *gemini_routes(lifecycle),
        # The research assistant's /v1/research paths, before the /v1 mount that would answer 404.
        Mount("/v1/research", routes=routes_research(lifecycle, research_runner)),
        Mount("/v1", routes=routes_v1(lifecycle)),
    ]
    routes.append(Mount("/admin/api", app=admin_app))
    # The dashboard answers every other path, so it comes last.
    routes.append(Mount("/", app=build_dashboard(services)))
    app = Starlette(
        routes=routes,
        exception_handlers={
            GlasskeyError: _glasskey_error,
            HTTPException: _http_error,
            **dict.fromkeys(OUTAGES, _outage),
        },
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    # Every successful admin or dashboard change is announced, so other processes' caches drop it.
    app.add_middleware(InvalidationMiddleware, invalidation=services.invalidation)
    app.state.services = services
    app.state.lifecycle = lifecycle
    return GatewayApp(app, lifecycle)


async def _probe_forever(services: Services) -> None:
    while True:
        await anyio.sleep(services.settings.probe_interval_seconds)
        try:
            await probe_idle_routes(services.db, services.health, services.providers)
        except Exception:  # a probe round must never stop the gateway
            log.exception("active probe round failed")


async def _resume_research_forever(runner: JobRunner, resume_now: asyncio.Event, every_seconds: float) -> None:
    """Resume the research jobs no live process runs: at start-up, in the background (readiness
    never waits for it), then every ``every_seconds`` (a heartbeat), for the jobs of processes found
    dead since (on PostgreSQL another host's, or this host's previous process once its three beats
    have lapsed) — and at once whenever ``resume_now`` is set (the liveness check found a process
    dead, on PostgreSQL). Each round takes up at most ``RESUME_ROUND_MAX`` jobs, each claimed
    atomically."""
    while True:
        # Cleared before the round: a death found while it runs sets it again, and the next
        # round follows at once, so no verdict is lost.
        resume_now.clear()
        try:
            resumed = await runner.resume_interrupted()
        except Exception:  # a failed round must never stop the gateway; the next beat tries again
            log.exception("resuming interrupted research jobs failed")
        else:
            if resumed:
                log.warning("resumed %d interrupted research jobs: %s", len(resumed), ", ".join(resumed))
        with anyio.move_on_after(every_seconds):
            await resume_now.wait()


async def _start_instance(services: Services) -> liveness.LivenessLock | None:
    """Register this process and void at once the holds of processes that died with requests in flight.

    On PostgreSQL, returns this process's liveness lock (held), which tells the others it is alive."""
    lock = liveness.LivenessLock(services.db, services.instance_id) if services.db.dialect != "sqlite" else None
    try:
        if lock is None:
            voided = await anyio.to_thread.run_sync(
                instances.start, services.db, services.instance_id, services.clock()
            )
        else:
            voided = await anyio.to_thread.run_sync(
                liveness.start, services.db, lock, services.instance_id, services.clock()
            )
    except Exception:  # the expiry sweep stays the fallback: never refuse to start for this
        log.exception("voiding the holds of dead gateway processes failed")
        return lock
    if voided:
        log.warning("voided %d holds of gateway processes that died mid-request (receipts: interrupted)", voided)
    return lock


async def _watch_liveness_forever(
    services: Services, lock: liveness.LivenessLock, resume_now: asyncio.Event | None
) -> None:
    """PostgreSQL: keep this process's lock held, and void the holds of processes whose lock is free.
    When it finds one dead and ``resume_now`` is given (automatic resume on), it wakes the resume
    round: the dead process's research jobs are claimable from that moment."""
    watch = liveness.Watch()
    while True:
        await anyio.sleep(liveness.CHECK_SECONDS)
        try:
            verdict = await anyio.to_thread.run_sync(
                liveness.check, services.db, lock, watch, services.instance_id, services.clock(), anyio.current_time()
            )
        except Exception:  # a failed check must never stop the gateway; heartbeats stay the fallback
            log.exception("liveness check failed")
            continue
        if verdict.voided:
            log.warning(
                "voided %d holds of gateway processes that died mid-request (receipts: interrupted)", verdict.voided
            )
        if verdict.dead and resume_now is not None:
            resume_now.set()


async def _beat_forever(services: Services) -> None:
    while True:
        await anyio.sleep(instances.HEARTBEAT_SECONDS)
        try:
            voided = await anyio.to_thread.run_sync(
                instances.heartbeat, services.db, services.instance_id, services.clock()
            )
        except Exception:  # a missed beat must never stop the gateway
            log.exception("instance heartbeat failed")
            continue
        if voided:
            log.warning("voided %d holds of gateway processes that died mid-request (receipts: interrupted)", voided)


async def _sweep_forever(services: Services) -> None:
    while True:
        await anyio.sleep(SWEEP_INTERVAL_SECONDS)

        def work() -> int:
            with services.db.write() as conn:
                return sweep_expired_holds(conn, services.clock())

        try:
            swept = await anyio.to_thread.run_sync(work)
        except Exception:  # the sweep must outlive a passing database error
            log.exception("hold expiry sweep failed")
            continue
        if swept:
            log.info("released %d expired holds", swept)
