"""Run the whole suite as supervised local processes: migrations, six services and the Quimbi
stand-in, demo data, and one clean stop on Ctrl-C.

    uv run python deploy/local/launcher.py              # what `make run` does
    uv run python deploy/local/launcher.py --no-seed --port-offset 10000 --namespace e2e1
    uv run python deploy/local/launcher.py --replicas agents=2 --replicas sla=2
    uv run python deploy/local/launcher.py --split --replicas scoring-consume=2

`--split` (`make run`) runs each service that has consumers as two processes,
`python -m quimbi_<name> serve` on its port and `... consume` (named `<name>-consume`, health
and metrics on its port + 1000); without it one process does both (the test suites).

Each service runs as `python -m quimbi_<name>` with its own environment; a process that exits
is restarted (with back-off); one that keeps crashing is reported with its last log lines and
the launcher exits 1. `--replicas name=N` runs N processes of a service (the extra ones
on its port + 50, + 100, …; same database and consumer group) and the gateway sends each
request to the next replica in turn. Logs go to `<log dir>/<service>.log` and, prefixed, to
the console (colours only on a terminal, never with NO_COLOR set; Kafka consumer-group chatter
stays in the log files). Ctrl-C at any point, migrations and seeding included, stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from demo_data import seed_demo_data  # noqa: E402

COLORS = ["\033[36m", "\033[32m", "\033[33m", "\033[35m", "\033[34m", "\033[31m", "\033[37m"]
RESET = "\033[0m"
BOLD = "\033[1m"
# This many exits in a row, each less than QUICK_EXIT_SECONDS after its start, is a crash loop.
CRASH_LOOP_EXITS = 5
QUICK_EXIT_SECONDS = 30.0
LAST_LOG_LINES = 20
# Consumer-group housekeeping aiokafka logs as warnings while groups (re)balance: normal, noisy.
GROUP_CHATTER = ("Heartbeat failed", "rebalanc", "Rebalanc", "group_coordinator")


def use_colour(stream: object = sys.stdout, env: Mapping[str, str] = os.environ) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return "NO_COLOR" not in env and bool(isatty and isatty())


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    """`["A=1", "B=x=y"]` → `{"A": "1", "B": "x=y"}`; ValueError naming the option otherwise."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


class CrashLoop(Exception):
    """A service kept exiting soon after it started."""

    def __init__(self, name: str, code: int, log_path: Path) -> None:
        super().__init__(f"{name} keeps crashing (exit code {code})")
        self.name = name
        self.code = code
        self.log_path = log_path

    def report(self, lines: int = LAST_LOG_LINES) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        shown = "\n".join(f"    {line}" for line in tail) or "    (no output)"
        return f"{self}; the last lines of {self.log_path}:\n{shown}"


@dataclass
class Service:
    name: str
    module: str
    port: int
    database: str | None
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    replica: int = 1  # 2, 3, …: another process of the same service (its database migrated once)
    role: str = ""  # "serve" or "consume" (`python -m <module> <role>`); "": both in one process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def migrations(self) -> Path | None:
        path = ROOT / "services" / self.service / "migrations"
        return path if self.database and self.replica == 1 and path.exists() else None

    @property
    def service(self) -> str:
        return self.name.split("#", 1)[0].removesuffix(CONSUME_SUFFIX)


@dataclass
class Options:
    port_offset: int = 0
    namespace: str = ""
    postgres_dsn: str = "postgresql://quimbi:quimbi@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    kafka: str = "127.0.0.1:9092"
    log_dir: Path = ROOT / ".local" / "logs"
    seed: bool = True
    echo_logs: bool = True
    ready_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    tracing: bool = False  # start Jaeger and export every service's traces to it
    watch_infra: bool = False  # `make run`: restart a crashed PostgreSQL, Redis or Kafka
    replicas: dict[str, int] = field(default_factory=dict)
    split: bool = False  # serve and consume as separate processes (`make run`)
    pycache: Path | None = field(default_factory=lambda: bytecode_cache(os.environ))


REPLICA_PORT_STEP = 50
CONSUME_SUFFIX = "-consume"
CONSUME_PORT_STEP = 1000  # the services' own default CONSUME_PORT: PORT + 1000
WITH_CONSUMERS = ("tickets", "agents", "sla", "scoring", "ai-proxy")


def bytecode_cache(env: Mapping[str, str]) -> Path | None:
    """Where the services keep their compiled bytecode when the environment forbids writing it
    (PYTHONDONTWRITEBYTECODE, as some shells and CI set): else every start compiles every
    library again, about half of a service's start-up CPU. None: Python's own caching."""
    if "PYTHONDONTWRITEBYTECODE" not in env or env.get("PYTHONPYCACHEPREFIX"):
        return None
    return ROOT / ".local" / "pycache"


async def _at_head(migrations: Path, database_url: str) -> bool:
    """Whether the database is at its migrations' head already (a warm start skips Alembic:
    starting it and reading every revision costs more than the query)."""
    from quimbi_common.migrations import script_heads

    heads = script_heads(migrations)
    if not heads:
        return False
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
            return False
        current = {row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()
    return current == heads


def build_services(opts: Options) -> list[Service]:
    off = opts.port_offset
    ns = opts.namespace
    services = [
        Service("standin", "quimbi_standin", 8199 + off, None),
        Service("agents", "quimbi_agents", 8102 + off, f"agents{ns}"),
        Service("tickets", "quimbi_tickets", 8101 + off, f"tickets{ns}"),
        Service("sla", "quimbi_sla", 8103 + off, f"sla{ns}"),
        Service("scoring", "quimbi_scoring", 8104 + off, f"scoring{ns}"),
        Service("ai-proxy", "quimbi_ai_proxy", 8105 + off, f"ai_proxy{ns}"),
        Service("gateway", "quimbi_gateway", 8001 + off, None),
    ]
    if opts.split:
        for service in [s for s in services if s.name in WITH_CONSUMERS]:
            service.role = "serve"
            services.append(
                Service(
                    service.name + CONSUME_SUFFIX,
                    service.module,
                    service.port + CONSUME_PORT_STEP,
                    service.database,
                    role="consume",
                )
            )
    for name, count in opts.replicas.items():
        found = [s for s in services if s.name == name]
        if not found:
            raise SystemExit(f"--replicas {name}: no such process (with --split: <name>-consume)")
        first = found[0]
        services += [
            Service(
                f"{name}#{n}",
                first.module,
                first.port + REPLICA_PORT_STEP * (n - 1),
                first.database,
                replica=n,
                role=first.role,
            )
            for n in range(2, count + 1)
        ]
    by_name = {s.name: s for s in services}

    def urls(name: str) -> str:
        """The service's replicas, comma-separated (the gateway takes turns)."""
        return ",".join(s.url for s in services if s.service == name and s.role != "consume")

    pg_base = opts.postgres_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    shared = {
        "ENVIRONMENT": "development",
        "REDIS_URL": opts.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": opts.kafka,
        "KAFKA_TOPIC_PREFIX": f"{ns}." if ns else "",
        "JWKS_URL": f"{by_name['agents'].url}/.well-known/jwks.json",
        "TICKETS_URL": by_name["tickets"].url,
        "AGENTS_URL": by_name["agents"].url,
        "SLA_URL": by_name["sla"].url,
        "SCORING_URL": by_name["scoring"].url,
        "AI_PROXY_URL": by_name["ai-proxy"].url,
        "QUIMBI_BASE_URL": by_name["standin"].url,
        "LOG_JSON": "true",
        "AUTO_ASSIGN": "true",  # the demo team is online with specializations: route new tickets
        "PYTHONUNBUFFERED": "1",
        **opts.extra_env,
    }
    for service in services:
        service.env = {**shared, "PORT": str(service.port), "HOST": "127.0.0.1"}
        if service.role == "consume":  # its health and metrics; PORT stays its API's
            service.env["PORT"] = str(service.port - CONSUME_PORT_STEP)
            service.env["CONSUME_PORT"] = str(service.port)
        if service.name == "standin":
            service.env.update({"STANDIN_PORT": str(service.port), "STANDIN_HOST": "127.0.0.1"})
        if service.database:
            service.env["DATABASE_URL"] = f"{pg_base}/{service.database}"
        if service.service == "tickets":  # attachments on disk, per suite, shared by replicas
            service.env.setdefault("ATTACHMENTS_DIR", str(ROOT / ".local" / f"attachments{ns}"))
        if service.name == "gateway":
            for name in ("tickets", "agents", "sla", "scoring", "ai-proxy"):
                service.env[f"{name.upper().replace('-', '_')}_URL"] = urls(name)
    return services


class Suite:
    """Starts, supervises and stops the services."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.services = build_services(opts)
        self.stopping = False
        self._supervisors: list[asyncio.Task[None]] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self.colour = use_colour()
        self.crashed: asyncio.Future[CrashLoop] | None = None
        opts.log_dir.mkdir(parents=True, exist_ok=True)

    def say(self, message: str) -> None:
        label = f"{BOLD}[suite]{RESET}" if self.colour else "[suite]"
        print(f"{label} {message}", flush=True)

    async def prepare_databases(self) -> None:
        try:
            conn = await asyncpg.connect(self.opts.postgres_dsn, timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            where = self.opts.postgres_dsn.rsplit("@", 1)[-1]
            raise SystemExit(
                f"PostgreSQL at {where} (--postgres-dsn) is unreachable: "
                f"{exc or type(exc).__name__}"
            ) from None
        try:
            existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
            wanted = dict.fromkeys(s.database for s in self.services if s.database)
            for database in wanted:
                if database not in existing:
                    await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        from quimbi_common.migrations import upgrade

        migrated: set[Path] = set()
        for service in self.services:  # one at a time: Alembic's context is process-global
            if service.migrations and service.migrations not in migrated:
                migrated.add(service.migrations)
                if not await _at_head(service.migrations, service.env["DATABASE_URL"]):
                    self.say(f"migrating {service.database}")
                    await asyncio.to_thread(
                        upgrade, service.migrations, service.env["DATABASE_URL"]
                    )

    async def _spawn(self, service: Service, color: str) -> asyncio.subprocess.Process:
        env = {**os.environ, **service.env}
        if self.opts.pycache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.opts.pycache)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            service.module,
            *([service.role] if service.role else []),
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._pumps.add(pump := asyncio.create_task(self._pump(service, process, color)))
        pump.add_done_callback(self._pumps.discard)
        return process

    async def _pump(
        self, service: Service, process: asyncio.subprocess.Process, color: str
    ) -> None:
        assert process.stdout is not None
        log_path = self._log_path(service)
        with log_path.open("ab") as log:
            async for line in process.stdout:
                log.write(line)
                log.flush()
                if self.opts.echo_logs:
                    text = _readable(line.decode(errors="replace").rstrip())
                    if text:
                        name = f"{service.name:>9}"
                        if self.colour:
                            name = f"{color}{name}{RESET}"
                        print(f"{name} | {text}", flush=True)

    async def _supervise(self, service: Service, color: str) -> None:
        backoff = 1.0
        quick_exits = 0
        while not self.stopping:
            started = time.monotonic()
            service.process = await self._spawn(service, color)
            code = await service.process.wait()
            if self.stopping:
                return
            service.restarts += 1
            if time.monotonic() - started > QUICK_EXIT_SECONDS:
                backoff, quick_exits = 1.0, 0
            quick_exits += 1
            if quick_exits >= CRASH_LOOP_EXITS:
                self._crash_loop(CrashLoop(service.name, code, self._log_path(service)))
                return
            self.say(f"{service.name} exited with {code}; restarting in {backoff:.0f}s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def _log_path(self, service: Service) -> Path:
        return self.opts.log_dir / f"{service.name}.log"

    def _crash_loop(self, crash: CrashLoop) -> None:
        if self.crashed is None:
            self.crashed = asyncio.get_running_loop().create_future()
        if not self.crashed.done():
            self.crashed.set_result(crash)

    def crash_future(self) -> asyncio.Future[CrashLoop]:
        """Resolves when a service crash-loops (the caller reports it and stops the suite)."""
        if self.crashed is None:
            self.crashed = asyncio.get_running_loop().create_future()
        return self.crashed

    def check_ports(self) -> None:
        """Fail clearly when a port is taken (often: the suite is already running)."""
        taken = []
        for service in self.services:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", service.port)) == 0:
                    taken.append(f"{service.name} :{service.port}")
        if taken:
            raise SystemExit(f"ports in use ({', '.join(taken)}): is the suite already running?")

    async def start(self) -> None:
        self.check_ports()  # again: something may have taken a port during the migrations
        for i, service in enumerate(self.services):
            self._supervisors.append(
                asyncio.create_task(self._supervise(service, COLORS[i % len(COLORS)]))
            )

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {s.name: s for s in self.services}
        async with httpx.AsyncClient(timeout=2.0) as client:
            while pending:
                for name, service in list(pending.items()):
                    with contextlib.suppress(httpx.HTTPError):
                        response = await client.get(f"{service.url}/health/ready")
                        if response.status_code == 200:
                            del pending[name]
                            self.say(f"{name} ready on {service.url}")
                if pending and time.monotonic() > deadline:
                    raise SystemExit(
                        f"not ready after {timeout:.0f}s: {', '.join(pending)} "
                        f"(see {self.opts.log_dir}/<service>.log)"
                    )
                await asyncio.sleep(0.3)

    async def restart(self, name: str) -> None:
        """Kill one service; its supervisor starts it again (the e2e suite uses this)."""
        service = next(s for s in self.services if s.name == name)
        if service.process and service.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        self.stopping = True
        for service in self.services:
            if service.process and service.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGTERM)
        for service in self.services:
            if service.process and service.process.returncode is None:
                try:
                    await asyncio.wait_for(service.process.wait(), timeout=10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(service.process.pid, signal.SIGKILL)
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)

    @property
    def gateway_url(self) -> str:
        return next(s.url for s in self.services if s.name == "gateway")


class InfraWatch:
    """Notices a crashed PostgreSQL, Redis or Kafka and runs `infra.sh start` (which starts
    what is down and leaves the rest alone). A port closed on two checks in a row counts."""

    def __init__(
        self,
        ports: dict[str, int],
        say: Callable[[str], None],
        *,
        env: dict[str, str] | None = None,
        interval: float = 2.0,
    ) -> None:
        self.ports = ports
        self.say = say
        self.env = env
        self.interval = interval
        self.restarts = 0

    @classmethod
    def for_options(cls, opts: Options, say: Callable[[str], None]) -> InfraWatch:
        ports = {
            "postgres": _port(opts.postgres_dsn.split("@", 1)[-1], 5432),
            "redis": _port(opts.redis_url.split("//", 1)[-1], 6379),
            "kafka": _port(opts.kafka.split(",", 1)[0], 9092),
        }
        env = {
            **os.environ,
            "PG_PORT": str(ports["postgres"]),
            "REDIS_PORT": str(ports["redis"]),
            "KAFKA_PORT": str(ports["kafka"]),
        }
        return cls(ports, say, env=env)

    async def run(self) -> None:
        down_before: set[str] = set()
        while True:
            await asyncio.sleep(self.interval)
            down = {name for name, port in self.ports.items() if not await _port_open(port)}
            crashed = down & down_before
            down_before = down
            if not crashed:
                continue
            self.say(f"{', '.join(sorted(crashed))} down; starting it again (infra.sh start)")
            process = await asyncio.create_subprocess_exec(
                str(ROOT / "deploy" / "local" / "infra.sh"),
                "start",
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            code = await process.wait()
            self.restarts += 1
            self.say(f"infra.sh start exited with {code}")
            down_before = set()


def _port(host_port: str, default: int) -> int:
    tail = host_port.split("/", 1)[0].rsplit(":", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else default


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _readable(line: str) -> str:
    """Console form of a JSON log line: level and message; warnings and errors always shown."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict):
        return line
    level = entry.get("level", "")
    message = entry.get("message", "")
    said = f"{entry.get('logger', '')} {message}"
    if level == "WARNING" and any(chatter in said for chatter in GROUP_CHATTER):
        return ""  # consumer-group housekeeping: in the log file only
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return f"{level} {message}" + (f"\n{entry['exception']}" if entry.get("exception") else "")
    return f"{message}" if level == "INFO" else ""


async def run(opts: Options) -> int:
    """Run the suite until Ctrl-C (0) or a crash-looping service (1)."""
    started = time.monotonic()
    viewer = None
    if opts.tracing:
        from trace_viewer import OTLP_ENDPOINT, start_jaeger

        viewer = await start_jaeger(opts.log_dir)
        opts.extra_env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_ENDPOINT)
    suite = Suite(opts)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    suite.check_ports()  # before migrating: a taken port is the usual "already running"
    watch = None

    async def bring_up() -> None:
        nonlocal watch
        suite.say("migrating databases")
        await suite.prepare_databases()
        suite.say("starting services")
        await suite.start()
        if opts.watch_infra:
            watch = asyncio.create_task(InfraWatch.for_options(opts, suite.say).run())
        await suite.wait_ready()
        suite.say(f"all services ready in {time.monotonic() - started:.1f}s")
        logins: list[tuple[str, str, str]] = []
        if opts.seed:
            suite.say("seeding demo data through the API")
            logins = await seed_demo_data(suite.gateway_url, say=suite.say)
        if opts.ready_file:
            opts.ready_file.write_text(json.dumps({"gateway": suite.gateway_url}))
        _banner(suite, logins, time.monotonic() - started)
        await stop.wait()

    main = asyncio.create_task(bring_up())
    stopped = asyncio.create_task(stop.wait())
    crashed = suite.crash_future()
    try:
        waiting: set[asyncio.Future[Any]] = {main, stopped, crashed}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if crashed.done():
            print(crashed.result().report(), file=sys.stderr, flush=True)
            return 1
        if main.done():
            main.result()  # a SystemExit from start-up surfaces here
        return 0
    finally:
        for task in (main, stopped):
            task.cancel()
        await asyncio.gather(main, stopped, return_exceptions=True)
        suite.say("stopping")
        if watch is not None:
            watch.cancel()
        await suite.stop()
        if viewer is not None:
            viewer.terminate()
            await viewer.wait()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _banner(suite: Suite, logins: list[tuple[str, str, str]], seconds: float) -> None:
    print()
    print(f"  Quimbi Support Backend is up ({seconds:.1f}s)")
    print(f"  API      {suite.gateway_url}")
    print(f"  Swagger  {suite.gateway_url}/docs")
    print(f"  Live     {suite.gateway_url}/live  (the smart inbox, updating live)")
    if suite.opts.tracing:
        from trace_viewer import UI_URL

        print(f"  Traces   {UI_URL}  (Jaeger)")
    if logins:
        print("  Logins:")
        for role, email, password in logins:
            print(f"    {role:<13} {email:<32} {password}")
    print("  Ctrl-C stops everything.")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-seed", dest="seed", action="store_false")
    parser.add_argument("--port-offset", type=int, default=0)
    parser.add_argument("--namespace", default="", help="suffix for databases, prefix for topics")
    parser.add_argument("--postgres-dsn", default=Options.postgres_dsn)
    parser.add_argument("--redis-url", default=Options.redis_url)
    parser.add_argument("--kafka", default=Options.kafka)
    parser.add_argument("--log-dir", type=Path, default=Options.log_dir)
    parser.add_argument("--quiet", dest="echo_logs", action="store_false")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--tracing", action="store_true", help="start Jaeger, export traces")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every service")
    parser.add_argument(
        "--replicas", action="append", default=[], help="SERVICE=N processes of a service"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="each service with consumers as a serve and a consume process (make run)",
    )
    parser.add_argument(
        "--no-infra-watch",
        dest="watch_infra",
        action="store_false",
        help="do not restart a crashed PostgreSQL, Redis or Kafka",
    )
    args = parser.parse_args()
    try:
        extra = parse_pairs(args.env, "--env")
        replicas = {k: int(v) for k, v in parse_pairs(args.replicas, "--replicas").items()}
    except ValueError as exc:
        parser.error(str(exc).replace("invalid literal for int() with base 10", "--replicas N"))
    opts = Options(
        port_offset=args.port_offset,
        namespace=args.namespace,
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        kafka=args.kafka,
        log_dir=args.log_dir,
        seed=args.seed,
        echo_logs=args.echo_logs,
        ready_file=args.ready_file,
        extra_env=extra,
        tracing=args.tracing,
        replicas=replicas,
        split=args.split,
        watch_infra=args.watch_infra,
    )
    sys.exit(asyncio.run(run(opts)))


if __name__ == "__main__":
    main()
