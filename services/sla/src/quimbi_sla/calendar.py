"""Counting time for SLA clocks: plain wall time, or business hours in a calendar.

Pure arithmetic (no I/O). Instants are timezone-aware; business hours are wall-clock times in
the calendar's time zone, turned into UTC instants day by day with zoneinfo, so DST changes
and nights, weekends and holidays are skipped exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

ZERO = timedelta(0)
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
# How far ahead a calendar may be searched for open hours before it is judged to have none.
_MAX_CLOSED_DAYS = 3700

Interval = tuple[int, int]  # minutes after local midnight, [start, end), end up to 1440


class TimeCounter(Protocol):
    """How a clock counts time: `add` a counted duration, or measure the counted `elapsed`."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta: ...


class WallClock:
    """Every second counts: deadlines are plain addition."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        return start + max(duration, ZERO)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return max(end - start, ZERO)


WALL_CLOCK = WallClock()


@dataclass(frozen=True)
class BusinessCalendar:
    """Open hours per weekday (Monday first) in a time zone, minus holidays (local dates)."""

    timezone: ZoneInfo
    weekly_hours: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if len(self.weekly_hours) != 7:
            raise ValueError("weekly hours need one entry per weekday")
        for intervals in self.weekly_hours:
            for start, end in intervals:
                if not 0 <= start < end <= MINUTES_PER_DAY:
                    raise ValueError(f"invalid business hours interval {start}-{end}")
        if not any(self.weekly_hours):
            raise ValueError("a business calendar needs open hours on at least one weekday")

    def _day_intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        return _open_hours_of_day(self, day)

    def open_intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (UTC) from `start` on, the first clipped to start at `start`."""
        day = start.astimezone(self.timezone).date() - timedelta(days=1)
        floor = start  # intervals never overlap, even where DST gaps bend wall times
        closed_days = 0
        while closed_days < _MAX_CLOSED_DAYS:
            found = False
            for opens, closes in self._day_intervals(day):
                found = True
                if closes > floor:
                    yield max(opens, floor), closes
                    floor = closes
            closed_days = 0 if found else closed_days + 1
            day += timedelta(days=1)
        raise ValueError("the business calendar has no open hours ahead")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant when `duration` of business time has passed since `start`."""
        if duration <= ZERO:
            return start
        remaining = duration
        for opens, closes in self.open_intervals(start):
            span = closes - opens
            if remaining <= span:
                return opens + remaining
            remaining -= span
        raise AssertionError("unreachable: open_intervals is endless or raises")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants (zero when `end` is not after `start`)."""
        total = ZERO
        if end <= start:
            return total
        for opens, closes in self.open_intervals(start):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total


@lru_cache(maxsize=8192)
def _open_hours_of_day(
    calendar: BusinessCalendar, day: date
) -> tuple[tuple[datetime, datetime], ...]:
    """The open intervals of one local day, as UTC instants (cached: clocks share their days)."""
    if day in calendar.holidays:
        return ()
    midnight = datetime.combine(day, time(0), tzinfo=calendar.timezone)
    intervals = []
    for start, end in calendar.weekly_hours[day.weekday()]:
        # Wall-clock arithmetic on the local midnight, then to UTC: 09:00 stays 09:00 local
        # on DST days; a time inside a spring-forward gap maps to the instant just after.
        opens = (midnight + timedelta(minutes=start)).astimezone(UTC)
        closes = (midnight + timedelta(minutes=end)).astimezone(UTC)
        if closes > opens:
            intervals.append((opens, closes))
    return tuple(intervals)


# --- parsing the settings -----------------------------------------------------------------------

_HOURS_ITEM = re.compile(
    r"^\s*(?P<days>[a-z]{3}(?:\s*-\s*[a-z]{3})?(?:\s*,\s*[a-z]{3}(?:\s*-\s*[a-z]{3})?)*)"
    r"\s+(?P<ranges>\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}(?:\s*,\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2})*)"
    r"\s*$"
)


def _minutes(text: str) -> int:
    hours, minutes = (int(part) for part in text.strip().split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"invalid time of day {text!r}")
    return hours * 60 + minutes


def _days(text: str) -> list[int]:
    days: list[int] = []
    for part in text.split(","):
        first, _, last = (p.strip() for p in part.partition("-"))
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"unknown weekday in {part!r}")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        if b < a:
            raise ValueError(f"weekday range {part!r} runs backwards")
        days.extend(range(a, b + 1))
    return days


def parse_weekly_hours(text: str) -> tuple[tuple[Interval, ...], ...]:
    """`"mon-fri 09:00-17:00; sat 10:00-12:00,13:00-15:00"` → intervals per weekday."""
    week: list[list[Interval]] = [[] for _ in DAY_NAMES]
    for item in filter(None, (chunk.strip().lower() for chunk in text.split(";"))):
        match = _HOURS_ITEM.match(item)
        if not match:
            raise ValueError(f"cannot read business hours {item!r} (e.g. 'mon-fri 09:00-17:00')")
        ranges = []
        for span in match["ranges"].split(","):
            start, end = (_minutes(t) for t in span.split("-"))
            if end <= start:
                raise ValueError(f"business hours {span.strip()!r} end before they start")
            ranges.append((start, end))
        for day in _days(match["days"]):
            week[day].extend(ranges)
    result = []
    for intervals in week:
        merged: list[Interval] = []
        for start, end in sorted(intervals):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        result.append(tuple(merged))
    return tuple(result)


def parse_holidays(text: str) -> frozenset[date]:
    """`"2025-12-25, 2026-01-01"` → local dates on which no business hours count."""
    return frozenset(date.fromisoformat(p.strip()) for p in text.split(",") if p.strip())


def format_weekly_hours(weekly_hours: tuple[tuple[Interval, ...], ...]) -> dict[str, list[str]]:
    """Weekly hours as the API shows them: `{"mon": ["09:00-17:00"], ...}`."""

    def hhmm(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    return {
        name: [f"{hhmm(start)}-{hhmm(end)}" for start, end in intervals]
        for name, intervals in zip(DAY_NAMES, weekly_hours, strict=True)
    }
