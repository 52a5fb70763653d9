"""`python -m quimbi_scoring`: serve the scoring service (port 8104 by default)."""

from quimbi_common.runtime import serve

from .main import build_app
from .settings import Settings

if __name__ == "__main__":
    serve(build_app, Settings())
