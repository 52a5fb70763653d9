"""`python -m quimbi_standin` runs the stand-in (STANDIN_HOST / STANDIN_PORT)."""

from quimbi_standin.main import run

run()
