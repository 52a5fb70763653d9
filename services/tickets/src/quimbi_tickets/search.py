"""Full-text search over tickets: one document per ticket, its subject and its messages
(PostgreSQL, GIN-indexed, kept by `document_of` in the transaction that changes them).

The query is read by `websearch_to_tsquery` (quotes, `or`, `-word`; never a syntax error) in
the English configuration. A ticket matches when its document holds the words (they may be
spread over its subject and messages); its rank is the document's `ts_rank`, the subject's
words weighing double. The list filters and visibility are the inbox's
(`queries.list_filters`), in the same row as the document; the order is by rank (then oldest
first, by the time-ordered id) or the inbox's smart order. Only a bounded set of matches is
ranked (`search_statements`): a word found in most tickets costs that bound, not the whole
table. Snippets (`ts_headline`) are computed for the page only and returned as HTML-safe
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
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine

from quimbi_common.auth import Principal
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
    read_connection,
    shape_and_params,
)

SearchOrder = Literal["relevance", "smart"]
CONFIG = "english"
# ts_rank's weights (at most 1) for D, C, B, A: messages are D (to_tsvector's default), the
# subject A, weighing double
_WEIGHT_A: sa.ColumnElement[Any] = sa.literal_column("'A'::\"char\"")
RANK_WEIGHTS: sa.ColumnElement[Any] = sa.literal_column("'{0.5, 0.2, 0.4, 1.0}'::float4[]")
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


def document_of(ticket_id: str, subject: str) -> sa.ColumnElement[Any]:
    """A ticket's search document, to assign in the transaction that changed its subject or a
    message (after the messages are flushed): the subject with weight A, then every message's
    stored vector in order (concatenated by the `tsvector_concat_agg` of migration 0007: no
    text is parsed again but the subject)."""
    messages = (
        sa.select(
            sa.func.tsvector_concat_agg(
                aggregate_order_by(MESSAGES.c.search_vector, MESSAGES.c.created_at, MESSAGES.c.id)
            )
        )
        .where(MESSAGES.c.ticket_id == ticket_id)
        .scalar_subquery()
    )
    subject_vector = sa.func.setweight(sa.func.to_tsvector(_config(), subject), _WEIGHT_A)
    return subject_vector.op("||")(sa.func.coalesce(messages, sa.cast("", TSVECTOR)))


def _candidates(
    found: sa.Select[Any],
    newest: sa.Select[Any],
    tsquery: sa.ColumnElement[Any],
    candidates: int,
    ranked: bool,
    cut_short: sa.ColumnElement[bool] | None = None,
) -> tuple[sa.CTE, sa.CTE, sa.ColumnElement[bool]]:
    """The matches to rank, as (id, rank) if `ranked`, else as (id and the smart order's
    keys): (any `candidates` + 1 matches, in the order PostgreSQL finds them; the newest
    matches among the latest tickets, read only when
    the first set overflowed, i.e. the words are in more than `candidates` tickets).

    No ORDER BY bounds the first set: PostgreSQL stops after `candidates` + 1 matches (a
    sequential scan for a word in most tickets, a bitmap scan of a rarer word's index entries
    and the filters'); sorting every match (by date or rank) is what made a common word cost
    the whole table. `newest` is the latest tickets by `created_at`, limited, so it costs that
    many rows whatever the words, and it is read only on overflow (a one-time filter).
    `cut_short`: the first set may miss matches for another reason (a phrase's bounded
    pre-scan); the third value is whether the first set is not every match."""

    def kept(rows: Any) -> list[Any]:
        if ranked:
            return [rows.c.id, sa.func.ts_rank(RANK_WEIGHTS, rows.c.vector, tsquery).label("rank")]
        return [rows.c.id, rows.c.smart_score, rows.c.created_at]  # the smart order's keys

    found_rows = found.limit(candidates + 1).subquery("found")
    first = sa.select(*kept(found_rows)).cte("first_found").prefix_with("MATERIALIZED")
    window = newest.subquery("latest")
    overflow = sa.select(sa.func.count()).select_from(first).scalar_subquery() > candidates
    if cut_short is not None:
        overflow = sa.or_(overflow, cut_short)
    recent = (
        sa.select(*kept(window))
        .where(window.c.vector.op("@@")(tsquery), overflow)
        .order_by(window.c.created_at.desc())
        .limit(candidates)
        .cte("newest_found")
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


def _any_word(tsquery: Any) -> Any:
    """Any of the query's wanted words (negated ones left out by `querytree`, "and" and
    "followed by" as "or"): what a snippet marks, and how the best message is chosen, since a
    ticket may match with its words spread over its subject and messages."""
    loose = sa.func.regexp_replace(sa.func.querytree(tsquery), r"&|<(-|\d+)>", "|", "g")
    return sa.cast(loose, TSQUERY)


def _statements(
    shape: Shape, order: SearchOrder, candidates: int, phrase: bool = False
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """(the page with snippets, each row with the total and whether it is exhaustive; those two
    alone, for a page past the end) for one shape of search, its values left as parameters
    (`q`, the filters', `page_size`, `skip`).

    A ticket matches when its document (subject and messages, `document_of`) holds the words;
    the filters are in the same row, so PostgreSQL intersects the document's index with
    theirs. Only a bounded set is ranked: with at most `candidates` matches every one is
    ranked and the answer is exact; with more (a common word), the ranked set is `candidates`
    + 1 of them as PostgreSQL finds them plus the newest matches among the latest
    twice `candidates` tickets, `exhaustive` is false and `total` counts the tickets ranked."""
    tsquery = sa.func.websearch_to_tsquery(_config(), sa.bindparam("q", type_=sa.Text))
    tickets = TICKETS
    filters = filters_of(tickets, shape)
    document = tickets.c.search_document
    columns = (
        tickets.c.id.label("id"),
        document.label("vector"),
        tickets.c.created_at.label("created_at"),
        tickets.c.smart_score.label("smart_score"),
    )
    cut_short = None
    if phrase:
        # a phrase is checked on each ticket holding all its words (GIN does not know word
        # positions): at most `candidates` such tickets are examined, then the phrase
        examined = (
            sa.select(*columns)
            .where(document.op("@@")(_all_words(tsquery)), *filters)
            .limit(candidates)
            .cte("examined")
            .prefix_with("MATERIALIZED")
        )
        cut_short = sa.select(sa.func.count()).select_from(examined).scalar_subquery() >= candidates
        found = sa.select(examined).where(examined.c.vector.op("@@")(tsquery))
    else:
        found = sa.select(*columns).where(document.op("@@")(tsquery), *filters)
    newest = (
        sa.select(*columns)
        .where(*filters)
        .order_by(tickets.c.created_at.desc())
        .limit(2 * candidates)
    )
    relevance = order == "relevance"
    first, recent, overflow = _candidates(found, newest, tsquery, candidates, relevance, cut_short)
    hits = sa.union_all(sa.select(first), sa.select(recent)).subquery("hits")
    matches = (
        sa.select(hits.c.id, sa.func.max(hits.c.rank).label("rank")).group_by(hits.c.id)
        if relevance
        else sa.select(hits).distinct()
    )
    best = matches.cte("best").prefix_with("MATERIALIZED")
    total = sa.select(sa.func.count()).select_from(best).scalar_subquery()
    exhaustive = sa.not_(overflow)
    listed = (*(tickets.c[name] for name in LIST_COLUMNS), tickets.c.smart_score)
    page_size, skip = (
        sa.bindparam("page_size", type_=sa.Integer),
        sa.bindparam("skip", type_=sa.Integer),
    )
    # the page is cut from the matches alone (by rank, then id: ids are time-ordered, so older
    # first; or in the smart order); only its rows are joined to their tickets
    keys = (
        (best.c.rank.desc(), best.c.id)
        if relevance
        else (best.c.smart_score.desc(), best.c.created_at, best.c.id)
    )
    top = sa.select(best).order_by(*keys).limit(page_size).offset(skip).subquery("top")
    if relevance:
        page = sa.select(*listed, top.c.rank).join(top, top.c.id == tickets.c.id).subquery("page")
        page_order: tuple[Any, ...] = (page.c.rank.desc(), page.c.id)
    else:
        # the smart order needs no rank to cut the page: only the page's rows are ranked
        page = (
            sa.select(*listed, document.label("document"))
            .join(top, top.c.id == tickets.c.id)
            .subquery("page")
        )
        page_order = (page.c.smart_score.desc(), page.c.created_at, page.c.id)
    marked = _any_word(tsquery)
    best_message = (
        sa.select(MESSAGES.c.id, MESSAGES.c.content)
        .where(MESSAGES.c.ticket_id == page.c.id, MESSAGES.c.search_vector.op("@@")(marked))
        .order_by(
            sa.func.ts_rank(MESSAGES.c.search_vector, marked).desc(),
            MESSAGES.c.created_at,
            MESSAGES.c.id,
        )
        .limit(1)
        .lateral("best_message")
    )
    headline = sa.literal(_HEADLINE)
    matched_subject = sa.func.ts_headline(_config(), page.c.subject, marked, headline)
    if relevance:
        shown: list[Any] = list(page.c)
    else:
        rank = sa.func.ts_rank(RANK_WEIGHTS, page.c.document, tsquery).label("rank")
        shown = [*(c for c in page.c if c.name != "document"), rank]
    rows = (
        sa.select(
            *shown,
            matched_subject.label("subject_headline"),
            total.label("total"),
            exhaustive.label("exhaustive"),
            best_message.c.id.label("message_id"),
            sa.func.ts_headline(_config(), best_message.c.content, marked, headline).label(
                "message_headline"
            ),
        )
        .select_from(page.outerjoin(best_message, sa.true()))
        .order_by(*page_order)
    )
    return rows, sa.select(total.label("total"), exhaustive.label("exhaustive"))


@lru_cache(maxsize=256)
def _compiled(
    shape: Shape, order: SearchOrder, candidates: int, phrase: bool
) -> tuple[Compiled, Compiled]:
    """A search shape's two statements as asyncpg SQL, built and compiled once."""
    rows, total = _statements(shape, order, candidates, phrase)
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
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """One search's statements with its values bound (for EXPLAIN in the benchmark)."""
    shape, params = _params(query, principal, text)
    rows, total = _statements(shape, order, candidates, is_phrase(text))
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
    connection, on `queries.read_connection`, held for the statement only), cut off after
    `timeout_ms` (503: too busy for it now) rather than left to run: asyncpg cancels it."""
    shape, params = _params(query, principal, text)
    rows_sql, total_sql = _compiled(shape, order, candidates, is_phrase(text))
    timeout = timeout_ms / 1000
    async with read_connection(engine) as (connection, driver):
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
