"""A service's runtime (database, Redis, Kafka, auth, background work) and its FastAPI app.

`main.py` of every service builds one `Runtime`, registers handlers and background tasks on
it, and calls `create_app`. The app's lifespan starts and stops everything in one place.

A process has a role (`settings.process_role`, from `python -m quimbi_<service> serve|consume`):
"serve" answers the API and holds no Kafka connection (its writes wait in the outbox), "consume"
runs the consumer, the outbox relay and the jobs and answers only health and metrics, "all"
does both. So HTTP and consumers scale apart and a burst of one never starves the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import redis.asyncio as aioredis
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncSession

from . import consistency
from .auth import AuthConfig, KeySet, RevocationStore, TokenVerifier, key_set_from_settings
from .backoff import Backoff
from .catchup import ProjectionWatch
from .consumer import EventConsumer
from .db import create_engine, create_sessionmaker
from .docs import install_docs
from .errors import install_problem_handlers
from .health import Check, Degraded, health_router
from .kafka import create_broker, ensure_topics
from .observability import configure_logging, metrics_router
from .openapi import install_truthful_openapi
from .outbox import OutboxRelay
from .request_layer import RequestLayer
from .settings import CommonSettings
from .tracing import TracingMiddleware, configure_tracing, fastapi_telemetry, instrument_engine
from .tracing import enabled as tracing_enabled
from .tracing import shutdown as flush_traces
from .uow import UnitsOfWork

log = logging.getLogger(__name__)
BackgroundTask = Callable[[], Awaitable[None]]
_KAFKA_FRESH_SECONDS = 2.0  # a readiness check trusts a ping this recent; the ping's timeout
_READY_PING_SECONDS = 1.0  # a readiness check's own ping: well inside the check's 2 s
T = TypeVar("T")
SettingsT = TypeVar("SettingsT", bound=CommonSettings)


class Runtime:
    """Everything a service holds open while it runs."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        database: bool = True,
        kafka: bool = True,
        keys: KeySet | None = None,
    ) -> None:
        self.settings = settings
        configure_tracing(settings.service_name)  # only if an exporter is configured
        self.engine = create_engine(settings) if database else None
        if self.engine is not None:
            instrument_engine(self.engine)
        self.sessions = create_sessionmaker(self.engine) if self.engine else None
        # how routes and jobs write (the consumer opens its own per batch): events carry the
        # service's name as their source
        self.units = UnitsOfWork(self.sessions, settings.service_name) if self.sessions else None
        self.redis = aioredis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self.revocations = RevocationStore(self.redis)
        self.verifier = TokenVerifier(
            keys or key_set_from_settings(settings, self.redis),
            self.revocations,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        self.broker = create_broker(settings) if kafka else None
        self.consumer = (
            EventConsumer(self.broker, self.sessions, settings, group_id=settings.consumer_group)
            if self.broker is not None and self.sessions is not None
            else None
        )
        self.relay = OutboxRelay(self.engine, settings) if self.engine and kafka else None
        self.role = settings.process_role
        self.background: list[BackgroundTask] = []  # run in every role
        self._with_api: list[BackgroundTask] = []
        self._with_consumers: list[BackgroundTask] = []
        if self.broker is not None:
            self._with_consumers.append(self.watch_kafka)
        self.on_startup: list[BackgroundTask] = []
        self.on_shutdown: list[BackgroundTask] = []
        self.checks: dict[str, Check] = {}
        self.kafka_connected = False
        self._projections: ProjectionWatch | None = None
        self.kafka_lost_since: float | None = None
        self._kafka_pinged = 0.0  # monotonic time of the last answered or failed ping
        self._kafka_reminded = 0.0
        self._kafka_ping = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._provided: list[object] = [settings]

    @property
    def serves(self) -> bool:
        """Whether this process answers the API (roles "serve" and "all")."""
        return self.role != "consume"

    @property
    def consumes(self) -> bool:
        """Whether this process connects to Kafka: consumer, outbox relay, jobs ("consume",
        "all")."""
        return self.role != "serve"

    def alongside_api(self, task: BackgroundTask) -> None:
        """A loop that serves the API's requests (a per-process hub, a LISTEN for waits):
        run only where the API is served."""
        self._with_api.append(task)

    def alongside_consumers(self, task: BackgroundTask) -> None:
        """A job (timers, sweeps, a Kafka feed): run only where the consumers run, so as many
        run as consume replicas, however many HTTP replicas serve."""
        self._with_consumers.append(task)

    def provide(self, value: object) -> None:
        """Make `value` (a service's state: its keys, clients, ...) reachable from routes as
        `Annotated[Kind, Depends(provided(Kind))]`; the settings are provided already."""
        self._provided.append(value)

    def provided(self, kind: type[T]) -> T:
        for value in self._provided:
            if isinstance(value, kind):
                return value
        raise LookupError(f"nothing of type {kind.__name__} was provided to the runtime")

    @property
    def events(self) -> EventConsumer:
        assert self.consumer is not None, "this runtime has no database or no Kafka"
        return self.consumer

    def watch_projections(self) -> ProjectionWatch:
        """Enable read-your-writes waits on this service's projections (see `catchup`): call it
        in `build_app`, so only services that wait hold the LISTEN connection."""
        if self._projections is None:
            assert self.engine is not None, "this runtime has no database"
            self._projections = ProjectionWatch(
                self.settings.database_url,
                bound_seconds=self.settings.read_your_writes_wait_seconds,
                new_id_seconds=self.settings.read_your_writes_new_id_seconds,
            )
            self.alongside_api(self._projections.run)
        return self._projections

    @property
    def watches_projections(self) -> bool:
        return self._projections is not None

    @property
    def projections(self) -> ProjectionWatch:
        assert self._projections is not None, "call runtime.watch_projections() in build_app"
        return self._projections

    async def _check_database(self) -> None:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def _check_redis(self) -> None:
        await self.redis.ping()

    async def _check_kafka(self) -> bool:
        """Not ready until Kafka was first reached; afterwards a lost broker is "degraded".
        Asked, it pings the broker unless a ping answered in the last `_KAFKA_FRESH` seconds
        (the background ping is slow while the broker is up: idle processes cost less)."""
        if not self.kafka_connected:
            return False
        stale = time.monotonic() - self._kafka_pinged > _KAFKA_FRESH_SECONDS
        if stale and not self._kafka_ping.locked():  # one in flight: its answer is coming
            async with self._kafka_ping:
                await self._ping_kafka(timeout=_READY_PING_SECONDS)
        if self.kafka_lost_since is not None:
            raise Degraded("kafka broker unreachable; events wait in the outbox")
        return True

    async def watch_kafka(self) -> None:
        """Ping the broker every `kafka_ping_interval_seconds` while it answers, every 2 s
        while it does not (to say soon that it is back); readiness checks ping in between."""
        while True:
            lost = self.kafka_lost_since is not None
            interval = _KAFKA_FRESH_SECONDS if lost else self.settings.kafka_ping_interval_seconds
            wait = self._kafka_pinged + interval - time.monotonic()
            if wait > 0 or not self.kafka_connected:
                await asyncio.sleep(wait if wait > 0 else _KAFKA_FRESH_SECONDS)
                continue
            async with self._kafka_ping:
                await self._ping_kafka()

    async def _ping_kafka(
        self, timeout: float = _KAFKA_FRESH_SECONDS, remind_every: float = 60.0
    ) -> None:
        """Say once that the broker is lost, once that it is back, and remind in between."""
        assert self.broker is not None
        up = await self.broker.ping(timeout=timeout)
        now = self._kafka_pinged = time.monotonic()
        if not up and self.kafka_lost_since is None:
            self.kafka_lost_since = self._kafka_reminded = now
            log.warning(
                "kafka broker lost (%s); serving on, events wait in the outbox",
                self.settings.kafka_bootstrap_servers,
            )
        elif (
            not up
            and self.kafka_lost_since is not None
            and now - self._kafka_reminded >= remind_every
        ):
            self._kafka_reminded = now
            log.warning("kafka broker still unreachable after %.0f s", now - self.kafka_lost_since)
        elif up and self.kafka_lost_since is not None:
            log.info("kafka broker back after %.1f s", now - self.kafka_lost_since)
            self.kafka_lost_since = None

    def readiness_checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"redis": self._check_redis}
        if self.engine is not None:
            checks["database"] = self._check_database
        if self.broker is not None and self.consumes:
            checks["kafka"] = self._check_kafka
        return {**checks, **self.checks}

    async def _connect_kafka(self) -> None:
        """Start consuming once Kafka answers; the API serves (and the outbox fills) meanwhile."""
        assert self.broker is not None
        backoff = self.settings.backoff()
        while not self._stopping:
            try:
                await ensure_topics(self.settings)
                await self.broker.start()
                if self._stopping:  # a client library swallowed our cancellation
                    return
                self.kafka_connected = True
                log.info("connected to kafka at %s", self.settings.kafka_bootstrap_servers)
                if self.consumer is not None:  # one group member for all the service's topics
                    consume = asyncio.create_task(_supervised(self.consumer.run), name="consumer")
                    self._tasks.append(consume)
                return
            except Exception as exc:
                log.warning("kafka not available (%s); retrying in %.1fs", exc, backoff.delay)
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                await backoff.sleep()

    async def start(self) -> None:
        for hook in self.on_startup:
            await _retrying(hook, self.settings.backoff(), give_up_after=60.0)
        tasks = list(self.background)
        if self.serves:
            tasks += self._with_api
        if self.consumes:
            tasks += self._with_consumers
            if self.broker is not None:
                connect = asyncio.create_task(self._connect_kafka(), name="kafka-connect")
                self._tasks.append(connect)
            if self.relay is not None:  # one publishes at a time, however many run (its lock)
                self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        for task in tasks:
            self._tasks.append(asyncio.create_task(_supervised(task), name=task.__name__))

    async def stop(self) -> None:
        self._stopping = True
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown step %s failed", hook.__name__)
        while self._tasks:  # again for a task started while the others stopped
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        self.kafka_connected = False
        await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()
        flush_traces()


async def _retrying(hook: BackgroundTask, backoff: Backoff, give_up_after: float) -> None:
    """Run a start-up hook, retrying while what it needs (say, the database) is not up yet."""
    deadline = asyncio.get_running_loop().time() + give_up_after
    while True:
        try:
            await hook()
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() + backoff.delay > deadline:
                raise
            log.warning("start-up step %s failed (%s); retrying", hook.__name__, exc)
            await backoff.sleep()


async def _supervised(task: BackgroundTask) -> None:
    """Run a background loop forever, restarting it after an unexpected error."""
    while True:
        try:
            await task()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; restarting in 1 s", task.__name__)
            await asyncio.sleep(1.0)


def create_app(
    runtime: Runtime,
    *,
    title: str,
    description: str = "",
    routers: Sequence[APIRouter] = (),
    cors: bool = False,
) -> FastAPI:
    """The service's FastAPI app: problem+json errors, request ids, health, metrics, lifespan."""
    settings = runtime.settings
    configure_logging(settings.service_name, settings.log_level, as_json=settings.log_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=fastapi_telemetry(),  # type: ignore[arg-type]
    )
    app.state.runtime = runtime
    waits = runtime.engine is not None  # writes (outbox) or projections: tokens out, waits in
    app.state.auth = AuthConfig(
        runtime.verifier,
        settings.api_key.get_secret_value(),
        authenticated=consistency.catch_up if waits else None,
    )
    install_problem_handlers(app)
    install_truthful_openapi(app)
    # request id, NUL guard (its 422 carries the request id), consistency tokens and metrics
    app.add_middleware(RequestLayer, service=settings.service_name, tokens=waits)
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins_list,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                consistency.HEADER,
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
        )
    if tracing_enabled():  # outermost: the span covers the request's whole handling
        app.add_middleware(TracingMiddleware)
    if runtime.serves:  # a consume process answers health and metrics only
        # first: the router tries routes in order, and nearly every request is the service's
        # (each route tried before the matching one cost ~3 µs: bench/middleware_overhead.py)
        for router in routers:
            app.include_router(router)
    app.include_router(health_router(settings.service_name, runtime.readiness_checks()))
    app.include_router(metrics_router)
    if runtime.serves:
        install_docs(app, title=title)
    return app


async def get_runtime(request: Request) -> Runtime:
    """Async on purpose: a plain `def` dependency would run in a worker thread per request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request for reads; writes go through a unit of work (`UnitsDep`)."""
    sessions = (await get_runtime(request)).sessions
    assert sessions is not None
    async with sessions() as session:
        yield session


async def get_units(request: Request) -> UnitsOfWork:
    """Where a route's writes go: `await units.run(lambda unit: service.do(unit, ...))`."""
    units = (await get_runtime(request)).units
    if units is None:
        raise RuntimeError("this runtime has no database")
    return units


def provided(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """An async dependency for what the service gave `Runtime.provide` (or its settings):
    one way for every route to reach settings and state, without a worker thread."""

    async def dependency(request: Request) -> T:
        return (await get_runtime(request)).provided(kind)

    dependency.__name__ = f"provided_{kind.__name__}"
    return dependency


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
UnitsDep = Annotated[UnitsOfWork, Depends(get_units)]


def json_safe(value: Any) -> Any:
    """Helper for `changes` payloads: enums and datetimes as JSON values."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value


def forwarded_header_options(settings: CommonSettings) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-*: believed only from the peers the settings name, so
    a caller cannot choose the address that rate limits and login throttling count it under."""
    trusted = settings.forwarded_allow_ips.strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or ""}


def serve(factory: Callable[[], FastAPI], settings: CommonSettings) -> None:
    """Run a service's app under uvicorn (what `python -m quimbi_<service>` does)."""
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.listen_port,
        log_config=None,
        access_log=False,
        **forwarded_header_options(settings),
    )


ROLES = ("serve", "consume")


def main(
    factory: Callable[[SettingsT], FastAPI],
    settings: SettingsT,
    migrations: Path | None,
    *,
    consumes: bool = True,
) -> None:
    """What `python -m quimbi_<service> [serve|consume|migrate]` does: with no argument the
    API and the consumers in one process; `serve` the API only, `consume` the consumers, the
    outbox relay and the jobs only (health and metrics on `settings.listen_port`); `migrate`
    upgrades the database."""
    command = sys.argv[1:2]
    if command == ["migrate"]:
        if migrations is None:
            raise SystemExit(f"{settings.service_name} has no database to migrate")
        from .migrations import upgrade

        upgrade(migrations, settings.database_url)
        return
    if command and (command[0] not in ROLES or (command[0] == "consume" and not consumes)):
        offered = (
            ["serve"] + (["consume"] if consumes else []) + (["migrate"] if migrations else [])
        )
        raise SystemExit(
            f"{settings.service_name}: unknown command {command[0]!r} (one of: "
            f"{', '.join(offered)}{'; none: both in one process' if consumes else ''})"
        )
    if command:
        settings = settings.model_copy(update={"process_role": command[0]})
    serve(lambda: factory(settings), settings)
