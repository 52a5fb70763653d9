"""Topic alerts: one parse and one match rule for the inbox and the score breakdown."""

from __future__ import annotations

import pytest

from quimbi_common.errors import UnprocessableError
from quimbi_common.topic_alerts import (
    matched_topic_alerts,
    parse_topic_alerts,
    topic_alert_keywords,
)

pytestmark = pytest.mark.unit


def test_keywords_are_trimmed_collapsed_and_deduplicated_by_casefold() -> None:
    assert parse_topic_alerts(" refund ,  Chargeback,,REFUND, late  delivery ") == [
        "refund",
        "Chargeback",
        "late delivery",
    ]
    # then "STRASSE" and "straße" are one keyword, spelled as first given
    assert parse_topic_alerts("STRASSE, straße,Strasse") == ["STRASSE"]
    assert parse_topic_alerts(None) == []
    assert parse_topic_alerts(" , ") == []


def test_a_keyword_matches_as_postgresql_ilike_does() -> None:
    texts = ["Payment not processing", "I want my REFUNDS now"]
    assert matched_topic_alerts(["Refund", "outage", "payment"], texts) == ["Refund", "payment"]
    assert matched_topic_alerts(["late delivery"], ["a LATE DELIVERY again"]) == ["late delivery"]
    # then ß is not folded to ss, as lower() (and ILIKE) leave it
    assert matched_topic_alerts(["STRASSE"], ["Hauptstraße 5"]) == []
    assert matched_topic_alerts(["straße"], ["HAUPTSTRASSE 5"]) == []
    assert matched_topic_alerts(["Straße"], ["hauptstraße 5"]) == ["Straße"]
    assert matched_topic_alerts([], ["anything"]) == []
    assert matched_topic_alerts(["outage"], ["all good", ""]) == []


def test_caps_are_a_422_naming_the_parameter() -> None:
    assert topic_alert_keywords("a,b", max_keywords=2, max_length=1) == ["a", "b"]
    with pytest.raises(UnprocessableError, match=r"query\.topic_alerts: at most 2 keywords"):
        topic_alert_keywords("a,b,c", max_keywords=2)
    with pytest.raises(UnprocessableError, match="each keyword at most 3 characters"):
        topic_alert_keywords("abcd", max_length=3)
