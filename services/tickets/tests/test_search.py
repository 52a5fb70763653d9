"""Full-text search: matches in subjects and messages, ranking, snippets, filters, visibility."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from quimbi_common.auth import Principal
from quimbi_common.enums import Role
from quimbi_common.errors import ServiceUnavailableError
from quimbi_common.testing import unique
from quimbi_tickets import search
from quimbi_tickets.queries import InboxQuery

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service


async def _search(world: World, actor: Actor, **params: Any) -> Any:
    response = await world.client.get("/api/tickets/search", params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_search_finds_subjects_and_messages_ranked_with_safe_snippets(world: World) -> None:
    # given a word of our own, in one ticket's subject and in another's (hostile) message
    word = unique("zeta")
    senior = world.agent(Role.SENIOR_AGENT)
    by_subject = await world.create_ticket(senior, subject=f"Parcel {word} never arrived")
    by_message = await world.create_ticket(
        senior,
        subject="Something else",
        message={"content": f"the {word} refunds are late & 5 < 6 <img src=x onerror=alert(1)>"},
    )
    await world.create_ticket(senior, subject="Unrelated", message={"content": "nothing here"})
    # when a senior agent searches for it
    found = await _search(world, senior, q=word)
    # then both tickets come back, the subject match first (subjects weigh double)
    assert [t["id"] for t in found["tickets"]] == [by_subject["id"], by_message["id"]]
    assert found["pagination"]["total"] == 2
    assert found["query"] == word
    first, second = found["tickets"]
    assert first["rank"] > second["rank"] > 0
    assert first["score_status"] == "pending"
    assert first["highlight"]["subject"] == f"Parcel <mark>{word}</mark> never arrived"
    assert first["highlight"]["message_id"] is None
    # and the message snippet marks the word and escapes the message's markup
    [message] = by_message["messages"]
    assert second["highlight"]["message_id"] == message["id"]
    snippet = second["highlight"]["message"]
    assert f"<mark>{word}</mark>" in snippet
    unmarked = snippet.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in unmarked
    assert "late &amp; 5 &lt; 6" in unmarked
    assert "&lt;img src=x onerror=alert" in unmarked  # PostgreSQL keeps it: we escape it
    # and English stemming: "refund" finds "refunds", and all words must match
    stemmed = await _search(world, senior, q=f"{word} refund")
    assert [t["id"] for t in stemmed["tickets"]] == [by_message["id"]]
    excluded = await _search(world, senior, q=f"{word} -refund")
    assert [t["id"] for t in excluded["tickets"]] == [by_subject["id"]]


async def test_a_ticket_is_one_document_kept_as_its_subject_and_messages_change(
    world: World,
) -> None:
    # given a ticket with one word in its subject and another in its message
    first, second, added, renamed = (unique(w) for w in ("alpha", "beta", "gamma", "delta"))
    agent = world.agent()
    ticket = await world.create_ticket(
        agent, subject=f"Order {first} stuck", message={"content": f"it says {second} again"}
    )
    url = f"/api/tickets/{ticket['id']}"
    message_url = f"{url}/messages/{ticket['messages'][0]['id']}"

    async def found(q: str) -> list[str]:
        return [t["id"] for t in (await _search(world, agent, q=q))["tickets"]]

    # then both words together find it (spread over subject and message), each one marked
    [hit] = (await _search(world, agent, q=f"{first} {second}"))["tickets"]
    assert hit["highlight"]["subject"] == f"Order <mark>{first}</mark> stuck"
    assert f"<mark>{second}</mark>" in hit["highlight"]["message"]
    # and the document follows every change: an edited message
    edited = await world.client.patch(
        message_url, json={"content": "nothing to see"}, headers=agent.headers
    )
    assert edited.status_code == 200, edited.text
    assert await found(second) == []
    # an added message
    reply = await world.client.post(
        f"{url}/messages", json={"content": f"now {added}"}, headers=agent.headers
    )
    assert reply.status_code == 201, reply.text
    assert await found(added) == [ticket["id"]]
    # a deleted message
    deleted = await world.client.delete(
        f"{url}/messages/{reply.json()['id']}", headers=agent.headers
    )
    assert deleted.status_code == 204, deleted.text
    assert await found(added) == []
    # and a new subject
    patched = await world.client.patch(url, json={"subject": renamed}, headers=agent.headers)
    assert patched.status_code == 200, patched.text
    assert (await found(renamed), await found(first)) == ([ticket["id"]], [])


async def test_search_applies_visibility_filters_order_and_pages(world: World) -> None:
    # given three tickets mentioning our word: two of one agent's, one of another's
    word = unique("kappa")
    agent, other = world.agent(), world.agent()
    low = await world.create_ticket(agent, subject=f"{word} {word} {word}")
    high = await world.create_ticket(agent, subject=f"about {word}", priority="urgent")
    foreign = await world.create_ticket(other, subject=word)
    await world.db.execute(
        "UPDATE tickets SET smart_score = CASE id WHEN $1 THEN 10 ELSE 90 END, score_version = 1"
        " WHERE id = ANY($2::text[])",
        low["id"],
        [low["id"], high["id"], foreign["id"]],
    )
    # when the agent searches: only their own tickets, the best match first
    found = await _search(world, agent, q=word)
    assert [t["id"] for t in found["tickets"]] == [low["id"], high["id"]]
    # in the smart order: the higher score first
    smart = await _search(world, agent, q=word, order="smart")
    assert [t["id"] for t in smart["tickets"]] == [high["id"], low["id"]]
    assert smart["tickets"][0]["smart_score"] == 90
    assert smart["tickets"][0]["score_status"] == "scored"
    # with a list filter
    urgent = await _search(world, agent, q=word, priority="urgent")
    assert [t["id"] for t in urgent["tickets"]] == [high["id"]]
    # and paged: the total counts every match, a page past the end is empty
    paged = await _search(world, agent, q=word, limit=1, page=2)
    assert [t["id"] for t in paged["tickets"]] == [high["id"]]
    assert paged["pagination"] == {
        "page": 2,
        "limit": 1,
        "total": 2,
        "has_next": False,
        "has_prev": True,
    }
    beyond = await _search(world, agent, q=word, limit=1, page=5)
    assert beyond["tickets"] == []
    assert beyond["pagination"]["total"] == 2
    # and a senior agent sees all three
    senior = await _search(world, world.agent(Role.SENIOR_AGENT), q=word)
    assert len(senior["tickets"]) == 3


async def test_search_syntax_never_fails(world: World) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    for q in ['"unclosed', "a & | ! ( :*", "the", "-", "or or"]:
        found = await _search(world, senior, q=q)
        assert isinstance(found["tickets"], list)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 201},
        {"q": "a", "order": "newest"},
        {"q": "a", "limit": 0},
    ],
)
async def test_bad_searches_are_422(world: World, params: dict[str, Any]) -> None:
    response = await world.client.get(
        "/api/tickets/search", params=params, headers=world.agent().headers
    )
    world.problem(response, 422)


async def test_search_needs_an_agent(world: World) -> None:
    world.problem(await world.client.get("/api/tickets/search", params={"q": "a"}), 401)
    response = await world.client.get(
        "/api/tickets/search", params={"q": "a"}, headers=world.integration.headers
    )
    world.problem(response, 403)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def _tickets_mentioning(world: World, word: str, count: int) -> tuple[str, list[str]]:
    """`count` tickets of one new customer, each with a message naming `word`, oldest first."""
    senior = world.agent(Role.SENIOR_AGENT)
    first = await world.create_ticket(senior, message={"content": f"about {word} again"})
    customer_id = first["customer"]["id"]
    ids = [first["id"]]
    for _ in range(count - 1):
        ticket = await world.create_ticket(
            senior, customer_id=customer_id, customer=None, message={"content": f"{word} too"}
        )
        ids.append(ticket["id"])
    return customer_id, ids


async def test_a_word_within_the_bound_is_ranked_exhaustively_and_beyond_it_among_the_newest(
    world: World, engine: AsyncEngine
) -> None:
    word = unique("kappa")
    customer_id, ids = await _tickets_mentioning(world, word, 7)
    principal = Principal(kind="agent", agent_id="a-senior", role=Role.SENIOR_AGENT)
    query = InboxQuery(limit=50, customer_id=customer_id)

    async def found(candidates: int) -> search.SearchPage:
        page = await search.search(
            engine, principal, query, word, "relevance", candidates=candidates, timeout_ms=5000
        )
        return page

    # at the bound (7 matches, 7 candidates): every match, exhaustive
    exact = await found(7)
    assert (exact.total, exact.exhaustive) == (7, True)
    assert sorted(row["id"] for row in exact.rows) == sorted(ids)
    # one past it: not exhaustive, and what is ranked is bounded: the first 3 + 1 PostgreSQL
    # found and the 3 newest matches, at most 7 tickets here, the newest always among them
    for candidates in (6, 3, 1):
        bounded = await found(candidates)
        assert bounded.exhaustive is False
        assert bounded.total == len(bounded.rows) <= 2 * candidates + 1
        assert set(ids[-candidates:]) <= {row["id"] for row in bounded.rows}
    # and through the route, the flag is in the answer
    senior = world.agent(Role.SENIOR_AGENT)
    answer = await _search(world, senior, q=word, customer_id=customer_id)
    assert (answer["exhaustive"], answer["pagination"]["total"]) == (True, 7)


async def test_a_search_past_its_time_budget_is_stopped_with_a_503(
    world: World, engine: AsyncEngine
) -> None:
    principal = Principal(kind="agent", agent_id="a-senior", role=Role.SENIOR_AGENT)
    async with world.db.transaction():  # the search now waits for this lock, past its budget
        await world.db.execute("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(ServiceUnavailableError) as stopped:
            await search.search(
                engine,
                principal,
                InboxQuery(),
                "parcel",
                "relevance",
                candidates=10,
                timeout_ms=200,
            )
    assert stopped.value.status == 503
    assert stopped.value.headers == {"Retry-After": "1"}
    assert "200 ms" in stopped.value.detail


async def test_a_phrase_finds_only_adjacent_words(world: World) -> None:
    word = unique("sigma")
    senior = world.agent(Role.SENIOR_AGENT)
    adjacent = await world.create_ticket(
        senior, message={"content": f"the {word} card charged twice, e-mail me"}
    )
    await world.create_ticket(senior, message={"content": f"my {word} card was not charged"})
    for q in (f'{word} "card charged"', f"{word} e-mail"):
        found = await _search(world, senior, q=q)
        assert [t["id"] for t in found["tickets"]] == [adjacent["id"]], q
        assert found["exhaustive"] is True
    negated = await _search(world, senior, q=f'{word} -"card charged"')
    assert [t["id"] for t in negated["tickets"]] != [adjacent["id"]]
    assert len(negated["tickets"]) == 1


@pytest.mark.parametrize(
    ("text", "phrase"),
    [('"card charged"', True), ("e-mail", True), ("refund", False), ('-"card charged"', False)],
)
def test_what_counts_as_a_phrase(text: str, phrase: bool) -> None:
    assert search.is_phrase(text) is phrase
