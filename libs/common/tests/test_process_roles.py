"""`python -m quimbi_<service> [serve|consume|migrate]`: the word picks the process's role, the
consume role listens beside the API's port, and a word a service does not know is refused."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from quimbi_common import runtime
from quimbi_common.settings import CommonSettings

pytestmark = pytest.mark.unit


def started(monkeypatch: pytest.MonkeyPatch, argv: list[str], **options: Any) -> CommonSettings:
    """The settings `main` would build the app with (uvicorn not started)."""
    built: list[CommonSettings] = []

    def factory(settings: CommonSettings) -> FastAPI:
        built.append(settings)
        return FastAPI()

    monkeypatch.setattr("sys.argv", ["quimbi_x", *argv])
    monkeypatch.setattr(runtime, "serve", lambda make, settings: make())
    runtime.main(factory, CommonSettings(port=8103), None, **options)
    return built[0]


def test_no_word_serves_and_consumes_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = started(monkeypatch, [])
    assert (settings.process_role, settings.listen_port) == ("all", 8103)


def test_serve_and_consume_pick_the_role_and_consume_listens_beside_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert started(monkeypatch, ["serve"]).process_role == "serve"
    consume = started(monkeypatch, ["consume"])
    assert (consume.process_role, consume.listen_port) == ("consume", 9103)
    assert CommonSettings(process_role="consume", consume_port=8103).listen_port == 8103


def test_an_unknown_word_or_consume_without_consumers_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit, match="unknown command 'consumer'"):
        started(monkeypatch, ["consumer"])
    with pytest.raises(SystemExit, match=r"one of: serve\)"):
        started(monkeypatch, ["consume"], consumes=False)
