"""Paging of list routes: one bound on `page` for every service, and one `pagination` shape.

`page` is capped (PAGE_MAX) so that `page * limit` stays far inside PostgreSQL's int64 OFFSET:
an unbounded page was a 500 (issue #13); past the cap it is a 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

PAGE_MAX = 100_000

Page = Annotated[
    int, Query(ge=1, le=PAGE_MAX, description=f"1-based page number, at most {PAGE_MAX}")
]


class Pagination(BaseModel):
    page: int
    limit: int
    total: int
    has_next: bool
    has_prev: bool
