"""Time-ordered ids (UUIDv7, RFC 9562): any service can read an id's creation time from the id
itself, so a projection that does not know an id can tell a new one (wait for its event) from
an old one (answer 404 at once) without asking the owner."""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime

_HEX32 = re.compile(r"(?:^|_)([0-9a-f]{32})$")


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """48 bits of Unix milliseconds, the version, 74 random bits (RFC 9562 §5.7)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10)) & (2**80 - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)


def new_id(prefix: str) -> str:
    """`<prefix>_<32 hex>`, the shape the tickets service always used, now time-ordered."""
    return f"{prefix}_{uuid7().hex}"


def created_at(entity_id: str) -> datetime | None:
    """When a UUIDv7-based id (`prefix_<hex>` or a plain UUID) was made; None for any other id."""
    compact = entity_id.replace("-", "").lower() if len(entity_id) == 36 else entity_id
    match = _HEX32.search(compact)
    if match is None:
        return None
    value = uuid.UUID(hex=match.group(1))
    if value.version != 7 or value.variant != uuid.RFC_4122:
        return None
    return datetime.fromtimestamp((value.int >> 80) / 1000, UTC)


def is_uuid_shaped(entity_id: str) -> bool:
    """`prefix_<32 hex>` or a plain UUID: something a service could have issued."""
    compact = entity_id.replace("-", "").lower() if len(entity_id) == 36 else entity_id
    return _HEX32.search(compact) is not None
