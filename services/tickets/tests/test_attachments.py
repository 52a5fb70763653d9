"""Attachments: upload (size, sniffed type, clean names), attach to a message, download by
those who see the ticket, and the files go when their message or ticket does. The session's
app stores them in a real S3-compatible server (gofakes3); the storage contract is checked
for the local directory too."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from quimbi_common.auth import Principal
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import Role
from quimbi_common.testing import eventually
from quimbi_common.uow import UnitsOfWork
from quimbi_tickets import service as tickets_service
from quimbi_tickets.attachments.service import Sweeper, storage_from
from quimbi_tickets.attachments.storage import (
    FileStorage,
    LocalStorage,
    S3Storage,
    StorageError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import Actor, World

pytestmark = pytest.mark.service

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(3000)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + os.urandom(500)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


async def _upload(
    world: World,
    actor: Actor,
    ticket_id: str,
    content: bytes,
    filename: str = "photo.png",
    content_type: str = "image/png",
) -> Any:
    return await world.client.post(
        f"/api/tickets/{ticket_id}/attachments",
        files={"file": (filename, content, content_type)},
        headers=actor.headers,
    )


async def _uploaded(world: World, actor: Actor, ticket_id: str, **kw: Any) -> dict[str, Any]:
    response = await _upload(world, actor, ticket_id, kw.pop("content", PNG), **kw)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _storage(world: World) -> FileStorage:
    return storage_from(world.settings)


async def _key(world: World, attachment_id: str) -> str:
    key = await world.db.fetchval(
        "SELECT storage_key FROM attachments WHERE id = $1", attachment_id
    )
    assert key, f"no row for {attachment_id}"
    return str(key)


async def _gone(world: World, key: str) -> None:
    """Wait until the file is out of the storage and its deletion row is gone."""

    async def removed() -> None:
        try:
            await _storage(world).get(key)
        except FileNotFoundError:
            pass
        else:
            raise AssertionError(f"{key} is still stored")
        assert not await world.db.fetchval(
            "SELECT count(*) FROM files_to_delete WHERE storage_key = $1", key
        )

    await eventually(removed, timeout=20)


async def test_upload_attach_and_download_the_same_bytes(world: World) -> None:
    # given a ticket and a PNG the client calls an HTML page
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    uploaded = await _uploaded(
        world, agent, ticket["id"], filename="../../scan 1.png", content_type="text/html"
    )
    # then its type is what the bytes say, its name has no path, its hash is the bytes'
    assert uploaded["content_type"] == "image/png"
    assert uploaded["filename"] == "scan 1.png"
    assert uploaded["size_bytes"] == len(PNG)
    assert uploaded["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert uploaded["message_id"] is None
    # when a message names it
    response = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "Here is the scan.", "attachment_ids": [uploaded["id"]]},
        headers=agent.headers,
    )
    assert response.status_code == 201, response.text
    message = response.json()
    # then the message, the conversation and message.added carry the metadata
    [attached] = message["attachments"]
    assert attached["id"] == uploaded["id"]
    assert attached["message_id"] == message["id"]
    listed = await world.client.get(f"/api/tickets/{ticket['id']}/messages", headers=agent.headers)
    assert listed.json()["messages"][0]["attachments"][0]["sha256"] == uploaded["sha256"]
    event = await world.event("message.added", id=message["id"])
    assert event["data"]["attachments"] == [
        {k: uploaded[k] for k in ("id", "filename", "content_type", "size_bytes", "sha256")}
    ]
    # and the download is the same bytes, as an attachment that is never sniffed or inlined
    download = await world.client.get(
        f"/api/tickets/{ticket['id']}/attachments/{uploaded['id']}", headers=agent.headers
    )
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"scan 1.png\"; filename*=UTF-8''scan%201.png"
    )
    files = await world.client.get(
        f"/api/tickets/{ticket['id']}/attachments", headers=agent.headers
    )
    assert [a["id"] for a in files.json()["attachments"]] == [uploaded["id"]]


async def test_the_integration_key_attaches_a_customers_file(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    uploaded = await _uploaded(world, world.integration, ticket["id"], content=b"Order 42\n")
    assert uploaded["content_type"] == "text/plain"
    response = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "My receipt", "attachment_ids": [uploaded["id"]]},
        headers=world.integration.headers,
    )
    assert response.status_code == 201, response.text
    download = await world.client.get(
        f"/api/tickets/{ticket['id']}/attachments/{uploaded['id']}", headers=agent.headers
    )
    assert download.content == b"Order 42\n"


@pytest.mark.parametrize(
    ("content", "filename", "sniffed"),
    [
        (EXE, "holiday.png", "application/x-msdownload"),
        (HTML, "photo.png", "text/html"),
        (HTML, "notes.txt", "text/html"),
    ],
)
async def test_a_disguised_file_is_refused_by_its_content(
    world: World, content: bytes, filename: str, sniffed: str
) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    response = await _upload(world, agent, ticket["id"], content, filename, "image/png")
    problem = world.problem(response, 415)
    assert problem["content_type"] == sniffed
    assert "image/png" in problem["allowed"]


async def test_a_file_over_the_limit_is_413_and_nothing_is_stored(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    too_big = PNG + bytes(world.settings.attachments_max_bytes)
    response = await _upload(world, agent, ticket["id"], too_big)
    assert world.problem(response, 413)["max_bytes"] == world.settings.attachments_max_bytes
    assert not await world.db.fetchval(
        "SELECT count(*) FROM attachments WHERE ticket_id = $1", ticket["id"]
    )
    # just under the limit (the multipart framing is not counted) is fine
    response = await _upload(
        world, agent, ticket["id"], too_big[: world.settings.attachments_max_bytes]
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("filename", [b"a\x00.png", b"../", b"\x01\x02"])
async def test_a_nul_or_garbage_filename_is_422(world: World, filename: bytes) -> None:
    # the part's header written by hand: httpx would percent-encode the NUL
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + PNG
        + b"\r\n--xyz--\r\n"
    )
    response = await world.client.post(
        f"/api/tickets/{ticket['id']}/attachments",
        content=body,
        headers={**agent.headers, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert world.problem(response, 422)["errors"][0]["loc"] == ["body", "file"]


async def test_a_body_without_a_file_is_422_and_garbage_is_400(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    url = f"/api/tickets/{ticket['id']}/attachments"
    world.problem(await world.client.post(url, json={"file": "x"}, headers=agent.headers), 422)
    world.problem(
        await world.client.post(url, data={"file": "not a file"}, headers=agent.headers), 422
    )
    garbage = await world.client.post(
        url,
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n',
        headers={**agent.headers, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert garbage.status_code in (400, 422), garbage.text
    assert garbage.headers["content-type"].startswith("application/problem+json")


async def test_only_those_who_see_the_ticket_see_its_files(world: World) -> None:
    # given an agent's ticket with an attached file
    owner = world.agent()
    ticket = await world.create_ticket(owner)
    uploaded = await _uploaded(world, owner, ticket["id"])
    await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "scan", "attachment_ids": [uploaded["id"]]},
        headers=owner.headers,
    )
    base = f"/api/tickets/{ticket['id']}/attachments"
    # then another agent gets 404 everywhere, as for the ticket itself
    stranger = world.agent()
    for response in (
        await world.client.get(f"{base}/{uploaded['id']}", headers=stranger.headers),
        await world.client.get(base, headers=stranger.headers),
        await _upload(world, stranger, ticket["id"], PNG),
    ):
        world.problem(response, 404)
    # the integration key reads nothing
    forbidden = await world.client.get(
        f"{base}/{uploaded['id']}", headers=world.integration.headers
    )
    assert forbidden.status_code == 403
    # and a senior agent sees it
    senior = world.agent(Role.SENIOR_AGENT)
    download = await world.client.get(f"{base}/{uploaded['id']}", headers=senior.headers)
    assert download.status_code == 200
    assert download.content == PNG
    # an unknown attachment on a visible ticket is a 404 too
    world.problem(await world.client.get(f"{base}/att_unknown", headers=owner.headers), 404)


async def test_a_message_names_only_the_callers_own_unattached_uploads(world: World) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior)
    other_ticket = await world.create_ticket(senior)
    mine = await _uploaded(world, senior, ticket["id"])
    elsewhere = await _uploaded(world, senior, other_ticket["id"])
    someone_elses = await _uploaded(world, world.agent(Role.SENIOR_AGENT), ticket["id"])
    url = f"/api/tickets/{ticket['id']}/messages"
    for wrong in (elsewhere["id"], someone_elses["id"], "att_unknown"):
        response = await world.client.post(
            url,
            json={"content": "x", "attachment_ids": [mine["id"], wrong]},
            headers=senior.headers,
        )
        assert world.problem(response, 422)["errors"][0]["loc"] == ["body", "attachment_ids"]
    ok = await world.client.post(
        url, json={"content": "x", "attachment_ids": [mine["id"]]}, headers=senior.headers
    )
    assert ok.status_code == 201
    again = await world.client.post(
        url, json={"content": "y", "attachment_ids": [mine["id"]]}, headers=senior.headers
    )
    world.problem(again, 422)  # attached already


async def test_deleting_a_message_or_ticket_deletes_its_files(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    first = await _uploaded(world, agent, ticket["id"])
    second = await _uploaded(world, agent, ticket["id"])
    pending = await _uploaded(world, agent, ticket["id"])
    posted = []
    for uploaded in (first, second):
        response = await world.client.post(
            f"/api/tickets/{ticket['id']}/messages",
            json={"content": "file", "attachment_ids": [uploaded["id"]]},
            headers=agent.headers,
        )
        posted.append(response.json())
    keys = {a["id"]: await _key(world, a["id"]) for a in (first, second, pending)}
    # when the agent deletes the first message, its file goes and the others stay
    deleted = await world.client.delete(
        f"/api/tickets/{ticket['id']}/messages/{posted[0]['id']}", headers=agent.headers
    )
    assert deleted.status_code == 204
    await _gone(world, keys[first["id"]])
    assert (await _storage(world).get(keys[second["id"]])).size == len(PNG)
    event = await world.event("message.deleted", id=posted[0]["id"])
    assert [a["id"] for a in event["data"]["attachments"]] == [first["id"]]
    # when an admin deletes the ticket, every file goes, attached or not
    admin = world.agent(Role.ADMIN)
    response = await world.client.delete(f"/api/tickets/{ticket['id']}", headers=admin.headers)
    assert response.status_code == 204
    await _gone(world, keys[second["id"]])
    await _gone(world, keys[pending["id"]])


async def test_an_upload_never_attached_is_swept_when_it_expires(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    uploaded = await _uploaded(world, agent, ticket["id"])
    key = await _key(world, uploaded["id"])
    due = await world.db.fetchval("SELECT due_at FROM files_to_delete WHERE storage_key = $1", key)
    assert due is not None  # its expiry was recorded before a byte was stored
    await world.db.execute(
        "UPDATE files_to_delete SET due_at = now() - interval '1 second' WHERE storage_key = $1",
        key,
    )
    await _gone(world, key)
    assert not await world.db.fetchval(
        "SELECT count(*) FROM attachments WHERE id = $1", uploaded["id"]
    )


async def test_attaching_cancels_the_expiry(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    uploaded = await _uploaded(world, agent, ticket["id"])
    key = await _key(world, uploaded["id"])
    await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "file", "attachment_ids": [uploaded["id"]]},
        headers=agent.headers,
    )
    assert not await world.db.fetchval(
        "SELECT count(*) FROM files_to_delete WHERE storage_key = $1", key
    )


# --- the storage interface, both backends -------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str) -> FileStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    from s3server import BUCKET

    return S3Storage(
        BUCKET,
        endpoint=s3_endpoint,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
    )


async def _chunks(total: int, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = os.urandom(min(size, total - sent))
        sent += len(chunk)
        yield chunk


async def test_storage_streams_in_and_out_and_deletes(storage: FileStorage) -> None:
    key = f"tickets/ticket_x/att_{os.urandom(6).hex()}"
    digest = hashlib.sha256()

    async def recorded() -> AsyncIterator[bytes]:
        async for chunk in _chunks(6 * 1024 * 1024 + 17):  # past S3's 5 MiB multipart part
            digest.update(chunk)
            yield chunk

    await storage.put(key, recorded())
    stored = await storage.get(key)
    assert stored.size == 6 * 1024 * 1024 + 17
    back = hashlib.sha256()
    async for chunk in stored.chunks:
        back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()
    await storage.delete(key)
    await storage.delete(key)  # deleting twice is not an error (the sweeper retries)
    with pytest.raises(FileNotFoundError):
        await storage.get(key)


async def test_storage_refuses_keys_that_climb_out(storage: FileStorage) -> None:
    for key in ("../x", "tickets/../../x", "", "a//b"):
        with pytest.raises(ValueError, match="not a storage key"):
            await storage.get(key)


async def test_a_failed_put_leaves_no_file(storage: FileStorage) -> None:
    key = f"tickets/ticket_x/att_{os.urandom(6).hex()}"

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("client went away")

    with pytest.raises((RuntimeError, StorageError)):
        await storage.put(key, broken())
    with pytest.raises(FileNotFoundError):
        await storage.get(key)


class _StoreThatCannotDelete:
    """The S3 store, whose deletes fail (an outage after the commit)."""

    def __init__(self, inner: FileStorage) -> None:
        self.inner = inner
        self.attempts = 0

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.inner.put(key, chunks)

    async def get(self, key: str) -> Any:
        return await self.inner.get(key)

    async def delete(self, key: str) -> None:
        self.attempts += 1
        raise StorageError("the store is down")


async def test_a_failed_file_delete_keeps_the_deletion_and_is_retried(world: World) -> None:
    # given a message with a file
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    uploaded = await _uploaded(world, agent, ticket["id"])
    posted = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "file", "attachment_ids": [uploaded["id"]]},
        headers=agent.headers,
    )
    message_id = posted.json()["id"]
    key = await _key(world, uploaded["id"])
    # when the message is deleted while the store refuses deletes (its own unit of work,
    # with a sweeper over a failing store: the app's sweeper is the one that retries)
    engine = create_engine(world.settings)
    units = UnitsOfWork(create_sessionmaker(engine), "tickets-test")
    failing = Sweeper(units, _StoreThatCannotDelete(_storage(world)), world.settings)
    principal = Principal("agent", agent.agent_id, f"{agent.agent_id}@example.com", Role.AGENT)
    try:
        await units.run(
            lambda unit: tickets_service.delete_message(
                unit, world.settings, principal, ticket["id"], message_id, failing.delete_now
            )
        )
    finally:
        await engine.dispose()
    # then the deletion stands (the message and its attachment row are gone) ...
    assert failing.storage.attempts == 1  # type: ignore[attr-defined]
    assert not await world.db.fetchval("SELECT count(*) FROM messages WHERE id = $1", message_id)
    assert not await world.db.fetchval(
        "SELECT count(*) FROM attachments WHERE id = $1", uploaded["id"]
    )
    # ... and the file is removed by the sweeper's retry
    await _gone(world, key)


async def test_the_openapi_documents_the_multipart_body_and_its_problems(world: World) -> None:
    spec = (await world.client.get("/openapi.json")).json()
    upload = spec["paths"]["/api/tickets/{ticket_id}/attachments"]["post"]
    body = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert body["properties"]["file"]["format"] == "binary"
    for status in ("400", "404", "409", "413", "415", "422"):
        assert "application/problem+json" in upload["responses"][status]["content"], status
    download = spec["paths"]["/api/tickets/{ticket_id}/attachments/{attachment_id}"]["get"]
    assert "image/png" in download["responses"]["200"]["content"]
    message = spec["components"]["schemas"]["MessagePost"]["properties"]["attachment_ids"]
    assert message["maxItems"] == 10
