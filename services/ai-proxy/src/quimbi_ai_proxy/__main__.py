"""`python -m quimbi_ai_proxy` runs the service (HOST / PORT, default 127.0.0.1:8105)."""

from quimbi_common.runtime import serve

from .main import build_app
from .settings import Settings

serve(build_app, Settings())
