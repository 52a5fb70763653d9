"""deploy/containers/entrypoint.py: the images' migrate-then-serve entrypoint."""

from __future__ import annotations

import importlib.util
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from quimbi_common.testing import unique

ROOT = Path(__file__).resolve().parents[2]
ADMIN_DSN = "postgresql://quimbi:quimbi@127.0.0.1:5432/postgres"


def load_entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "image_entrypoint", ROOT / "deploy" / "containers" / "entrypoint.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


entrypoint = load_entrypoint()


@pytest.mark.unit
def test_sqlalchemy_url_becomes_a_driver_free_dsn_for_asyncpg() -> None:
    url = "postgresql+asyncpg://quimbi:pw@postgres:5432/tickets"
    assert entrypoint.plain_dsn(url) == "postgresql://quimbi:pw@postgres:5432/tickets"
    assert entrypoint.with_database("postgresql://u:p@h:1/tickets?ssl=require", "postgres") == (
        "postgresql://u:p@h:1/postgres?ssl=require"
    )


@pytest.mark.unit
def test_migrate_without_migrations_is_a_no_op(monkeypatch) -> None:
    monkeypatch.delenv("MIGRATIONS_DIR", raising=False)
    assert entrypoint.main(["migrate"]) == 0


@pytest.mark.unit
def test_the_service_module_comes_from_the_image_s_service_name(monkeypatch) -> None:
    monkeypatch.delenv("SERVICE_MODULE", raising=False)
    monkeypatch.setenv("SERVICE", "ai-proxy")
    assert entrypoint.service_module() == "quimbi_ai_proxy"
    monkeypatch.setenv("SERVICE_MODULE", "quimbi_standin")
    assert entrypoint.service_module() == "quimbi_standin"
    monkeypatch.delenv("SERVICE_MODULE")
    monkeypatch.delenv("SERVICE")
    with pytest.raises(SystemExit, match="SERVICE"):
        entrypoint.service_module()


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.service
@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_healthcheck_exit_code_follows_the_readiness_endpoint(
    monkeypatch, status, exit_code
) -> None:
    # given a service answering /health/ready with `status` on a local port
    handler = type("Handler", (Health,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PORT", str(server.server_address[1]))
    try:
        # when the image's HEALTHCHECK runs, then its exit code says healthy or not
        assert entrypoint.healthcheck() == exit_code
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.service
def test_healthcheck_fails_when_nothing_listens(monkeypatch) -> None:
    monkeypatch.setenv("PORT", "1")
    assert entrypoint.healthcheck() == 1


@pytest.mark.service
async def test_replicas_starting_together_create_and_migrate_the_database_once(monkeypatch) -> None:
    # given a service database that does not exist yet (tickets' migrations)
    database = unique("entrypoint_")
    monkeypatch.setenv("MIGRATIONS_DIR", str(ROOT / "services" / "tickets" / "migrations"))
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/{database}"
    )
    monkeypatch.setenv("MIGRATE_WAIT_SECONDS", "10")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            entrypoint.run_migrations()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    try:
        # when three replicas run the entrypoint's migration step at once
        threads = [threading.Thread(target=start) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # then all succeed and the database is at one head revision
        assert not errors, errors
        conn = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}")
        try:
            versions = await conn.fetch("SELECT version_num FROM alembic_version")
            tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        finally:
            await conn.close()
        assert len(versions) == 1
        assert {"outbox", "processed_events"} <= tables
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
