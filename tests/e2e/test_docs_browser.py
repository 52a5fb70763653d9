"""The docs render in a real browser with no internet: headless Chromium (Debian's `chromium`,
which `deploy/local/infra.sh` installs) loads `/docs` and `/redoc` from the gateway and we read
the DOM it built."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from launcher import Suite
from support import ExternalStack

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # As on a machine without internet: every host but the gateway's fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail("chromium is missing (deploy/local/infra.sh installs it)")
    pytest.skip("chromium is not installed (deploy/local/infra.sh installs it)")


async def rendered_dom(url: str, profile: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    dom, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return dom.decode(errors="replace")


async def test_swagger_ui_renders_every_services_operations(
    suite: Suite | ExternalStack, tmp_path: Path
) -> None:
    dom = await rendered_dom(f"{suite.gateway_url}/docs", tmp_path)
    assert 'class="swagger-ui' in dom, dom[:2000]
    for path in ("/api/tickets", "/api/agents/login", "/api/sla/policies", "/api/ai/"):
        assert path in dom, f"Swagger UI shows no {path} operation"
    assert dom.count('class="opblock ') >= 30, "Swagger UI rendered too few operations"


async def test_redoc_renders_the_merged_document(
    suite: Suite | ExternalStack, tmp_path: Path
) -> None:
    dom = await rendered_dom(f"{suite.gateway_url}/redoc", tmp_path)
    for text in ("Quimbi Support API", "/api/tickets", "/api/agents/login"):
        assert text in dom, f"ReDoc shows no {text!r}"
