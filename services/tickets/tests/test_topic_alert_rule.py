"""The inbox flags a topic alert in SQL (ILIKE); the score breakdown in Python
(quimbi_common.topic_alerts). Both must say the same for every keyword, "STRASSE" and "straße"
included, on the real PostgreSQL the service runs on."""

from __future__ import annotations

from typing import Any

import pytest

from quimbi_common.topic_alerts import matched_topic_alerts, parse_topic_alerts
from quimbi_tickets.domain import like_pattern

pytestmark = pytest.mark.service

TEXTS = ["Hauptstraße 5", "HAUPTSTRASSE 5", "Ärger mit der Lieferung", "ΣΟΦΙΑ", "50%_off\\ today"]
KEYWORDS = "STRASSE, straße, Straße, ärger, ÄRGER, σοφια, 50%_off\\, refund, Lieferung"


async def test_the_breakdown_s_python_match_agrees_with_the_inbox_s_ilike(db: Any) -> None:
    keywords = parse_topic_alerts(KEYWORDS)
    assert "STRASSE" in keywords
    assert "straße" not in keywords  # one keyword by casefold
    keywords.append("straße")  # and the other spelling, checked on its own
    for keyword in keywords:
        for text in TEXTS:
            in_sql = await db.fetchval(
                "SELECT $1::text ILIKE $2::text ESCAPE '\\'", text, like_pattern(keyword)
            )
            in_python = matched_topic_alerts([keyword], [text]) == [keyword]
            assert in_sql is in_python, (keyword, text)
