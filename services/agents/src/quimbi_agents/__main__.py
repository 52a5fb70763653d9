"""`python -m quimbi_agents` serves the agents API on AGENTS' port (8102 by default)."""

from quimbi_common.runtime import serve

from .main import build_app
from .settings import Settings

if __name__ == "__main__":
    serve(build_app, Settings())
