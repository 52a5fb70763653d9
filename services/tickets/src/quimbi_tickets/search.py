"""Full-text search over ticket subjects and message contents (PostgreSQL, GIN-indexed).

The query is read by `websearch_to_tsquery` (quotes, `or`, `-word`; never a syntax error) in
the English configuration. A ticket matches when its subject or any of its messages does; its
rank is the best of twice the subject's `ts_rank` and each matching message's. The list filters
and visibility are the inbox's (`queries.list_filters`); the order is by rank (then oldest
first, by the time-ordered id) or the inbox's smart order. Only a bounded set of the newest
matches is ranked (`search_statements`): a word found in most tickets costs that bound, not the
whole table. Snippets (`ts_headline`) are computed for the page only and returned as HTML-safe
text: everything escaped, the matched words in `<mark>…</mark>`. A statement past its time
budget is stopped and answered 503.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncEngine

from quimbi_common.auth import Principal
from quimbi_common.db import is_database_outage
from quimbi_common.errors import ServiceUnavailableError

from .queries import (
    DIALECT,
    LIST_COLUMNS,
    MESSAGES,
    TICKETS,
    Compiled,
    InboxQuery,
    Shape,
    filters_of,
    shape_and_params,
)

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
    exhaustive: bool  # False: more matches than the candidates ranked (see search_statements)


def safe_snippet(headline: str | None) -> str | None:
    """ts_headline's output as HTML-safe text with the matches in <mark>."""
    if headline is None:
        return None
    escaped = html.escape(headline, quote=True)
    return escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")


def _config() -> Any:
    return sa.literal_column(f"'{CONFIG}'::regconfig")


def _candidates(
    name: str,
    found: sa.Select[Any],
    newest: sa.Select[Any],
    tsquery: sa.ColumnElement[Any],
    candidates: int,
    cut_short: sa.ColumnElement[bool] | None = None,
) -> tuple[sa.CTE, sa.CTE, sa.ColumnElement[bool]]:
    """The matches to rank from one table: (any `candidates` + 1 matches, in the order
    PostgreSQL finds them; the newest matches among the table's latest rows, read only when
    the first set overflowed, i.e. the words are in more than `candidates` rows).

    No ORDER BY bounds the first set: PostgreSQL stops after `candidates` + 1 matches (a
    sequential scan for a word in most rows, a bitmap scan of a rarer word's index entries);
    sorting every match (by date or rank) is what made a common word cost the whole table.
    `newest` is the table's latest rows by `created_at`, limited, so it costs that many rows
    whatever the words, and it is read only on overflow (a one-time filter). `cut_short`: the
    first set may miss matches for another reason (a phrase's bounded pre-scan); the third
    value is whether the first set is not every match."""
    first = found.limit(candidates + 1).cte(f"{name}_first").prefix_with("MATERIALIZED")
    window = newest.subquery(f"{name}_window")
    overflow = sa.select(sa.func.count()).select_from(first).scalar_subquery() > candidates
    if cut_short is not None:
        overflow = sa.or_(overflow, cut_short)
    recent = (
        sa.select(window.c.id, window.c.vector)
        .where(window.c.vector.op("@@")(tsquery), overflow)
        .order_by(window.c.created_at.desc())
        .limit(candidates)
        .cte(f"{name}_recent")
        .prefix_with("MATERIALIZED")
    )
    return first, recent, overflow


def is_phrase(text: str) -> bool:
    """Whether `websearch_to_tsquery` makes a phrase of the text (quotes, a hyphenated word)
    without a negation (`-word`), i.e. whether the bounded pre-scan of `_all_words` applies.
    A phrase it misses runs the plain way (exact, maybe slower, still under the budget)."""
    return bool(_PHRASE.search(text)) and not _NEGATION.search(text)


_PHRASE = re.compile(r'"|\w-\w')
_NEGATION = re.compile(r"(^|\s)-")


def _all_words(tsquery: Any) -> Any:
    """The query with each phrase's "followed by" (`<->`, `<N>`) as "and": what the GIN index
    can answer alone, a superset of the phrase's rows (negations excepted: see is_phrase)."""
    loose = sa.func.regexp_replace(sa.cast(tsquery, sa.Text), r"<(-|\d+)>", "&", "g")
    return sa.cast(loose, TSQUERY)


def _statements(
    shape: Shape, order: SearchOrder, candidates: int, window: int, phrase: bool = False
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """(the page with snippets, each row with the total and whether it is exhaustive; those two
    alone, for a page past the end) for one shape of search, its values left as parameters
    (`q`, the filters', `page_size`, `skip`).

    Only a bounded set is ranked, per table (subjects, messages): when a table has at most
    `candidates` matches (after the filters) every one is ranked and the answer is exact;
    with more (a common word), the ranked set is `candidates` + 1 of them as PostgreSQL finds
    them plus the newest matches among the latest `window` rows, `exhaustive` is false and
    `total` counts the tickets ranked. A word found in most tickets thus costs a bounded
    number of rows, never a read of every match."""
    tsquery = sa.func.websearch_to_tsquery(_config(), sa.bindparam("q", type_=sa.Text))
    tickets = TICKETS
    filters = filters_of(tickets, shape)
    subject_columns = (
        tickets.c.id.label("id"),
        tickets.c.search_vector.label("vector"),
        tickets.c.created_at.label("created_at"),
    )
    subject_first, subject_recent, subject_overflow = _candidates(
        "subject",
        sa.select(*subject_columns).where(tickets.c.search_vector.op("@@")(tsquery), *filters),
        sa.select(*subject_columns)
        .where(*filters)
        .order_by(tickets.c.created_at.desc())
        .limit(window),
        tsquery,
        candidates,
    )
    message_columns = (
        MESSAGES.c.ticket_id.label("id"),
        MESSAGES.c.search_vector.label("vector"),
        MESSAGES.c.created_at.label("created_at"),
    )
    newest = sa.select(*message_columns).order_by(MESSAGES.c.created_at.desc()).limit(window)
    cut_short = None
    if phrase:
        # a phrase is checked on each row holding all its words (GIN does not know word
        # positions): at most `window` such rows are examined, then the phrase and filters
        examined = (
            sa.select(*message_columns)
            .where(MESSAGES.c.search_vector.op("@@")(_all_words(tsquery)))
            .limit(window)
            .cte("message_examined")
            .prefix_with("MATERIALIZED")
        )
        cut_short = sa.select(sa.func.count()).select_from(examined).scalar_subquery() >= window
        found = sa.select(examined).where(examined.c.vector.op("@@")(tsquery))
        if filters:
            found = found.join(tickets, tickets.c.id == examined.c.id).where(*filters)
    else:
        found = sa.select(*message_columns).where(MESSAGES.c.search_vector.op("@@")(tsquery))
        if filters:  # without filters every message's ticket counts: no join needed
            found = found.join(tickets, tickets.c.id == MESSAGES.c.ticket_id).where(*filters)
    if filters:
        latest = newest.subquery("latest_messages")
        newest = (
            sa.select(latest)
            .join(tickets, tickets.c.id == latest.c.id)
            .where(*filters)
            .order_by(latest.c.created_at.desc())
        )
    message_first, message_recent, message_overflow = _candidates(
        "message", found, newest, tsquery, candidates, cut_short
    )
    ranked = (
        (subject_first, SUBJECT_WEIGHT),
        (subject_recent, SUBJECT_WEIGHT),
        (message_first, 1.0),
        (message_recent, 1.0),
    )
    hits = sa.union_all(
        *(
            sa.select(cte.c.id, (sa.func.ts_rank(cte.c.vector, tsquery) * weight).label("rank"))
            for cte, weight in ranked
        )
    ).subquery("hits")
    best = (
        sa.select(hits.c.id, sa.func.max(hits.c.rank).label("rank"))
        .group_by(hits.c.id)
        .cte("best")
        .prefix_with("MATERIALIZED")
    )
    total = sa.select(sa.func.count()).select_from(best).scalar_subquery()
    exhaustive = sa.not_(sa.or_(subject_overflow, message_overflow))
    columns = (*(tickets.c[name] for name in LIST_COLUMNS), tickets.c.smart_score)
    page_size, skip = (
        sa.bindparam("page_size", type_=sa.Integer),
        sa.bindparam("skip", type_=sa.Integer),
    )
    if order == "relevance":
        # the page is cut from the matches alone (rank, then id: ids are time-ordered, so
        # older first); only its rows are joined to their tickets
        top = (
            sa.select(best.c.id, best.c.rank)
            .order_by(best.c.rank.desc(), best.c.id)
            .limit(page_size)
            .offset(skip)
            .subquery("top")
        )
        page = sa.select(*columns, top.c.rank).join(top, top.c.id == tickets.c.id).subquery("page")
        page_order: tuple[Any, ...] = (page.c.rank.desc(), page.c.id)
    else:
        page = (
            sa.select(*columns, best.c.rank)
            .join(best, best.c.id == tickets.c.id)
            .order_by(tickets.c.smart_score.desc(), tickets.c.created_at, tickets.c.id)
            .limit(page_size)
            .offset(skip)
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
            total.label("total"),
            exhaustive.label("exhaustive"),
            best_message.c.id.label("message_id"),
            sa.func.ts_headline(_config(), best_message.c.content, tsquery, headline).label(
                "message_headline"
            ),
        )
        .select_from(page.outerjoin(best_message, sa.true()))
        .order_by(*page_order)
    )
    return rows, sa.select(total.label("total"), exhaustive.label("exhaustive"))


@lru_cache(maxsize=256)
def _compiled(
    shape: Shape, order: SearchOrder, candidates: int, window: int, phrase: bool
) -> tuple[Compiled, Compiled]:
    """A search shape's two statements as asyncpg SQL, built and compiled once."""
    rows, total = _statements(shape, order, candidates, window, phrase)
    return tuple(  # type: ignore[return-value]
        Compiled(c.string, tuple(c.positiontup or ()), dict(c.params))
        for c in (rows.compile(dialect=DIALECT), total.compile(dialect=DIALECT))
    )


def _params(query: InboxQuery, principal: Principal, text: str) -> tuple[Shape, dict[str, Any]]:
    shape, params = shape_and_params(query, principal, 0.0)
    return shape, {**params, "q": text}


def search_statements(
    query: InboxQuery,
    principal: Principal,
    text: str,
    order: SearchOrder,
    candidates: int,
    window: int | None = None,
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """One search's statements with its values bound (for EXPLAIN in the benchmark)."""
    shape, params = _params(query, principal, text)
    window = window or 2 * candidates
    rows, total = _statements(shape, order, candidates, window, is_phrase(text))
    return rows.params(params), total.params(params)


async def search(
    engine: AsyncEngine,
    principal: Principal,
    query: InboxQuery,
    text: str,
    order: SearchOrder,
    *,
    candidates: int,
    timeout_ms: int,
) -> SearchPage:
    """One search, run as the inbox runs (the shape's SQL compiled once, prepared per
    connection, on the pooled connection's driver, held for the statement only), cut off after
    `timeout_ms` (503: too busy for it now) rather than left to run: asyncpg cancels it."""
    shape, params = _params(query, principal, text)
    rows_sql, total_sql = _compiled(shape, order, candidates, 2 * candidates, is_phrase(text))
    timeout = timeout_ms / 1000
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            rows = [
                dict(r)
                for r in await driver.fetch(rows_sql.sql, *rows_sql.args(params), timeout=timeout)
            ]
            if rows:  # each row carries the count (the matches are collected once)
                return SearchPage(rows, int(rows[0]["total"]), bool(rows[0]["exhaustive"]))
            if query.page == 1:
                return SearchPage(rows, 0, True)
            past_end = await driver.fetchrow(
                total_sql.sql, *total_sql.args(params), timeout=timeout
            )
            assert past_end is not None
            return SearchPage(rows, int(past_end["total"]), bool(past_end["exhaustive"]))
        except TimeoutError:
            await connection.invalidate()  # a cancelled statement's connection is not reused
            raise ServiceUnavailableError(
                f"The search took longer than {timeout_ms} ms and was stopped; try again, or "
                "narrow it (more words, filters)",
                retry_after=1,
            ) from None
        except BaseException as exc:
            if is_database_outage(exc):  # SQLAlchemy did not see it: keep it out of the pool
                await connection.invalidate(exc if isinstance(exc, Exception) else None)
            raise
