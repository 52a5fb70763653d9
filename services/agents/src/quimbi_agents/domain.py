"""Pure rules of the agents service: passwords, who may manage whom, the auto-assignment policy,
and the metric arithmetic. No I/O here, so all of it is tested in milliseconds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from quimbi_common.enums import AssignmentReason, Role, TicketPriority

PASSWORD_MIN_LENGTH = 12
BCRYPT_MAX_BYTES = 72  # bcrypt ignores everything after byte 72; we refuse such passwords

PRIORITY_RANK = {
    TicketPriority.URGENT: 3,
    TicketPriority.HIGH: 2,
    TicketPriority.NORMAL: 1,
    TicketPriority.LOW: 0,
}


# --- passwords ------------------------------------------------------------------------------------


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None. Over 72 bytes is refused rather than silently
    truncated by bcrypt (two passwords sharing 72 bytes would otherwise be the same)."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        return f"must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8"
    return None


# --- who may manage whom (ARCHITECTURE §3) --------------------------------------------------------


def may_manage_agents(actor: Role) -> bool:
    return actor.at_least(Role.MANAGER)


def may_grant_role(actor: Role, role: Role) -> bool:
    """Managers create and promote up to manager; only admins create or promote admins."""
    return may_manage_agents(actor) and (role != Role.ADMIN or actor == Role.ADMIN)


def may_edit_agent(actor: Role, target: Role) -> bool:
    """Managers edit agents up to manager; an admin's account is edited by admins only."""
    return may_manage_agents(actor) and (target != Role.ADMIN or actor == Role.ADMIN)


def sees_department_only(actor: Role) -> bool:
    """Team leads list their own department; managers and admins list everyone."""
    return actor == Role.TEAM_LEAD


# --- assignment -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An agent as the auto-assignment policy sees it."""

    agent_id: str
    specializations: Sequence[str]
    open_tickets: int
    max_concurrent_tickets: int
    customer_satisfaction_score: float
    last_assigned_at: datetime | None

    def fits(self, category: str | None) -> bool:
        has_room = self.open_tickets < self.max_concurrent_tickets
        return has_room and (category is None or category in self.specializations)


def normalize_label(value: str) -> str:
    """Categories and specializations compare case- and space-insensitively."""
    return " ".join(value.strip().lower().split())


def choose_agent(candidates: Iterable[Candidate], category: str | None) -> Candidate | None:
    """§7: an online agent whose specializations hold the ticket's category (any, when the ticket
    has none), below capacity, with the fewest open tickets, then the best satisfaction score,
    then the longest idle (never assigned counts as idlest). Ties end on the id, so it is stable.
    Callers pass online, active agents only."""
    wanted = normalize_label(category) if category else None
    fitting = [c for c in candidates if c.fits(wanted)]
    if not fitting:
        return None

    def rank(c: Candidate) -> tuple[int, float, float, str]:
        idle_since = c.last_assigned_at.timestamp() if c.last_assigned_at else float("-inf")
        return (c.open_tickets, -c.customer_satisfaction_score, idle_since, c.agent_id)

    return min(fitting, key=rank)


def assignment_reason(requested: AssignmentReason | None, has_previous: bool) -> AssignmentReason:
    """A reason given is kept; otherwise moving a held ticket is a transfer, else manual."""
    if requested is not None:
        return requested
    return AssignmentReason.TRANSFER if has_previous else AssignmentReason.MANUAL


def seconds_between(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds()))


# --- metrics --------------------------------------------------------------------------------------


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The support team's calendar day for a moment (SUPPORT_TIMEZONE)."""
    return moment.astimezone(zone).date()


def resolved_today(count: int, counted_for: date | None, today: date) -> int:
    """The stored count only holds for the day it was counted; a new day starts at zero."""
    return count if counted_for == today else 0


def count_resolution(count: int, counted_for: date | None, day: date) -> tuple[int, date]:
    """Add one resolution on `day`; a resolution on a newer day restarts the count."""
    if counted_for is not None and day < counted_for:
        return count, counted_for  # a late event for a day already past: today's count stands
    return resolved_today(count, counted_for, day) + 1, day


def add_response_sample(total_seconds: int, samples: int, seconds: int) -> tuple[int, int, int]:
    """Fold one customer-message → agent-reply time into the running mean.
    Returns the new total, sample count and mean (whole seconds)."""
    total, count = total_seconds + max(0, seconds), samples + 1
    return total, count, round(total / count)


# --- login throttling -----------------------------------------------------------------------------


def login_delay_seconds(failures: int, *, free: int, base: float, cap: float) -> float:
    """How long to refuse further attempts after `failures` in a row (OWASP's growing delays):
    nothing for the first `free`, then `base`, doubling with each further failure, up to `cap`."""
    extra = failures - free
    if extra <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(extra - 1, 32)))
