"""The entrypoint of every service image: migrate the service's database, then become the service.

    entrypoint.py serve        migrate (unless MIGRATE_ON_START=false), then exec the service
    entrypoint.py migrate      only migrate: a Kubernetes init container, a one-shot job
    entrypoint.py healthcheck  exit 0 when http://127.0.0.1:$PORT/health/ready answers 200
    entrypoint.py CMD ...      exec CMD (a shell, a one-off script)

Set by the image: SERVICE (`tickets`, so the module is `quimbi_tickets` unless SERVICE_MODULE
says otherwise), MIGRATIONS_DIR (a missing folder: a service without a database). Migrations
wait for PostgreSQL (MIGRATE_WAIT_SECONDS, 60 by default),
create the service's database when it is missing and the role may, and hold an advisory lock, so
replicas starting together migrate once. Standard library only, apart from asyncpg and
quimbi_common when migrating.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MIGRATION_LOCK_NAMESPACE = 0x51B1  # "QuimBi": keeps our advisory lock ids apart from others'


def say(message: str) -> None:
    print(f"[entrypoint] {message}", file=sys.stderr, flush=True)


def plain_dsn(database_url: str) -> str:
    """asyncpg takes `postgresql://`, SQLAlchemy's `postgresql+asyncpg://` names the driver."""
    scheme, rest = database_url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def connect_when_up(dsn: str, wait_seconds: float) -> Any:
    import asyncpg

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=5)
        except asyncpg.InvalidCatalogNameError:
            raise
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"PostgreSQL did not answer within {wait_seconds:.0f}s: {exc}"
                ) from exc
            await asyncio.sleep(1.0)


async def ensure_database(dsn: str, wait_seconds: float) -> None:
    """Create the service's database if it is missing (the postgres init script usually has)."""
    import asyncpg

    try:
        conn = await connect_when_up(dsn, wait_seconds)
    except asyncpg.InvalidCatalogNameError:
        database = urlsplit(dsn).path.lstrip("/")
        admin = await connect_when_up(with_database(dsn, "postgres"), wait_seconds)
        try:
            await admin.execute(f'CREATE DATABASE "{database}"')
            say(f"created database {database}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another replica created it first
        finally:
            await admin.close()
    else:
        await conn.close()


async def migrate(migrations_dir: Path, database_url: str, wait_seconds: float) -> None:
    from quimbi_common.migrations import upgrade

    dsn = plain_dsn(database_url)
    await ensure_database(dsn, wait_seconds)
    lock = await connect_when_up(dsn, wait_seconds)
    key = zlib.crc32(str(migrations_dir).encode()) & 0x7FFFFFFF  # PostgreSQL takes an int4
    try:
        await lock.execute("SELECT pg_advisory_lock($1, $2)", MIGRATION_LOCK_NAMESPACE, key)
        started = time.monotonic()
        await asyncio.to_thread(upgrade, migrations_dir, database_url)
        say(f"migrated {urlsplit(dsn).path.lstrip('/')} in {time.monotonic() - started:.1f}s")
    finally:
        await lock.close()  # closing the session releases the advisory lock


def run_migrations() -> None:
    directory = os.environ.get("MIGRATIONS_DIR", "")
    if not directory or not Path(directory).is_dir():
        say("no migrations for this service")
        return
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("DATABASE_URL is not set: cannot migrate")
    wait_seconds = float(os.environ.get("MIGRATE_WAIT_SECONDS", "60"))
    asyncio.run(migrate(Path(directory), database_url, wait_seconds))


def service_module() -> str:
    """SERVICE_MODULE, else `quimbi_<SERVICE>` (the one Dockerfile sets SERVICE, a build arg)."""
    module = os.environ.get("SERVICE_MODULE") or os.environ.get("SERVICE", "")
    if not module:
        raise SystemExit("neither SERVICE_MODULE nor SERVICE is set: which service is this image?")
    return module if module.startswith("quimbi_") else "quimbi_" + module.replace("-", "_")


def healthcheck() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command == "healthcheck":
        return healthcheck()
    if command == "migrate":
        run_migrations()
        return 0
    if command == "serve":
        if os.environ.get("MIGRATE_ON_START", "true").lower() not in ("0", "false", "no"):
            run_migrations()
        module = service_module()
        os.execvp(sys.executable, [sys.executable, "-m", module, *argv[1:]])  # noqa: S606
    os.execvp(argv[0], argv)  # noqa: S606 - an explicit command, as `docker run IMAGE CMD`
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
