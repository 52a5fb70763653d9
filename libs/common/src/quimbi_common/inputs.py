"""What a request may carry: request bodies' base models, and text PostgreSQL can store.

No NUL (U+0000) in a request's fields, path or query string: PostgreSQL's `text` and JSONB
refuse it ("invalid byte sequence", "unsupported Unicode escape"), so a NUL that passed
validation became a 500 at the database. The rule is kept in two places, each covering a whole
kind of input: request bodies through `Text` / `NoNul` (on every string a request model holds,
like the lone surrogates pydantic already refuses), and paths and query strings through
`nul_problem`, which the request layer of every app (`create_app`) asks for each request, so
that no route has to remember it.
`PatchModel` makes "null only where it clears" one rule, stated in the schema too.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from starlette.responses import Response
from starlette.types import Scope

from .errors import problem_response

NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (\\u0000) characters"


def refuse_nul(value: str) -> str:
    """The validator behind `Text`."""
    if NUL in value:
        raise PydanticCustomError("string_nul", f"Text {NUL_MESSAGE}")
    return value


NoNul = AfterValidator(refuse_nul)
"""The rule as metadata, last: `Annotated[str, StringConstraints(...), NoNul]`. (Not
`Annotated[Text, StringConstraints(...)]`: after a validator, pydantic checks the lengths
before it strips, so "   " would pass `min_length=1` and be stored as "".)"""
Text = Annotated[str, NoNul]
"""A request string with no other constraint."""


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (a typo is a 422, not a no-op)."""

    model_config = ConfigDict(extra="forbid")


def _only_nullable_accept_null(schema: dict[str, Any], model: type[Any]) -> None:
    """JSON Schema of a PatchModel: `null` only where the model accepts it."""
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, field in schema.get("properties", {}).items():
        variants = field.get("anyOf")
        if name in nullable or not variants:
            continue
        kept = [v for v in variants if v != {"type": "null"}]
        del field["anyOf"]
        if field.get("default", ...) is None:
            del field["default"]
        if len(kept) == 1:
            field.update(kept[0])
        else:
            field["anyOf"] = kept


class PatchModel(RequestModel):
    """A partial update: omitted fields stay as they are; `null` is refused except for the
    fields named in `nullable`, where it clears the value. The schema says the same."""

    nullable: ClassVar[frozenset[str]] = frozenset()
    model_config = ConfigDict(json_schema_extra=_only_nullable_accept_null)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        # runs only for the fields sent (defaults are not validated), so omitted ones stay
        if value is None and info.field_name not in cls.nullable:
            raise PydanticCustomError("null_refused", "cannot be null; omit the field instead")
        return value


def keyword_list_schema(max_keywords: int, max_chars: int) -> dict[str, Any]:
    """JSON Schema of a comma-separated keyword list (`topic_alerts`): its caps as a pattern
    (a little stricter than the server, which trims each keyword before counting)."""
    keyword = f"[^,]{{0,{max_chars}}}"
    return {
        "pattern": f"^{keyword}(,{keyword}){{0,{max_keywords - 1}}}$",
        "description": f"Comma-separated keywords: at most {max_keywords}, each at most "
        f"{max_chars} characters after trimming; blanks and repeats are dropped",
    }


def _query_has_nul(query_string: bytes) -> bool:
    # A NUL can only reach a decoded query value as %00 (or a raw byte the server let through).
    return b"%00" in query_string or b"\x00" in query_string


def nul_problem(scope: Scope) -> Response | None:
    """The 422 for a NUL in the (decoded) path or in the query string of an HTTP request, or
    None. `request_layer` asks it for every request, so that no route has to remember it."""
    where = None
    if NUL in scope["path"]:
        where = "path"
    elif _query_has_nul(scope.get("query_string", b"")):
        where = "query"
    if where is None:
        return None
    errors: list[dict[str, Any]] = [
        {"loc": [where], "msg": f"The {where} {NUL_MESSAGE}", "type": "string_nul"}
    ]
    return problem_response(422, f"{where}: {NUL_MESSAGE}", errors=errors)
