"""Drafts and recommendations over real HTTP to the stand-in: shapes, the cache, and answers
that follow the conversation (no event needed)."""

from __future__ import annotations

from typing import Any

import pytest

from quimbi_common.enums import Role
from quimbi_standin.generation import analyze_customer

pytestmark = pytest.mark.service

DRAFT_FIELDS = {
    "ticket_id",
    "draft_content",
    "tone",
    "channel",
    "personalization_applied",
    "customer_dna",
    "churn_risk",
    "churn_risk_level",
    "lifetime_value",
}


def _draft_url(ticket: dict[str, Any]) -> str:
    return f"/api/ai/tickets/{ticket['id']}/draft-response"


async def test_draft_response_has_the_appendix_b_shape(proxy_app, tickets, standin) -> None:
    # given a ticket assigned to the caller, from a customer Quimbi knows
    agent = "agent-draft-shape"
    ticket = tickets.add(assigned_agent_id=agent, customer_name="John Smith")
    expected = analyze_customer(ticket["customer_id"])
    async with proxy_app() as proxy:
        # when the agent asks for a draft
        response = await proxy.client.get(
            _draft_url(ticket), headers=proxy.headers(Role.AGENT, agent)
        )
    # then it has every Appendix B field, filled from Quimbi's answers
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.keys() >= DRAFT_FIELDS
    assert body["ticket_id"] == ticket["id"]
    assert body["draft_content"].startswith("Hi John,")
    assert body["tone"] == "empathetic"
    assert body["length"] == "medium"
    assert body["channel"] == "email"
    assert "Used customer's first name" in body["personalization_applied"]
    assert body["customer_dna"] == {
        "dominant_segments": expected["segments"]["dominant_segments"],
        "archetype_level": expected["archetype"]["level"],
    }
    assert body["churn_risk"] == expected["predictions"]["churn_risk"]
    assert body["churn_risk_level"] == expected["predictions"]["churn_risk_level"]
    assert body["lifetime_value"] == expected["predictions"]["lifetime_value"]
    assert body["cached"] is False
    assert body["stale"] is False


async def test_second_draft_request_is_served_from_the_cache(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-cache-hit")
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, "agent-cache-hit")
        first = await proxy.client.get(_draft_url(ticket), headers=headers)
        # when the same draft is asked for again
        second = await proxy.client.get(_draft_url(ticket), headers=headers)
    # then Quimbi was asked once, and the answer is the same draft marked cached
    assert first.status_code == second.status_code == 200
    assert second.json()["cached"] is True
    assert second.json()["draft_content"] == first.json()["draft_content"]
    assert await standin.calls() == {"analyze": 1, "message": 1, "actions": 0}


async def test_drafts_are_cached_per_tone_and_length(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-tones")
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, "agent-tones")
        friendly = await proxy.client.get(
            _draft_url(ticket), params={"tone": "friendly", "length": "short"}, headers=headers
        )
        professional = await proxy.client.get(
            _draft_url(ticket), params={"tone": "professional"}, headers=headers
        )
        bad = await proxy.client.get(_draft_url(ticket), params={"tone": "rude"}, headers=headers)
    assert friendly.json()["draft_content"].startswith("Hey John!")
    assert professional.json()["draft_content"].startswith("Hello John,")
    assert professional.json()["cached"] is False
    assert (await standin.calls())["message"] == 2
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


async def test_regenerate_bypasses_the_cache_and_stores_the_new_draft(
    proxy_app, tickets, standin
) -> None:
    ticket = tickets.add(assigned_agent_id="agent-regen")
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, "agent-regen")
        params = {"tone": "professional", "length": "long"}
        await proxy.client.get(_draft_url(ticket), params=params, headers=headers)
        # when the agent regenerates with the same tone and length
        regenerated = await proxy.client.post(
            f"/api/ai/tickets/{ticket['id']}/regenerate-draft",
            json={**params, "include_details": ["order number"]},
            headers=headers,
        )
        after = await proxy.client.get(_draft_url(ticket), params=params, headers=headers)
    # then Quimbi wrote a second draft, and later reads get that one from the cache
    assert regenerated.status_code == 200, regenerated.text
    assert regenerated.json()["cached"] is False
    assert regenerated.json()["tone"] == "professional"
    assert regenerated.json()["length"] == "long"
    assert after.json()["cached"] is True
    assert after.json()["generated_at"] == regenerated.json()["generated_at"]
    assert (await standin.calls())["message"] == 2


@pytest.mark.parametrize(
    "body",
    [{"tone": "sarcastic"}, {"length": "epic"}, {"tone": "friendly", "extra": 1}],
)
async def test_regenerate_rejects_unknown_options(proxy_app, tickets, standin, body) -> None:
    ticket = tickets.add(assigned_agent_id="agent-regen-422")
    async with proxy_app() as proxy:
        response = await proxy.client.post(
            f"/api/ai/tickets/{ticket['id']}/regenerate-draft",
            json=body,
            headers=proxy.headers(Role.AGENT, "agent-regen-422"),
        )
    assert response.status_code == 422
    assert response.json()["errors"]
    assert (await standin.calls())["message"] == 0


async def test_a_draft_for_an_older_conversation_is_never_served(
    proxy_app, tickets, standin
) -> None:
    # given a cached draft, and a new customer message whose event has not arrived yet
    ticket = tickets.add(assigned_agent_id="agent-race")
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, "agent-race")
        before = await proxy.client.get(_draft_url(ticket), headers=headers)
        tickets.add_message(ticket["id"], "I also want a refund for the shipping.")
        # when the draft is asked for again
        after = await proxy.client.get(_draft_url(ticket), headers=headers)
    # then it is written anew, for the conversation as it is now
    assert after.json()["cached"] is False
    assert "refund" in after.json()["draft_content"]
    assert after.json()["draft_content"] != before.json()["draft_content"]


async def test_recommendation_has_the_seed_shape(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(
        assigned_agent_id="agent-reco", messages=["I want my money back, this is a refund!"]
    )
    expected = analyze_customer(ticket["customer_id"])["predictions"]
    async with proxy_app() as proxy:
        response = await proxy.client.get(
            f"/api/ai/tickets/{ticket['id']}/recommendation",
            headers=proxy.headers(Role.AGENT, "agent-reco"),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ticket_id"] == ticket["id"]
    assert body["churn_risk"] == expected["churn_risk"]
    ltv = expected["lifetime_value"]
    assert body["customer_value"] == ("high" if ltv >= 1000 else "medium" if ltv >= 250 else "low")
    actions = body["next_best_actions"]
    assert {a["action"] for a in actions} >= {"process_refund", "send_personalized_response"}
    assert [a["priority"] for a in actions] == list(range(1, len(actions) + 1))
    assert all(a["reasoning"] and a["expected_impact"] for a in actions)


async def test_recommendation_reuses_cached_churn_and_ltv(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-reco-cache")
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, "agent-reco-cache")
        url = f"/api/ai/tickets/{ticket['id']}/recommendation"
        await proxy.client.get(url, headers=headers)
        await proxy.client.get(url, headers=headers)
    assert await standin.calls() == {"analyze": 1, "message": 0, "actions": 2}
