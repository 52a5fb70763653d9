"""Topic alerts, the agent's comma-separated keywords: one rule for the inbox (tickets) and the
score breakdown (scoring), so a ticket the list flags is the one whose breakdown says it matched.

Keywords are trimmed, inner whitespace collapsed and repeats dropped case-insensitively by
`str.casefold` ("STRASSE" and "straße" are one keyword; the first spelling stays). A keyword
matches a text it is a substring of under `str.lower`, which is what PostgreSQL's ILIKE does
(it lower-cases both sides; PostgreSQL 16 has no casefold), so the inbox's SQL and this module's
Python agree ("STRASSE" does not match "Hauptstraße" in either).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import UnprocessableError

MAX_KEYWORDS = 20
MAX_KEYWORD_LENGTH = 100


def parse_topic_alerts(raw: str | None) -> list[str]:
    """`" refund ,REFUND, late  delivery"` → `["refund", "late delivery"]`."""
    seen: set[str] = set()
    keywords: list[str] = []
    for part in (raw or "").split(","):
        keyword = " ".join(part.split())
        if keyword and keyword.casefold() not in seen:
            seen.add(keyword.casefold())
            keywords.append(keyword)
    return keywords


def topic_alert_keywords(
    raw: str | None, max_keywords: int = MAX_KEYWORDS, max_length: int = MAX_KEYWORD_LENGTH
) -> list[str]:
    """The parsed keywords of a `topic_alerts` query parameter, or a 422 naming the cap."""
    keywords = parse_topic_alerts(raw)
    problem = None
    if len(keywords) > max_keywords:
        problem = f"at most {max_keywords} keywords"
    elif any(len(k) > max_length for k in keywords):
        problem = f"each keyword at most {max_length} characters"
    if problem:
        raise UnprocessableError(
            f"query.topic_alerts: {problem}",
            errors=[{"loc": ["query", "topic_alerts"], "msg": problem, "type": "value_error"}],
        )
    return keywords


def matched_topic_alerts(keywords: Sequence[str], texts: Iterable[str]) -> list[str]:
    """The keywords (as given) contained in any of the texts, matched as ILIKE matches."""
    wanted = {k: k.lower() for k in keywords if k}
    if not wanted:
        return []
    found: set[str] = set()
    for text in texts:
        lowered = text.lower()
        found.update(k for k, low in wanted.items() if low in lowered)
        if len(found) == len(wanted):
            break
    return [k for k in wanted if k in found]
