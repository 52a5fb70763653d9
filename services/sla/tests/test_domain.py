"""SLA clocks: statuses over time, pauses, completion, and the scheduler's next check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from quimbi_common.enums import SlaMetric, SlaStatus
from quimbi_sla import domain
from quimbi_sla.calendar import WALL_CLOCK, BusinessCalendar, TimeCounter, parse_weekly_hours

pytestmark = pytest.mark.unit
FR, RES = SlaMetric.FIRST_RESPONSE, SlaMetric.RESOLUTION
START = datetime(2025, 6, 2, 9, tzinfo=UTC)  # a Monday, 09:00 UTC
OFFICE = BusinessCalendar(ZoneInfo("UTC"), parse_weekly_hours("mon-fri 09:00-17:00"))


def clock(
    first_response: timedelta = timedelta(hours=1),
    resolution: timedelta = timedelta(hours=8),
    warning: int = 80,
    counter: TimeCounter = WALL_CLOCK,
) -> domain.SlaClock:
    return domain.SlaClock(
        started_at=START,
        warning_percent=warning,
        counter=counter,
        first_response=domain.MetricClock(first_response),
        resolution=domain.MetricClock(resolution),
    )


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def done(c: domain.SlaClock, metric: SlaMetric, when: datetime) -> domain.SlaClock:
    return c.with_metric(metric, domain.MetricClock(c.metric(metric).target, done_at=when))


def test_deadline_is_creation_plus_target_in_wall_time() -> None:
    assert domain.deadline(clock(), FR) == at(60)
    assert domain.deadline(clock(), RES) == at(480)


def test_a_metric_is_pending_then_at_risk_at_the_warning_share_then_breached() -> None:
    c = clock()
    assert domain.status(c, FR, at(47)) is SlaStatus.PENDING
    assert domain.status(c, FR, at(48)) is SlaStatus.AT_RISK  # 80 % of 60 min
    assert domain.status(c, FR, at(59.9)) is SlaStatus.AT_RISK
    assert domain.status(c, FR, at(60)) is SlaStatus.BREACHED


def test_an_answer_by_the_deadline_meets_it_and_a_late_one_breaches_it() -> None:
    assert domain.status(done(clock(), FR, at(60)), FR, at(600)) is SlaStatus.MET
    assert domain.status(done(clock(), FR, at(61)), FR, at(600)) is SlaStatus.BREACHED


def test_a_warning_at_100_percent_goes_straight_from_pending_to_breached() -> None:
    c = clock(warning=100)
    assert domain.status(c, FR, at(59)) is SlaStatus.PENDING
    assert domain.status(c, FR, at(60)) is SlaStatus.BREACHED


def test_a_paused_clock_freezes_its_status_and_remaining_time() -> None:
    c = domain.pause(clock(), at(30))
    assert domain.status(c, FR, at(200)) is SlaStatus.PENDING
    assert domain.report(c, FR, at(200)).seconds_remaining == 30 * 60
    assert domain.report(c, FR, at(200)).percent_used == 50.0
    assert domain.next_check(c, at(200)) is None


def test_a_resumed_clock_moves_its_deadlines_out_by_the_paused_time() -> None:
    c = domain.resume(domain.pause(clock(), at(30)), at(50))
    assert domain.deadline(c, FR) == at(80)
    assert domain.deadline(c, RES) == at(500)
    assert c.total_paused == timedelta(minutes=20)
    assert not c.is_paused


def test_while_paused_the_report_shows_the_deadline_as_if_resumed_now() -> None:
    c = domain.pause(clock(), at(30))
    assert domain.report(c, FR, at(50)).deadline == at(80)


def test_a_pause_after_a_breach_does_not_undo_it() -> None:
    c = domain.resume(domain.pause(clock(), at(70)), at(200))
    assert domain.deadline(c, FR) == at(60)
    assert domain.status(c, FR, at(201)) is SlaStatus.BREACHED
    assert domain.deadline(c, RES) == at(610)


def test_an_answer_during_a_pause_is_measured_at_the_pause() -> None:
    # given the clock paused at 50 min, when the agent answers at 70 min (deadline 60)
    c = done(domain.pause(clock(), at(50)), FR, at(70))
    assert domain.status(c, FR, at(71)) is SlaStatus.MET
    # then resuming later keeps it met
    assert domain.status(domain.resume(c, at(90)), FR, at(91)) is SlaStatus.MET


def test_a_finished_metric_gets_no_pause_credit() -> None:
    c = domain.resume(domain.pause(done(clock(), FR, at(10)), at(20)), at(40))
    assert domain.deadline(c, FR) == at(60)
    assert domain.deadline(c, RES) == at(500)


def test_a_night_long_pause_moves_no_business_hours_deadline() -> None:
    # given business hours 09-17 and a 9 h target: due Tuesday 10:00
    c = clock(first_response=timedelta(hours=9), counter=OFFICE)
    tuesday_10 = START + timedelta(days=1, hours=1)
    assert domain.deadline(c, FR) == tuesday_10
    # when paused from Monday 17:30 to Tuesday 08:00, then the deadline does not move
    night = domain.resume(domain.pause(c, at(8.5 * 60)), at(23 * 60))
    assert domain.deadline(night, FR) == tuesday_10
    # when paused from Monday 16:30 instead, then it moves by the half hour of business time
    evening = domain.resume(domain.pause(c, at(7.5 * 60)), at(23 * 60))
    assert domain.deadline(evening, FR) == tuesday_10 + timedelta(minutes=30)


def test_next_check_is_the_warning_then_the_deadline_then_nothing() -> None:
    c = clock()
    assert domain.next_check(c, at(0)) == at(48)
    assert domain.next_check(c, at(50)) == at(60)
    # first response breached: the resolution's warning (80 % of 8 h) is next
    assert domain.next_check(c, at(61)) == at(384)
    both_done = done(done(c, FR, at(10)), RES, at(20))
    assert domain.next_check(both_done, at(30)) is None


def test_report_shows_elapsed_remaining_and_share_used() -> None:
    r = domain.report(clock(), FR, at(45))
    assert (r.status, r.target_seconds, r.elapsed_seconds) == (SlaStatus.PENDING, 3600, 2700)
    assert (r.seconds_remaining, r.percent_used) == (900, 75.0)
    overdue = domain.report(clock(), FR, at(90))
    assert overdue.seconds_remaining == -1800
    assert overdue.percent_used == 150.0
