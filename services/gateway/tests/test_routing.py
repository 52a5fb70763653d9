"""The routing table of ARCHITECTURE §2 and the open routes, as pure functions."""

import pytest

from quimbi_gateway.domain import Upstream, bearer, is_open, is_upload, route

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/agents", Upstream.AGENTS),
        ("/api/agents/login", Upstream.AGENTS),
        ("/api/agents/me/status", Upstream.AGENTS),
        ("/.well-known/jwks.json", Upstream.AGENTS),
        ("/api/reports/agents", Upstream.AGENTS),
        ("/api/reports/teams", Upstream.AGENTS),
        ("/api/tickets/t-1/assign", Upstream.AGENTS),
        ("/api/tickets/t-1/assignment/accept", Upstream.AGENTS),
        ("/api/tickets/t-1/assignments", Upstream.AGENTS),
        ("/api/tickets/t-1/sla", Upstream.SLA),
        ("/api/tickets/t-1/sla/pause", Upstream.SLA),
        ("/api/tickets/t-1/sla/resume", Upstream.SLA),
        ("/api/sla/policies", Upstream.SLA),
        ("/api/sla/policies/urgent", Upstream.SLA),
        ("/api/tickets/t-1/score-breakdown", Upstream.SCORING),
        ("/api/tickets", Upstream.TICKETS),
        ("/api/tickets/", Upstream.TICKETS),
        ("/api/tickets/t-1", Upstream.TICKETS),
        ("/api/tickets/t-1/messages", Upstream.TICKETS),
        ("/api/tickets/t-1/messages/m-1", Upstream.TICKETS),
        ("/api/customers", Upstream.TICKETS),
        ("/api/customers/c-1", Upstream.TICKETS),
        ("/api/tickets/bulk", Upstream.TICKETS),
        ("/api/tickets/bulk/assign", Upstream.AGENTS),
        ("/api/tickets/search", Upstream.TICKETS),
        ("/api/canned-responses", Upstream.TICKETS),
        ("/api/canned-responses/tmpl-1/preview", Upstream.TICKETS),
        ("/api/ai/tickets/t-1/draft-response", Upstream.AI_PROXY),
        ("/api/ai/tickets/t-1/regenerate-draft", Upstream.AI_PROXY),
        ("/api/ai/customers/c-1/intelligence", Upstream.AI_PROXY),
    ],
)
def test_each_path_goes_to_the_service_of_the_routing_table(path: str, expected: Upstream) -> None:
    assert route(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/api/tickets/t-1/assignee",  # not `assign` nor `assignment*`: the ticket's own field
        "/api/tickets/t-1/messages/assign",  # sub-resource of a message, not the ticket
        "/api/tickets/t-1/score",
    ],
)
def test_lookalike_ticket_paths_stay_with_tickets(path: str) -> None:
    assert route(path) == Upstream.TICKETS


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api",
        "/api/",
        "/api/unknown",
        "/api/ticketsx",
        "/apix/tickets",
        "/api/reportsx",
        "/health/ready",
    ],
)
def test_paths_no_service_serves_have_no_route(path: str) -> None:
    assert route(path) is None


def test_login_and_jwks_are_open_but_nothing_else() -> None:
    # given the open routes, when asking about them and their neighbours
    assert is_open("POST", "/api/agents/login")
    assert is_open("GET", "/.well-known/jwks.json")
    # then other methods and paths still need credentials
    assert not is_open("GET", "/api/agents/login")
    assert not is_open("POST", "/api/agents/logout")
    assert not is_open("GET", "/api/tickets")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer   abc", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_is_read_from_the_authorization_header(
    header: str | None, token: str | None
) -> None:
    assert bearer(header) == token


def test_only_posting_an_attachment_is_an_upload() -> None:
    assert is_upload("POST", "/api/tickets/ticket_1/attachments")
    assert not is_upload("GET", "/api/tickets/ticket_1/attachments")
    assert not is_upload("POST", "/api/tickets/ticket_1/messages")
    assert not is_upload("POST", "/api/tickets/ticket_1/attachments/att_1")
