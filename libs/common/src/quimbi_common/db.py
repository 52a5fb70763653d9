"""Database engines and sessions (SQLAlchemy 2 async + asyncpg)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .settings import CommonSettings


def create_engine(settings: CommonSettings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=settings.database_pool_pre_ping,
        pool_recycle=1800,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def asyncpg_dsn(database_url: str) -> str:
    """The plain DSN asyncpg understands, from a SQLAlchemy URL."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


_OUTAGE_ERRORS = (
    OperationalError,  # connection refused, server closed the connection, starting up
    InterfaceError,  # a connection that died under the pool
    PoolTimeoutError,  # every pooled connection busy for pool_timeout
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # "the database system is starting up / shutting down"
    asyncpg.exceptions.AdminShutdownError,  # pg_ctl stop -m fast/immediate under a session
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.InterfaceError,
    ConnectionError,
    TimeoutError,
)


# What an outage can surface as; `is_database_outage` then decides (an IntegrityError is a bug).
OUTAGE_CANDIDATES: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def is_database_outage(exc: BaseException) -> bool:
    """Whether an error means "the database is briefly unreachable" (retry later), not a bug.

    SQLAlchemy wraps driver errors, so the cause chain is walked too."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGE_ERRORS):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
        current = current.__cause__ or current.__context__
    return False
