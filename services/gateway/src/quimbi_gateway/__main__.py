"""`python -m quimbi_gateway` serves the gateway (it has no database)."""

from quimbi_common.runtime import main

from .main import build_app
from .settings import Settings

main(build_app, Settings(), None, consumes=False)
