"""What the end-to-end tests share: the demo admin, an agent handle, logging in."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

ADMIN = {"email": "admin@example.com", "password": "admin-change-me"}
PASSWORD = "e2e-password-123"


@dataclass
class Agent:
    id: str
    email: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def login(gateway: httpx.AsyncClient, email: str, password: str) -> str:
    response = await gateway.post("/api/agents/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
