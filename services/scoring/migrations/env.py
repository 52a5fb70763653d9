"""Alembic environment: the shared runner with scoring's metadata."""

from quimbi_common.migrations import run_env
from quimbi_scoring.models import Base

run_env(Base.metadata)
