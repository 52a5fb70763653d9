"""Full-text search over ticket subjects and message contents (PostgreSQL, GIN-indexed).

The query is read by `websearch_to_tsquery` (quotes, `or`, `-word`; never a syntax error) in
the English configuration. A ticket matches when its subject or any of its messages does; its
rank is the best of twice the subject's `ts_rank` and each matching message's. The list filters
and visibility are the inbox's (`queries.list_filters`); the order is by rank (then oldest
first, by the time-ordered id) or the inbox's smart order. Snippets (`ts_headline`) are
computed for the page only and returned as HTML-safe text: everything escaped, the matched
words in `<mark>…</mark>`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal

from .queries import LIST_COLUMNS, MESSAGES, TICKETS, InboxQuery, list_filters

SearchOrder = Literal["relevance", "smart"]
CONFIG = "english"
SUBJECT_WEIGHT = 2.0
# ts_headline marks matches with these (private-use characters): the text around them is
# escaped first, then they become <mark> tags, so a message's own markup is never live.
_START, _STOP = "\ue000", "\ue001"
_HEADLINE = f"StartSel={_START}, StopSel={_STOP}, MaxWords=30, MinWords=12, MaxFragments=2"


@dataclass(frozen=True)
class SearchPage:
    rows: list[dict[str, Any]]
    total: int


def safe_snippet(headline: str | None) -> str | None:
    """ts_headline's output as HTML-safe text with the matches in <mark>."""
    if headline is None:
        return None
    escaped = html.escape(headline, quote=True)
    return escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")


def _config() -> Any:
    return sa.literal_column(f"'{CONFIG}'::regconfig")


def search_statements(
    query: InboxQuery, principal: Principal, text: str, order: SearchOrder
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """(the page with snippets, each row with the total count; the count alone, for a page
    past the end) for one search."""
    tsquery = sa.func.websearch_to_tsquery(_config(), sa.bindparam("q", text, type_=sa.Text))
    tickets = TICKETS
    filters = list_filters(tickets, query, principal)
    subject_hits = sa.select(
        tickets.c.id.label("id"),
        (sa.func.ts_rank(tickets.c.search_vector, tsquery) * SUBJECT_WEIGHT).label("rank"),
    ).where(tickets.c.search_vector.op("@@")(tsquery), *filters)
    message_hits = sa.select(
        MESSAGES.c.ticket_id.label("id"),
        sa.func.ts_rank(MESSAGES.c.search_vector, tsquery).label("rank"),
    ).where(MESSAGES.c.search_vector.op("@@")(tsquery))
    if filters:  # without filters every message's ticket counts: no join needed
        message_hits = message_hits.join(tickets, tickets.c.id == MESSAGES.c.ticket_id).where(
            *filters
        )
    hits = sa.union_all(subject_hits, message_hits).subquery("hits")
    best = (
        sa.select(hits.c.id, sa.func.max(hits.c.rank).label("rank"))
        .group_by(hits.c.id)
        .cte("best")
        .prefix_with("MATERIALIZED")
    )
    total = sa.select(sa.func.count()).select_from(best)
    columns = (*(tickets.c[name] for name in LIST_COLUMNS), tickets.c.smart_score)
    offset = (query.page - 1) * query.limit
    if order == "relevance":
        # the page is cut from the matches alone (rank, then id: ids are time-ordered, so
        # older first); only its rows are joined to their tickets
        top = (
            sa.select(best.c.id, best.c.rank)
            .order_by(best.c.rank.desc(), best.c.id)
            .limit(query.limit)
            .offset(offset)
            .subquery("top")
        )
        page = sa.select(*columns, top.c.rank).join(top, top.c.id == tickets.c.id).subquery("page")
        page_order: tuple[Any, ...] = (page.c.rank.desc(), page.c.id)
    else:
        page = (
            sa.select(*columns, best.c.rank)
            .join(best, best.c.id == tickets.c.id)
            .order_by(tickets.c.smart_score.desc(), tickets.c.created_at, tickets.c.id)
            .limit(query.limit)
            .offset(offset)
            .subquery("page")
        )
        page_order = (page.c.smart_score.desc(), page.c.created_at, page.c.id)
    best_message = (
        sa.select(MESSAGES.c.id, MESSAGES.c.content)
        .where(MESSAGES.c.ticket_id == page.c.id, MESSAGES.c.search_vector.op("@@")(tsquery))
        .order_by(
            sa.func.ts_rank(MESSAGES.c.search_vector, tsquery).desc(),
            MESSAGES.c.created_at,
            MESSAGES.c.id,
        )
        .limit(1)
        .lateral("best_message")
    )
    headline = sa.literal(_HEADLINE)
    matched_subject = sa.func.ts_headline(_config(), page.c.subject, tsquery, headline)
    rows = (
        sa.select(
            page,
            matched_subject.label("subject_headline"),
            total.scalar_subquery().label("total"),
            best_message.c.id.label("message_id"),
            sa.func.ts_headline(_config(), best_message.c.content, tsquery, headline).label(
                "message_headline"
            ),
        )
        .select_from(page.outerjoin(best_message, sa.true()))
        .order_by(*page_order)
    )
    return rows, total


async def search(
    session: AsyncSession, principal: Principal, query: InboxQuery, text: str, order: SearchOrder
) -> SearchPage:
    rows_statement, total_statement = search_statements(query, principal, text, order)
    rows = [dict(row) for row in (await session.execute(rows_statement)).mappings()]
    if rows:  # each row carries the count (the matches are collected once, in one statement)
        return SearchPage(rows, int(rows[0]["total"]))
    if query.page == 1:
        return SearchPage(rows, 0)
    return SearchPage(rows, int(await session.scalar(total_statement) or 0))  # past the end
