"""Placeholder rendering: the fixed set only, one pass, no format-string behaviour."""

from __future__ import annotations

import pytest

from quimbi_tickets.placeholders import PLACEHOLDERS, render, unknown_placeholders

pytestmark = pytest.mark.unit

VALUES = {name: f"<{name}>" for name in PLACEHOLDERS}


def test_known_placeholders_are_replaced_with_or_without_spaces() -> None:
    text = "Hi {{customer_name}}, re {{ ticket_id }} ({{ticket_subject}}) - {{  agent_name }}"
    assert render(text, VALUES) == (
        "Hi <customer_name>, re <ticket_id> (<ticket_subject>) - <agent_name>"
    )


def test_values_are_not_expanded_again() -> None:
    values = {**VALUES, "customer_name": "{{ticket_id}} {0} %s {customer_name}"}
    assert render("Hi {{customer_name}}", values) == "Hi {{ticket_id}} {0} %s {customer_name}"


def test_format_string_syntax_is_plain_text() -> None:
    text = "{0} {customer_name} {customer_name.__class__} %(x)s { {ticket_id} }"
    assert unknown_placeholders(text) == []
    assert render(text, VALUES) == text


def test_unknown_placeholders_are_listed_once_in_order() -> None:
    text = "{{ nope }} {{customer_name.__class__}} {{nope}} {{}} {{ ticket_id }}"
    assert unknown_placeholders(text) == ["nope", "customer_name.__class__", ""]
