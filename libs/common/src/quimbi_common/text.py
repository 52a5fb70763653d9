"""Text PostgreSQL can store: no NUL (U+0000) in a request's fields, path or query string.

PostgreSQL's `text` and JSONB refuse U+0000 ("invalid byte sequence", "unsupported Unicode
escape"), so a NUL that passed validation became a 500 at the database. The rule is kept in
two places, each covering a whole kind of input: request bodies through `Text` (the string
type every request model is built from, like the lone surrogates pydantic already refuses),
and paths and query strings through `NulGuard`, which `create_app` puts in front of every app
so that no route has to remember it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import problem_response

NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (\\u0000) characters"


def refuse_nul(value: str) -> str:
    """The validator behind `Text`."""
    if NUL in value:
        raise PydanticCustomError("string_nul", f"Text {NUL_MESSAGE}")
    return value


Text = Annotated[str, AfterValidator(refuse_nul)]
"""A request string: refuses NUL. Add constraints with `Annotated[Text, StringConstraints(...)]`."""


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (a typo is a 422, not a no-op)."""

    model_config = ConfigDict(extra="forbid")


def _query_has_nul(query_string: bytes) -> bool:
    # A NUL can only reach a decoded query value as %00 (or a raw byte the server let through).
    return b"%00" in query_string or b"\x00" in query_string


class NulGuard:
    """ASGI middleware: a NUL in the (decoded) path or in the query string is a 422."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if NUL in scope["path"]:
                where = "path"
            elif _query_has_nul(scope.get("query_string", b"")):
                where = "query"
            if where is not None:
                errors: list[dict[str, Any]] = [
                    {"loc": [where], "msg": f"The {where} {NUL_MESSAGE}", "type": "string_nul"}
                ]
                response = problem_response(422, f"{where}: {NUL_MESSAGE}", errors=errors)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
