"""The docs render in a real browser with no internet: headless Chromium (Debian's `chromium`,
which `deploy/local/infra.sh` installs) loads `/docs` and `/redoc` from the gateway and we read
the DOM it built."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import rendered_dom
from launcher import Suite
from support import ExternalStack

pytestmark = pytest.mark.e2e


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
