"""Business-hours arithmetic: nights, weekends, holidays, DST, and the settings' formats."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from quimbi_sla.calendar import (
    WALL_CLOCK,
    BusinessCalendar,
    format_weekly_hours,
    parse_holidays,
    parse_weekly_hours,
)

pytestmark = pytest.mark.unit
NINE_TO_FIVE = parse_weekly_hours("mon-fri 09:00-17:00")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def office(
    tz: str = "UTC", hours: str = "mon-fri 09:00-17:00", holidays: str = ""
) -> BusinessCalendar:
    return BusinessCalendar(ZoneInfo(tz), parse_weekly_hours(hours), parse_holidays(holidays))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_business_time_within_one_day_is_plain_addition() -> None:
    # given Monday 10:00, when 2 business hours are added, then it is 12:00 the same day
    assert office().add(utc(2025, 6, 2, 10), timedelta(hours=2)) == utc(2025, 6, 2, 12)


def test_business_time_skips_the_night() -> None:
    assert office().add(utc(2025, 6, 2, 16), timedelta(hours=2)) == utc(2025, 6, 3, 10)


def test_business_time_skips_the_weekend() -> None:
    # given Friday 16:00, then 2 business hours end on Monday 10:00
    assert office().add(utc(2025, 6, 6, 16), timedelta(hours=2)) == utc(2025, 6, 9, 10)


def test_business_time_skips_holidays() -> None:
    calendar = office(holidays="2025-06-09")
    assert calendar.add(utc(2025, 6, 6, 16), timedelta(hours=2)) == utc(2025, 6, 10, 10)


def test_a_start_outside_hours_counts_from_the_next_opening() -> None:
    assert office().add(utc(2025, 6, 7, 8), timedelta(hours=1)) == utc(2025, 6, 9, 10)


def test_a_target_ending_at_closing_time_is_due_at_closing_time() -> None:
    assert office().add(utc(2025, 6, 2, 9), timedelta(hours=8)) == utc(2025, 6, 2, 17)


def test_zero_business_time_is_the_start_itself_even_outside_hours() -> None:
    night = utc(2025, 6, 2, 23)
    assert office().add(night, timedelta(0)) == night


def test_business_hours_follow_local_time_across_a_dst_change() -> None:
    # given Berlin office hours; DST starts on Sunday 2025-03-30 (UTC+1 → UTC+2)
    calendar = office("Europe/Berlin")
    friday_4pm = datetime(2025, 3, 28, 16, tzinfo=BERLIN)
    # when 2 business hours are added, then Monday 10:00 local, which is now 08:00 UTC
    due = calendar.add(friday_4pm, timedelta(hours=2))
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime(2025, 3, 31, 10)
    assert due == utc(2025, 3, 31, 8)


def test_a_day_with_a_dst_jump_has_23_hours_around_the_clock() -> None:
    # given a 24/7 calendar in New York, where 2025-03-09 loses an hour
    calendar = office("America/New_York", "mon-sun 00:00-24:00")
    start = datetime(2025, 3, 9, 0, tzinfo=NEW_YORK)
    end = datetime(2025, 3, 10, 0, tzinfo=NEW_YORK)
    assert calendar.elapsed(start, end) == timedelta(hours=23)
    assert calendar.add(start, timedelta(hours=23)) == end


def test_elapsed_counts_only_open_hours() -> None:
    # Friday 16:00 → Monday 10:00 holds one hour on Friday and one on Monday
    assert office().elapsed(utc(2025, 6, 6, 16), utc(2025, 6, 9, 10)) == timedelta(hours=2)


def test_elapsed_backwards_is_zero() -> None:
    assert office().elapsed(utc(2025, 6, 9), utc(2025, 6, 6)) == timedelta(0)


def test_wall_clock_is_plain_arithmetic() -> None:
    start = utc(2025, 6, 7, 3)
    assert WALL_CLOCK.add(start, timedelta(hours=30)) == start + timedelta(hours=30)
    assert WALL_CLOCK.elapsed(start, start + timedelta(hours=5)) == timedelta(hours=5)


def test_weekly_hours_read_days_ranges_and_split_days() -> None:
    week = parse_weekly_hours("mon-wed,fri 09:00-12:00,13:00-17:00; sat 10:00-14:00")
    assert week[0] == ((540, 720), (780, 1020))
    assert week[3] == ()
    assert week[5] == ((600, 840),)
    assert format_weekly_hours(week)["sat"] == ["10:00-14:00"]


def test_overlapping_ranges_are_merged() -> None:
    assert parse_weekly_hours("mon 09:00-12:00; mon 11:00-17:00")[0] == ((540, 1020),)


@pytest.mark.parametrize(
    "text",
    ["mon-fri", "mon-fri 17:00-09:00", "fri-mon 09:00-17:00", "xyz 09:00-10:00", "mon 25:00-26:00"],
)
def test_unreadable_weekly_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_weekly_hours(text)


def test_a_calendar_without_open_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="open hours"):
        BusinessCalendar(ZoneInfo("UTC"), parse_weekly_hours(""))


def test_holidays_are_iso_dates() -> None:
    assert parse_holidays(" 2025-12-25, 2026-01-01 ,") == {date(2025, 12, 25), date(2026, 1, 1)}
