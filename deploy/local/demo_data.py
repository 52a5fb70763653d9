"""Demo data, seeded through the public API so every event flows as in production: agents of
every role, ~50 customers, ~200 tickets across channels, priorities and statuses, with threads.
Idempotent: agents that exist are kept, and tickets are only added up to the target count."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx

ADMIN = ("admin@example.com", "admin-change-me")
DEMO_PASSWORD = "demo-password-123"  # noqa: S105 - demo logins, printed on purpose
TICKET_TARGET = 200

AGENTS = [
    ("agent", "Alex Agent", "support", ["billing", "shipping"]),
    ("agent", "Ava Agent", "support", ["technical", "account"]),
    ("agent", "Ari Agent", "support", ["returns", "shipping"]),
    ("senior_agent", "Sam Senior", "support", ["technical", "billing"]),
    ("team_lead", "Terry Lead", "support", ["billing", "technical", "returns"]),
    ("manager", "Morgan Manager", "support", []),
]
FIRST = ["John", "Maria", "Wei", "Fatima", "Lucas", "Aiko", "Omar", "Sofia", "Liam", "Priya"]
LAST = ["Smith", "Garcia", "Chen", "Khan", "Silva", "Tanaka", "Haddad", "Rossi", "Brown", "Patel"]
TOPICS: dict[str, list[tuple[str, str]]] = {
    "billing": [
        (
            "Payment not processing",
            "My card keeps getting declined at checkout and I'm frustrated.",
        ),
        (
            "Charged twice for my order",
            "I was charged twice for the same order. Please refund one.",
        ),
        ("Invoice request", "Could you send me an invoice for my last purchase?"),
    ],
    "shipping": [
        (
            "Where is my package?",
            "My order was supposed to arrive last week and it still isn't here.",
        ),
        (
            "Wrong delivery address",
            "I entered the wrong address, can you change it before it ships?",
        ),
    ],
    "technical": [
        ("App crashes on login", "The app crashes every time I try to log in. This is a bug."),
        (
            "Cannot reset password",
            "The reset link says it has expired. How do I reset my password?",
        ),
    ],
    "returns": [
        ("Return a damaged item", "The item arrived broken. I want to return it and get a refund."),
        ("Exchange for another size", "Can I exchange my shoes for a bigger size?"),
    ],
    "account": [
        ("Cancel my subscription", "Please cancel my subscription, I no longer need it."),
        ("Love the new features", "Just wanted to say the new dashboard is great, thank you!"),
    ],
}
AGENT_REPLIES = [
    "Thanks for reaching out! I'm looking into this for you right now.",
    "I'm sorry for the trouble. I've escalated this and will update you shortly.",
    "Could you share your order number so I can check the details?",
]


async def _login(client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await client.post("/api/agents/login", json={"email": email, "password": password})
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _ensure_agents(
    client: httpx.AsyncClient, admin: str, *, tokens: bool
) -> list[dict[str, Any]]:
    """The demo agents, created if missing and set online; logged in (a bcrypt check each)
    only when `tokens` are wanted, i.e. when tickets are still to be created in their name."""
    listed = await client.get("/api/agents", params={"limit": 200}, headers=_bearer(admin))
    listed.raise_for_status()
    existing = {a["email"]: a for a in listed.json()["agents"]}
    ensured = []
    for i, (role, name, department, specializations) in enumerate(AGENTS):
        email = f"{role.replace('_', '.')}{i}@example.com"
        agent = existing.get(email)
        if agent is None:
            response = await client.post(
                "/api/agents",
                headers=_bearer(admin),
                json={
                    "email": email,
                    "password": DEMO_PASSWORD,
                    "name": name,
                    "role": role,
                    "department": department,
                    "specializations": specializations,
                    "max_concurrent_tickets": 40,
                },
            )
            response.raise_for_status()
            agent = response.json()
        if agent["status"] != "online":
            response = await client.patch(
                f"/api/agents/{agent['id']}", headers=_bearer(admin), json={"status": "online"}
            )
            response.raise_for_status()
        token = await _login(client, email, DEMO_PASSWORD) if tokens else ""
        ensured.append({"role": role, "email": email, "token": token, "id": agent["id"]})
    return ensured


def _plan(rng: random.Random, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every demo ticket decided up front, so the data is the same however it is sent."""
    customers = [
        (
            f"{FIRST[i % 10].lower()}.{LAST[i // 5 % 10].lower()}{i}@example.com",
            f"{FIRST[i % 10]} {LAST[i // 5 % 10]}",
        )
        for i in range(50)
    ]
    plan = []
    for _ in range(TICKET_TARGET):
        category = rng.choice(list(TOPICS))
        subject, body = rng.choice(TOPICS[category])
        email, name = rng.choice(customers)
        plan.append(
            {
                "owner": rng.choice(workers),
                "ticket": {
                    "customer": {"email": email, "name": name},
                    "subject": subject,
                    "priority": rng.choices(["low", "normal", "high", "urgent"], [3, 5, 2, 1])[0],
                    "channel": rng.choice(["email", "chat", "phone", "sms", "form"]),
                    "category": category,
                    "message": {"content": body, "from_agent": False, "from_name": name},
                },
                "reply": rng.choice(AGENT_REPLIES) if rng.random() < 0.6 else None,
                "status": rng.choices(
                    ["open", "in_progress", "pending", "resolved", "closed"], [5, 2, 2, 2, 1]
                )[0],
            }
        )
    return plan


async def _create(client: httpx.AsyncClient, item: dict[str, Any]) -> None:
    headers = _bearer(item["owner"]["token"])
    response = await client.post("/api/tickets", headers=headers, json=item["ticket"])
    response.raise_for_status()
    path = f"/api/tickets/{response.json()['id']}"
    if item["reply"]:
        await client.post(
            f"{path}/messages", headers=headers, json={"content": item["reply"], "from_agent": True}
        )
    steps = {"closed": ["resolved", "closed"], "open": []}.get(item["status"], [item["status"]])
    for status in steps:
        (await client.patch(path, headers=headers, json={"status": status})).raise_for_status()


async def seed_demo_data(
    gateway_url: str, say: Callable[[str], None] = print, concurrency: int = 8
) -> list[tuple[str, str, str]]:
    """Seed the running suite; returns the demo logins (role, email, password)."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30.0) as client:
        admin = await _login(client, *ADMIN)
        existing = await client.get("/api/tickets", params={"limit": 1}, headers=_bearer(admin))
        existing.raise_for_status()
        have = existing.json()["pagination"]["total"]
        agents = await _ensure_agents(client, admin, tokens=have < TICKET_TARGET)
        workers = [a for a in agents if a["role"] in ("agent", "senior_agent")]
        todo = _plan(random.Random(42), workers)[have:]
        limit = asyncio.Semaphore(concurrency)
        done = 0

        async def create(item: dict[str, Any]) -> None:
            nonlocal done
            async with limit:
                await _create(client, item)
            done += 1
            if done % 50 == 0:
                say(f"  {have + done}/{TICKET_TARGET} tickets")

        await asyncio.gather(*(create(item) for item in todo))
        say(f"demo data: {len(agents)} agents, 50 customers, {TICKET_TARGET} tickets")
    return [ADMIN_LOGIN, *[(a["role"], a["email"], DEMO_PASSWORD) for a in agents]]


ADMIN_LOGIN = ("admin", *ADMIN)
