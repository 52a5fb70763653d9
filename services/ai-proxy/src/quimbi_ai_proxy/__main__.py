"""`python -m quimbi_ai_proxy` runs the ai-proxy service: its API and its consumers in one process;
`serve` the API only, `consume` the consumers, outbox relay and jobs only (health and metrics on
CONSUME_PORT); `migrate` upgrades the database (from a source checkout; container images
migrate in their entrypoint)."""

from pathlib import Path

from quimbi_common.runtime import main

from .main import build_app
from .settings import Settings

main(build_app, Settings(), Path(__file__).resolve().parents[2] / "migrations")
