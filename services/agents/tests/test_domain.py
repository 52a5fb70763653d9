"""The pure rules: passwords, who may manage whom, the §7 policy, metric arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from quimbi_agents.domain import (
    Candidate,
    add_response_sample,
    assignment_reason,
    choose_agent,
    count_resolution,
    local_date,
    login_delay_seconds,
    may_edit_agent,
    may_grant_role,
    password_problem,
    resolved_today,
)
from quimbi_common.enums import AssignmentReason, Role

pytestmark = pytest.mark.unit
NOW = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)


def candidate(agent_id: str, **kw: object) -> Candidate:
    values: dict[str, object] = {
        "specializations": ["billing"],
        "open_tickets": 0,
        "max_concurrent_tickets": 5,
        "customer_satisfaction_score": 4.0,
        "last_assigned_at": NOW,
    }
    values.update(kw)
    return Candidate(agent_id=agent_id, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("a" * 11, True),
        ("a" * 12, False),
        ("a" * 72, False),
        ("a" * 73, True),
        ("é" * 36, False),  # 36 characters, 72 bytes
        ("é" * 37, True),  # 37 characters but 74 bytes: bcrypt would drop the tail
    ],
)
def test_passwords_need_12_characters_and_at_most_72_bytes(password: str, refused: bool) -> None:
    assert (password_problem(password) is not None) is refused


def test_managers_grant_roles_up_to_manager_and_only_admins_grant_admin() -> None:
    assert may_grant_role(Role.MANAGER, Role.MANAGER)
    assert not may_grant_role(Role.MANAGER, Role.ADMIN)
    assert may_grant_role(Role.ADMIN, Role.ADMIN)
    assert not may_grant_role(Role.TEAM_LEAD, Role.AGENT)


def test_managers_cannot_edit_admins() -> None:
    assert may_edit_agent(Role.MANAGER, Role.MANAGER)
    assert not may_edit_agent(Role.MANAGER, Role.ADMIN)
    assert may_edit_agent(Role.ADMIN, Role.ADMIN)


def test_only_agents_specialised_in_the_category_are_chosen() -> None:
    agents = [candidate("a", specializations=["shipping"]), candidate("b", open_tickets=3)]
    assert choose_agent(agents, "Billing").agent_id == "b"  # type: ignore[union-attr]
    assert choose_agent(agents, "returns") is None


def test_a_ticket_without_category_goes_to_any_agent() -> None:
    agents = [candidate("a", specializations=[], open_tickets=2), candidate("b", open_tickets=1)]
    assert choose_agent(agents, None).agent_id == "b"  # type: ignore[union-attr]


def test_agents_at_capacity_are_skipped() -> None:
    agents = [candidate("full", open_tickets=5), candidate("room", open_tickets=4)]
    assert choose_agent(agents, "billing").agent_id == "room"  # type: ignore[union-attr]
    assert choose_agent([candidate("zero", max_concurrent_tickets=0)], "billing") is None


def test_fewest_open_tickets_wins_before_satisfaction() -> None:
    agents = [
        candidate("busy-star", open_tickets=2, customer_satisfaction_score=5.0),
        candidate("free", open_tickets=1, customer_satisfaction_score=1.0),
    ]
    assert choose_agent(agents, "billing").agent_id == "free"  # type: ignore[union-attr]


def test_better_satisfaction_breaks_a_workload_tie() -> None:
    agents = [
        candidate("ok", customer_satisfaction_score=3.5),
        candidate("great", customer_satisfaction_score=4.8),
    ]
    assert choose_agent(agents, "billing").agent_id == "great"  # type: ignore[union-attr]


def test_longest_idle_breaks_the_remaining_tie_and_never_assigned_is_idlest() -> None:
    recent = candidate("recent", last_assigned_at=NOW)
    older = candidate("older", last_assigned_at=NOW - timedelta(hours=1))
    never = candidate("never", last_assigned_at=None)
    assert choose_agent([recent, older], "billing").agent_id == "older"  # type: ignore[union-attr]
    assert choose_agent([recent, older, never], "billing").agent_id == "never"  # type: ignore[union-attr]


def test_a_reason_defaults_to_transfer_when_someone_held_the_ticket() -> None:
    assert assignment_reason(None, has_previous=True) == AssignmentReason.TRANSFER
    assert assignment_reason(None, has_previous=False) == AssignmentReason.MANUAL
    assert assignment_reason(AssignmentReason.ESCALATION, True) == AssignmentReason.ESCALATION


def test_the_local_day_follows_the_support_time_zone() -> None:
    late_evening_in_la = datetime(2025, 12, 2, 5, 0, tzinfo=UTC)
    assert local_date(late_evening_in_la, ZoneInfo("America/Los_Angeles")) == date(2025, 12, 1)
    assert local_date(late_evening_in_la, ZoneInfo("Europe/Berlin")) == date(2025, 12, 2)


def test_resolved_today_resets_on_a_new_day() -> None:
    assert resolved_today(7, date(2025, 12, 1), date(2025, 12, 1)) == 7
    assert resolved_today(7, date(2025, 12, 1), date(2025, 12, 2)) == 0
    assert count_resolution(7, date(2025, 12, 1), date(2025, 12, 2)) == (1, date(2025, 12, 2))
    assert count_resolution(7, date(2025, 12, 2), date(2025, 12, 2)) == (8, date(2025, 12, 2))
    late_event = count_resolution(7, date(2025, 12, 2), date(2025, 12, 1))
    assert late_event == (7, date(2025, 12, 2))


def test_response_time_is_a_running_mean() -> None:
    total, samples, mean = add_response_sample(0, 0, 60)
    assert (total, samples, mean) == (60, 1, 60)
    assert add_response_sample(total, samples, 121) == (181, 2, 90)


def test_login_delays_start_after_the_free_failures_and_double_up_to_the_cap() -> None:
    delays = [login_delay_seconds(n, free=3, base=1.0, cap=900.0) for n in range(1, 16)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:8] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == 900.0
    assert login_delay_seconds(10**6, free=3, base=1.0, cap=900.0) == 900.0
