"""Pure rules of the live stream: an event becomes an item, an item has an audience, an item
becomes an SSE frame; stream ids are compared as numbers. No I/O here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# What the live inbox shows, and why: a new or changed ticket, a message, a new score (the
# list order moves, the breakdown on hover), an SLA warning or breach, a deletion.
LIVE_TOPICS = (
    "ticket.created",
    "ticket.updated",
    "ticket.deleted",
    "message.added",
    "ticket.scored",
    "sla.warning",
    "sla.breached",
)
# Items of these topics do not say who the ticket is assigned to: the feed looks it up.
NEEDS_ASSIGNEE = frozenset({"message.added", "ticket.scored", "sla.warning", "sla.breached"})

_TICKET_FIELDS = (
    "id",
    "customer_id",
    "subject",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_agent_id",
    "created_at",
    "updated_at",
    "customer_sentiment",
    "estimated_difficulty",
    "version",
)
_SLA_FIELDS = (
    "metric",
    "priority",
    "first_response_status",
    "first_response_deadline",
    "resolution_status",
    "resolution_deadline",
    "is_paused",
    "version",
)
MESSAGE_PREVIEW_CHARS = 200

STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")


@dataclass(frozen=True)
class Item:
    """One entry of the live log: its audience (assignee now, and before a reassignment) and
    the JSON the stream sends."""

    topic: str
    ticket_id: str
    assignee: str | None
    previous_assignee: str | None
    payload: dict[str, Any]

    def fields(self) -> dict[str, str]:
        """The Redis Stream entry: audience unparsed, so the fanout never decodes JSON."""
        return {
            "t": self.topic,
            "a": self.assignee or "",
            "p": self.previous_assignee or "",
            "d": json.dumps(self.payload, separators=(",", ":"), default=str),
        }


def item_for(topic: str, event: dict[str, Any]) -> Item | None:
    """What a CloudEvents envelope of `topic` shows on the stream (None: nothing to show).
    The assignee of a `NEEDS_ASSIGNEE` item is filled in by the feed."""
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    base = {"type": topic, "event_id": event.get("id"), "time": event.get("time")}
    if topic in ("ticket.created", "ticket.updated"):
        ticket = {name: data.get(name) for name in _TICKET_FIELDS}
        customer = data.get("customer") or {}
        ticket["customer_name"] = customer.get("name")
        changes = data.get("changes") or {}
        previous = None
        moved = changes.get("assigned_agent_id") if isinstance(changes, dict) else None
        if isinstance(moved, dict) and moved.get("old") != data.get("assigned_agent_id"):
            previous = moved.get("old")
        payload = {**base, "ticket_id": data.get("id"), "ticket": ticket}
        if topic == "ticket.updated":
            payload["changed"] = sorted(changes) if isinstance(changes, dict) else []
        return Item(topic, str(data.get("id")), data.get("assigned_agent_id"), previous, payload)
    if topic == "ticket.deleted":
        # Who had it is gone with the row: only those who see every ticket are told.
        payload = {**base, "ticket_id": data.get("id"), "version": data.get("version")}
        return Item(topic, str(data.get("id")), None, None, payload)
    if topic == "message.added":
        content = str(data.get("content") or "")
        message = {
            "id": data.get("id"),
            "from_agent": data.get("from_agent"),
            "from_name": data.get("from_name"),
            "created_at": data.get("created_at"),
            "preview": content[:MESSAGE_PREVIEW_CHARS],
            "detected_intent": data.get("detected_intent"),
            "ticket_status": data.get("ticket_status"),
        }
        payload = {**base, "ticket_id": data.get("ticket_id"), "message": message}
        return Item(topic, str(data.get("ticket_id")), None, None, payload)
    if topic == "ticket.scored":
        score = {
            "smart_score": data.get("smart_score"),
            "parts": data.get("parts"),
            "computed_at": data.get("computed_at"),
            "version": data.get("version"),
        }
        payload = {**base, "ticket_id": data.get("ticket_id"), "score": score}
        return Item(topic, str(data.get("ticket_id")), None, None, payload)
    if topic in ("sla.warning", "sla.breached"):
        sla = {name: data.get(name) for name in _SLA_FIELDS}
        payload = {**base, "ticket_id": data.get("ticket_id"), "sla": sla}
        return Item(topic, str(data.get("ticket_id")), None, None, payload)
    return None


def with_assignee(item: Item, assignee: str | None) -> Item:
    payload = {**item.payload, "assigned_agent_id": assignee}
    return Item(item.topic, item.ticket_id, assignee, item.previous_assignee, payload)


def may_see(agent_id: str | None, sees_all: bool, assignee: str, previous: str) -> bool:
    """The REST visibility rule (ARCHITECTURE §3): senior agents and up see every ticket, an
    agent only those assigned to them; an agent also hears that a ticket left them (the item
    names the new assignee, so their list drops it)."""
    if sees_all:
        return True
    return bool(agent_id) and agent_id in (assignee, previous)


def stream_key(value: str) -> tuple[int, int]:
    """A Redis Stream id (`<ms>-<seq>`) as a comparable pair."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def frame(entry_id: str, topic: str, data: str) -> bytes:
    """One SSE event (the data is one line of JSON, so one `data:` line)."""
    return f"id: {entry_id}\nevent: {topic}\ndata: {data}\n\n".encode()


def control(event: str, data: dict[str, Any], entry_id: str | None = None) -> bytes:
    """A stream's own event (`ready`, `reset`, `end`); with an id, a reconnect resumes there."""
    head = f"id: {entry_id}\n" if entry_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"
