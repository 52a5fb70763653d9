"""Headless Chromium for the e2e tier (Debian's `chromium`, installed by `deploy/local/infra.sh`):
`rendered_dom` for a page that settles by itself, `Browser` (the DevTools protocol over a
WebSocket) for a page we drive while the suite changes under it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

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


class Browser:
    """`async with Browser(profile) as browser: page = await browser.open(url)`; a page is
    driven with `evaluate` (JavaScript in the page) and `wait_for` (until an expression holds)."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.process: asyncio.subprocess.Process | None = None
        self.socket: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        self.process = await asyncio.create_subprocess_exec(
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            assert time.monotonic() < deadline, "chromium opened no DevTools port"
            assert self.process.returncode is None, "chromium exited"
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.socket = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.socket is not None:
            await self.socket.close()
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()

    async def _read(self) -> None:
        assert self.socket is not None
        async for raw in self.socket:
            message = json.loads(raw)
            answer = self._answers.pop(message.get("id", -1), None)
            if answer is not None and not answer.done():
                answer.set_result(message)

    async def send(self, method: str, params: dict[str, Any] | None = None, **extra: Any) -> Any:
        assert self.socket is not None
        number = next(self._ids)
        answer = self._answers[number] = asyncio.get_running_loop().create_future()
        await self.socket.send(
            json.dumps({"id": number, "method": method, "params": params or {}, **extra})
        )
        message = await asyncio.wait_for(answer, 60)
        assert "error" not in message, f"{method}: {message['error']}"
        return message.get("result", {})

    async def open(self, url: str) -> Page:
        target = await self.send("Target.createTarget", {"url": url})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        return Page(self, attached["sessionId"])


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def evaluate(self, expression: str) -> Any:
        result = await self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            sessionId=self.session,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 30.0) -> Any:
        """The value of `expression` once it is truthy (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                text = await self.evaluate("document.body.innerText")
                raise AssertionError(f"never true: {expression}\npage text:\n{text[:3000]}")
            await asyncio.sleep(0.2)
