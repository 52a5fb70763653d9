"""`python -m quimbi_agents` serves the agents service; with `migrate`, it upgrades the
database instead (from a source checkout; container images migrate in their entrypoint)."""

from pathlib import Path

from quimbi_common.runtime import main

from .main import build_app
from .settings import Settings

main(build_app, Settings(), Path(__file__).resolve().parents[2] / "migrations")
