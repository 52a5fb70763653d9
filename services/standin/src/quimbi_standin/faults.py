"""Fault injection state for the stand-in: per-endpoint failures, latency and call counters.

The state lives in process memory on purpose: the stand-in runs as one worker and tests drive
it through the admin API, so there is nothing to persist or share between processes.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Literal, cast, get_args

Endpoint = Literal["analyze", "message", "actions"]
Target = Literal["analyze", "message", "actions", "all"]
Mode = Literal["ok", "error", "timeout"]

ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)


def expand(target: Target) -> tuple[Endpoint, ...]:
    """The endpoints a target names: "all" means every one of them."""
    return ENDPOINTS if target == "all" else (cast(Endpoint, target),)


@dataclass(frozen=True)
class Fault:
    """How one endpoint should behave; `count` limits the fault to the next N calls."""

    mode: Mode = "ok"
    status: int = 500
    latency_ms: int = 0
    count: int | None = None


class FaultTriggered(Exception):
    """Raised instead of answering, so the app turns it into an error response."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class FaultState:
    """The faults in force per endpoint and how many calls each endpoint has received."""

    def __init__(self, base_latency_ms: int = 0, timeout_s: float = 120.0) -> None:
        self.base_latency_ms = base_latency_ms
        self.timeout_s = timeout_s
        self.faults: dict[Endpoint, Fault] = {e: Fault() for e in ENDPOINTS}
        self.calls: dict[Endpoint, int] = {e: 0 for e in ENDPOINTS}

    def set(self, target: Target, fault: Fault) -> None:
        """Install a fault; "all" gives every endpoint its own copy (and its own count)."""
        for endpoint in expand(target):
            self.faults[endpoint] = fault

    def reset_faults(self) -> None:
        self.faults = {e: Fault() for e in ENDPOINTS}

    def reset_calls(self) -> None:
        self.calls = {e: 0 for e in ENDPOINTS}

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {e: asdict(f) for e, f in self.faults.items()}

    def take(self, endpoint: Endpoint) -> Fault:
        """Count one call and return the fault that applies to it, using up one of a count."""
        self.calls[endpoint] += 1
        fault = self.faults[endpoint]
        if fault.count is not None:
            remaining = fault.count - 1
            self.faults[endpoint] = replace(fault, count=remaining) if remaining > 0 else Fault()
        return fault

    async def apply(self, endpoint: Endpoint) -> None:
        """Delay and/or fail the current call as configured; return normally to let it through."""
        fault = self.take(endpoint)
        delay_ms = self.base_latency_ms + fault.latency_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if fault.mode == "error":
            raise FaultTriggered(fault.status, f"injected fault on '{endpoint}'")
        if fault.mode == "timeout":
            # Far longer than any client timeout; a client that waits this long gets a 504.
            await asyncio.sleep(self.timeout_s)
            raise FaultTriggered(504, f"injected timeout on '{endpoint}'")


def parse_fail_endpoints(spec: str) -> dict[Endpoint, Fault]:
    """Parse STANDIN_FAIL_ENDPOINTS, e.g. "analyze,message:503,actions:timeout" or "all".

    Each item is `endpoint[:status|timeout]`; a bare endpoint fails with 500. Bad input raises
    ValueError so a misconfigured stand-in refuses to start instead of silently succeeding.
    """
    faults: dict[Endpoint, Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, how = item.partition(":")
        name, how = name.strip(), how.strip().lower()
        if name not in get_args(Target):
            raise ValueError(f"unknown endpoint {name!r} in STANDIN_FAIL_ENDPOINTS")
        if how == "timeout":
            fault = Fault(mode="timeout")
        elif how == "" or (how.isdigit() and 400 <= int(how) <= 599):
            fault = Fault(mode="error", status=int(how or 500))
        else:
            raise ValueError(f"bad fault {how!r} for {name!r}: use a 4xx/5xx status or 'timeout'")
        for endpoint in expand(cast(Target, name)):
            faults[endpoint] = fault
    return faults
