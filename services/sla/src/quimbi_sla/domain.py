"""SLA clocks as pure values: deadlines, pauses and the status of each metric at an instant.

A metric (first response, resolution) has a target of counted time (wall time, or business
hours). Its *active time* is the counted time since the ticket was created, minus the counted
time it spent paused while it was still running. The deadline is the instant the active time
reaches the target; the warning instant is when it reaches `warning_percent` of the target.

Pauses are credited on resume, only to metrics still running when the pause began (not done
and not yet breached), so a pause never moves a deadline earlier and never un-breaches one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from quimbi_common.enums import SlaMetric, SlaStatus

from .calendar import ZERO, TimeCounter

METRICS = (SlaMetric.FIRST_RESPONSE, SlaMetric.RESOLUTION)
RUNNING = (SlaStatus.PENDING, SlaStatus.AT_RISK)


@dataclass(frozen=True)
class MetricClock:
    """One metric: its target, the pause time credited to it, and when it was fulfilled."""

    target: timedelta
    paused_credit: timedelta = ZERO
    done_at: datetime | None = None


@dataclass(frozen=True)
class SlaClock:
    """Both metrics of one ticket, counted with one time counter."""

    started_at: datetime
    warning_percent: int
    counter: TimeCounter
    first_response: MetricClock
    resolution: MetricClock
    paused_at: datetime | None = None
    total_paused: timedelta = ZERO

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    def metric(self, metric: SlaMetric) -> MetricClock:
        return self.first_response if metric is SlaMetric.FIRST_RESPONSE else self.resolution

    def with_metric(self, metric: SlaMetric, clock: MetricClock) -> SlaClock:
        if metric is SlaMetric.FIRST_RESPONSE:
            return replace(self, first_response=clock)
        return replace(self, resolution=clock)


@dataclass(frozen=True)
class MetricReport:
    """What the API shows for one metric at an instant."""

    status: SlaStatus
    deadline: datetime
    warning_at: datetime
    target_seconds: int
    elapsed_seconds: float
    seconds_remaining: float
    percent_used: float


def deadline(clock: SlaClock, metric: SlaMetric) -> datetime:
    """When the metric's active time reaches its target (pauses so far credited)."""
    m = clock.metric(metric)
    return clock.counter.add(clock.started_at, m.target + m.paused_credit)


def warning_at(clock: SlaClock, metric: SlaMetric) -> datetime:
    """When the metric's active time reaches the warning share of its target."""
    m = clock.metric(metric)
    share = m.target * clock.warning_percent / 100
    return clock.counter.add(clock.started_at, share + m.paused_credit)


def measured_at(clock: SlaClock, metric: SlaMetric, now: datetime) -> datetime:
    """The instant the metric's active time is read at: it stops when done or paused."""
    m = clock.metric(metric)
    instants = [now]
    if m.done_at is not None:
        instants.append(m.done_at)
    if clock.paused_at is not None:
        instants.append(clock.paused_at)
    return min(instants)


def status(clock: SlaClock, metric: SlaMetric, now: datetime) -> SlaStatus:
    """pending → at_risk (warning share used) → breached (deadline passed), or met when done."""
    return _status(clock, metric, now, deadline(clock, metric), warning_at(clock, metric))


def _status(
    clock: SlaClock, metric: SlaMetric, now: datetime, due: datetime, warn: datetime
) -> SlaStatus:
    at = measured_at(clock, metric, now)
    done_at = clock.metric(metric).done_at
    if done_at is not None and done_at <= now:
        return SlaStatus.MET if at <= due else SlaStatus.BREACHED
    if at >= due:
        return SlaStatus.BREACHED
    if at >= warn:
        return SlaStatus.AT_RISK
    return SlaStatus.PENDING


@dataclass(frozen=True)
class MetricState:
    status: SlaStatus
    deadline: datetime
    warning_at: datetime


@dataclass(frozen=True)
class Evaluation:
    """Both metrics at an instant, and the next instant a status can change by time alone."""

    metrics: dict[SlaMetric, MetricState]
    next_check: datetime | None


def evaluate(clock: SlaClock, now: datetime) -> Evaluation:
    metrics: dict[SlaMetric, MetricState] = {}
    upcoming: list[datetime] = []
    for metric in METRICS:
        warn = warning_at(clock, metric)
        m = clock.metric(metric)  # the deadline is the rest of the target after the warning
        due = clock.counter.add(warn, m.target - m.target * clock.warning_percent / 100)
        current = _status(clock, metric, now, due, warn)
        metrics[metric] = MetricState(current, due, warn)
        if clock.is_paused:
            continue
        done_at = clock.metric(metric).done_at
        if done_at is not None:
            if done_at > now:  # an answer stamped a moment ahead of this clock
                upcoming.append(done_at)
        elif current is SlaStatus.PENDING:
            upcoming.append(warn)
        elif current is SlaStatus.AT_RISK:
            upcoming.append(due)
    return Evaluation(metrics, min(upcoming) if upcoming else None)


def active_time(clock: SlaClock, metric: SlaMetric, now: datetime) -> timedelta:
    """Counted time the metric has run (pauses excluded), as of `now`."""
    m = clock.metric(metric)
    counted = clock.counter.elapsed(clock.started_at, measured_at(clock, metric, now))
    return max(counted - m.paused_credit, ZERO)


def report(clock: SlaClock, metric: SlaMetric, now: datetime) -> MetricReport:
    """The metric at `now`; while paused, deadlines are shown as if resumed at `now`."""
    m = clock.metric(metric)
    used = active_time(clock, metric, now)
    target = m.target.total_seconds()
    projected = resume(clock, now)
    return MetricReport(
        status=status(clock, metric, now),
        deadline=deadline(projected, metric),
        warning_at=warning_at(projected, metric),
        target_seconds=round(target),
        elapsed_seconds=round(used.total_seconds(), 3),
        seconds_remaining=round(target - used.total_seconds(), 3),
        percent_used=round(100 * used.total_seconds() / target, 1) if target > 0 else 100.0,
    )


def pause(clock: SlaClock, at: datetime) -> SlaClock:
    """Stop both clocks at `at` (no-op when already paused)."""
    if clock.is_paused:
        return clock
    return replace(clock, paused_at=at)


def resume(clock: SlaClock, at: datetime) -> SlaClock:
    """Run again from `at`; metrics running when the pause began get the paused time credited."""
    if clock.paused_at is None:
        return clock
    paused_at = clock.paused_at
    at = max(at, paused_at)
    resumed = clock
    for metric in METRICS:
        m = clock.metric(metric)
        done_before_pause = m.done_at is not None and m.done_at <= paused_at
        if done_before_pause or paused_at >= deadline(clock, metric):
            continue
        credit_until = at if m.done_at is None else min(at, m.done_at)
        credit = clock.counter.elapsed(paused_at, credit_until)
        resumed = resumed.with_metric(metric, replace(m, paused_credit=m.paused_credit + credit))
    return replace(resumed, paused_at=None, total_paused=clock.total_paused + (at - paused_at))


def next_check(clock: SlaClock, now: datetime) -> datetime | None:
    """The next instant a metric's status can change with no new event (None if none can)."""
    return evaluate(clock, now).next_check
