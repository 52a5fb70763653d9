"""What a request may carry (NUL refused in bodies, paths and queries; nulls only where a patch
allows them) and how the OpenAPI of every app documents its problems."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import StringConstraints, TypeAdapter, ValidationError

from quimbi_common.auth import Caller, CurrentAgent
from quimbi_common.inputs import NoNul, PatchModel, RequestModel, Text, keyword_list_schema
from quimbi_common.openapi import problems
from quimbi_common.pagination import Page
from quimbi_common.runtime import Runtime, create_app
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import REDIS_URL, assert_problem

pytestmark = pytest.mark.unit

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5), NoNul]


class Note(RequestModel):
    name: Name
    tags: list[Text] = []


class NoteUpdate(PatchModel):
    nullable = frozenset({"comment"})

    name: Name | None = None
    comment: Text | None = None


router = APIRouter()


@router.post("/notes")
async def add_note(note: Note, caller: Caller) -> Note:
    return note


@router.get("/notes/{note_id}", responses=problems(**{"409": "Being edited"}))
async def get_note(note_id: str, agent: CurrentAgent) -> dict[str, str]:
    return {"id": note_id}


@router.get("/open")
async def open_route(page: Page = 1) -> dict[str, int]:
    return {"page": page}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    settings = CommonSettings(
        service_name="inputs-test", redis_url=REDIS_URL, log_json=False, api_key="test-key"
    )
    runtime = Runtime(settings, database=False, kafka=False)
    return create_app(runtime, title="inputs test", routers=[router])


async def _get(app: FastAPI, url: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(kw.pop("method", "GET"), url, **kw)


@pytest.mark.parametrize("value", ["a\x00", "\x00", "ab\x00cd"])
def test_text_refuses_nul(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Text).validate_python(value)
    assert caught.value.errors()[0]["type"] == "string_nul"


def test_the_rule_keeps_strip_before_length() -> None:
    adapter = TypeAdapter(Name)
    assert adapter.validate_python("  Ann ") == "Ann"
    for bad in ("   ", "abcdef", "a\x00"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_a_patch_refuses_null_except_where_it_clears() -> None:
    assert NoteUpdate.model_validate({"comment": None}).model_fields_set == {"comment"}
    with pytest.raises(ValidationError) as refused:
        NoteUpdate.model_validate({"name": None})
    assert refused.value.errors()[0]["loc"] == ("name",)
    assert refused.value.errors()[0]["type"] == "null_refused"
    properties = NoteUpdate.model_json_schema()["properties"]
    assert properties["name"]["type"] == "string"
    assert "default" not in properties["name"]
    assert {"type": "null"} in properties["comment"]["anyOf"]


@pytest.mark.parametrize(
    ("url", "where"),
    [("/notes/a%00b", "path"), ("/open?page=1&x=%00", "query"), ("/nowhere%00", "path")],
)
async def test_a_nul_in_a_path_or_query_is_422_before_routing(
    app: FastAPI, url: str, where: str
) -> None:
    problem = assert_problem(await _get(app, url), 422)
    assert problem["errors"] == [
        {
            "loc": [where],
            "msg": f"The {where} must not contain NUL (\\u0000) characters",
            "type": "string_nul",
        }
    ]


async def test_a_nul_in_a_body_is_422_naming_the_field(app: FastAPI) -> None:
    response = await _get(
        app,
        "/notes",
        method="POST",
        json={"name": "a", "tags": ["ok", "b\x00"]},
        headers={"X-API-Key": "test-key"},
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "tags", "1"]


async def test_a_body_that_is_not_json_is_400(app: FastAPI) -> None:
    response = await _get(
        app, "/notes", method="POST", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400)


async def test_a_page_past_the_cap_is_422(app: FastAPI) -> None:
    assert (await _get(app, "/open?page=100000")).status_code == 200
    assert_problem(await _get(app, "/open?page=10000000000000000000"), 422)


def test_the_spec_lists_problems_by_what_a_route_is_made_of(app: FastAPI) -> None:
    spec = app.openapi()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    responses = {
        (path, method): op["responses"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    post_notes = responses[("/notes", "post")]
    assert set(post_notes) == {"200", "400", "401", "422", "503"}
    get_note = responses[("/notes/{note_id}", "get")]
    assert set(get_note) == {"200", "401", "403", "404", "409", "422", "503"}
    assert get_note["409"]["description"] == "Being edited"
    assert set(responses[("/open", "get")]) == {"200", "422"}
    for (path, _), route_responses in responses.items():
        for status, response in route_responses.items():
            if int(status) >= 400 and path != "/health/ready":
                assert response["content"] == problem, (path, status)
    assert "Retry-After" in post_notes["503"]["headers"]
    # the ready probe's 503 is its own JSON document, left as it says
    assert "application/json" in responses[("/health/ready", "get")]["503"]["content"]
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail"]


def test_keyword_list_pattern_states_the_caps() -> None:
    import re

    pattern = re.compile(keyword_list_schema(3, 4)["pattern"])
    assert pattern.fullmatch("ab,cd,efgh")
    assert pattern.fullmatch("")
    assert not pattern.fullmatch("a,b,c,d")
    assert not pattern.fullmatch("abcde")
