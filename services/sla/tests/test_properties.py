"""Properties of the clock arithmetic that must hold for any calendar, start and pause."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quimbi_common.enums import SlaMetric
from quimbi_sla import domain
from quimbi_sla.calendar import WALL_CLOCK, BusinessCalendar, TimeCounter

pytestmark = pytest.mark.unit
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]

instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10))


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    cuts = sorted(draw(st.sets(st.integers(0, 24 * 4), max_size=4)))
    pairs = [(a * 15, b * 15) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if b > a]
    return tuple(pairs)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    week = tuple(draw(day_hours()) for _ in range(7))
    if not any(week):
        week = (((540, 1020),), *week[1:])
    holidays = draw(st.frozensets(st.dates(date(2020, 1, 1), date(2031, 12, 31)), max_size=20))
    return BusinessCalendar(ZoneInfo(draw(st.sampled_from(ZONES))), week, holidays)


counters = st.one_of(st.just(WALL_CLOCK), calendars())


def a_clock(
    counter: TimeCounter, start: datetime, fr: timedelta, extra: timedelta
) -> domain.SlaClock:
    return domain.SlaClock(
        started_at=start,
        warning_percent=80,
        counter=counter,
        first_response=domain.MetricClock(fr + timedelta(seconds=1)),
        resolution=domain.MetricClock(fr + extra + timedelta(seconds=1)),
    )


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations)
def test_a_deadline_is_never_before_its_start(
    calendar: BusinessCalendar, start: datetime, target: timedelta
) -> None:
    assert calendar.add(start, target) >= start


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations)
def test_business_time_elapsed_never_exceeds_wall_time(
    calendar: BusinessCalendar, start: datetime, span: timedelta
) -> None:
    assert calendar.elapsed(start, start + span) <= span


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations.filter(lambda d: d > timedelta(0)))
def test_adding_business_time_then_measuring_it_gives_it_back(
    calendar: BusinessCalendar, start: datetime, target: timedelta
) -> None:
    assert calendar.elapsed(start, calendar.add(start, target)) == target


@given(instants, durations)
def test_without_business_hours_a_deadline_is_plain_addition(
    start: datetime, target: timedelta
) -> None:
    c = a_clock(WALL_CLOCK, start, target, timedelta(0))
    assert domain.deadline(c, SlaMetric.FIRST_RESPONSE) == start + target + timedelta(seconds=1)


@settings(max_examples=150, deadline=None)
@given(
    counters,
    instants,
    durations,
    durations,
    st.timedeltas(timedelta(0), timedelta(days=12)),
    st.timedeltas(timedelta(0), timedelta(days=5)),
)
def test_a_pause_never_moves_a_deadline_earlier(
    counter: TimeCounter,
    start: datetime,
    fr: timedelta,
    extra: timedelta,
    pause_after: timedelta,
    pause_length: timedelta,
) -> None:
    running = a_clock(counter, start, fr, extra)
    paused_at = start + pause_after
    resumed = domain.resume(domain.pause(running, paused_at), paused_at + pause_length)
    for metric in domain.METRICS:
        before = domain.deadline(running, metric)
        after = domain.deadline(resumed, metric)
        assert after >= before
        # and it moves by no more than the paused time
        assert after - before <= pause_length or counter is not WALL_CLOCK
        if counter is WALL_CLOCK and paused_at < before:
            assert after - before == pause_length


@settings(max_examples=100, deadline=None)
@given(counters, instants, durations, durations, st.integers(1, 100), durations)
def test_the_evaluated_deadline_and_warning_match_their_definitions(
    counter: TimeCounter,
    start: datetime,
    fr: timedelta,
    extra: timedelta,
    warning: int,
    later: timedelta,
) -> None:
    c = replace(a_clock(counter, start, fr, extra), warning_percent=warning)
    evaluation = domain.evaluate(c, start + later)
    for metric in domain.METRICS:
        assert evaluation.metrics[metric].deadline == domain.deadline(c, metric)
        assert evaluation.metrics[metric].warning_at == domain.warning_at(c, metric)
        assert evaluation.metrics[metric].status is domain.status(c, metric, start + later)
    if evaluation.next_check is not None:
        assert evaluation.next_check > start + later
