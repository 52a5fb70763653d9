"""Alembic environment for the agents database (the shared body lives in quimbi_common)."""

from quimbi_agents.models import Base
from quimbi_common.migrations import run_env

run_env(Base.metadata)
