"""Attachments through the gateway: a file over the gateway's usual 1 MiB body limit is
uploaded, attached to a message (metadata in the answer and in `message.added`), and
downloaded as the same bytes by those who may see the ticket."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest
from support import Servers
from test_journeys import create_ticket

from quimbi_common.testing import EventProbe

pytestmark = pytest.mark.e2e

# A PNG signature, then 1.5 MiB: more than the gateway's MAX_REQUEST_BODY_BYTES (1 MiB), less
# than its upload limit.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(1536 * 1024)


async def test_upload_attach_and_download_through_the_gateway(
    gateway: httpx.AsyncClient, make_agent: Any, topic_prefix: str, infra: Servers
) -> None:
    agent = await make_agent("agent")
    ticket = await create_ticket(gateway, agent)
    base = f"/api/tickets/{ticket['id']}/attachments"
    async with EventProbe(["message.added"], topic_prefix, infra.kafka_bootstrap) as probe:
        # when the agent uploads a screenshot (named and typed as a page: the bytes decide)
        uploaded = await gateway.post(
            base, files={"file": ("shot.html", PNG, "text/html")}, headers=agent.headers
        )
        assert uploaded.status_code == 201, uploaded.text
        attachment = uploaded.json()
        assert attachment["content_type"] == "image/png"
        assert attachment["sha256"] == hashlib.sha256(PNG).hexdigest()
        # and replies with it
        posted = await gateway.post(
            f"/api/tickets/{ticket['id']}/messages",
            json={"content": "See the screenshot.", "attachment_ids": [attachment["id"]]},
            headers=agent.headers,
        )
        assert posted.status_code == 201, posted.text
        message = posted.json()
        assert [a["id"] for a in message["attachments"]] == [attachment["id"]]
        # then message.added carries the metadata
        [event] = await probe.wait_for("message.added", lambda e: e["data"]["id"] == message["id"])
    assert event["data"]["attachments"] == [
        {k: attachment[k] for k in ("id", "filename", "content_type", "size_bytes", "sha256")}
    ]
    # and the download through the gateway is the same bytes, as a download
    download = await gateway.get(f"{base}/{attachment['id']}", headers=agent.headers)
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("attachment;")
    # while an agent who may not see the ticket gets a 404, as for the ticket
    stranger = await make_agent("agent")
    hidden = await gateway.get(f"{base}/{attachment['id']}", headers=stranger.headers)
    assert hidden.status_code == 404
    # and a disguised executable is refused by its content
    exe = await gateway.post(
        base,
        files={"file": ("cat.png", b"MZ\x90\x00" + bytes(64), "image/png")},
        headers=agent.headers,
    )
    assert exe.status_code == 415
