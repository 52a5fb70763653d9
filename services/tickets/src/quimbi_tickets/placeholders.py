"""Placeholders in canned responses: a fixed set, `{{ name }}`, substituted in one pass.

No format strings and no template engine: the text is searched for `{{ name }}` and each is
replaced by its value as plain text, so a value that itself looks like a placeholder (a
customer named "{{ticket_id}}") stays as it is, and nothing in a template can reach an
attribute or run code. A template naming a placeholder outside the set is refused (422).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDERS = {
    "customer_name": "the customer's name (their email when no name is known)",
    "customer_email": "the customer's email",
    "ticket_id": "the ticket's id",
    "ticket_subject": "the ticket's subject",
    "agent_name": "the replying agent's name (their email until the agents service announced it)",
}
# `{{ word }}`: what looks like a placeholder; anything else is plain text
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\[\]]*)\s*\}\}")


def unknown_placeholders(text: str) -> list[str]:
    """The placeholders `text` names that are not in the fixed set, in order, once each."""
    names = (match.group(1) for match in _PLACEHOLDER.finditer(text))
    return list(dict.fromkeys(name for name in names if name not in PLACEHOLDERS))


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with every known placeholder replaced by its value (values are not re-read)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in PLACEHOLDERS else match.group(0)

    return _PLACEHOLDER.sub(value, text)
