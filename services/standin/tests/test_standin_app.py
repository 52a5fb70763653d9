"""The stand-in app over ASGI: key checks, validation, shapes, fault injection and counters."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from quimbi_standin.main import Settings, create_app

pytestmark = pytest.mark.service

KEY = {"X-API-Key": "test-key"}
ADMIN = {"X-Admin-Key": "test-admin"}
MESSAGE_BODY = {
    "customer_profile": {"name": "John Smith", "churn_risk": 0.18, "lifetime_value": 1250.0},
    "goal": "resolve_issue",
    "conversation": [{"from_agent": False, "content": "Payment not processing"}],
    "channel": "email",
    "tone": "empathetic",
    "length": "short",
}
CALLS = [
    ("analyze", "/api/intelligence/analyze", {"customer_id": "cust_xyz"}),
    ("message", "/api/generation/message", MESSAGE_BODY),
    ("actions", "/api/generation/actions", {"customer_profile": {"churn_risk": 0.7}}),
]


def _client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://standin")


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"api_key": "test-key", "admin_key": "test-admin"}
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_settings()) as c:
        yield c


async def _fault(client: httpx.AsyncClient, target: str, **body: object) -> httpx.Response:
    response = await client.put(f"/_admin/faults/{target}", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
async def test_health_needs_no_key(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(("name", "path", "body"), CALLS)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
async def test_api_key_is_required(
    client: httpx.AsyncClient, name: str, path: str, body: dict, headers: dict
) -> None:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    assert (await client.get("/_admin/calls", headers=ADMIN)).json()[name] == 0


async def test_analyze_shape_and_determinism(client: httpx.AsyncClient) -> None:
    first = await client.post("/api/intelligence/analyze", json={"customer_id": "c1"}, headers=KEY)
    again = await client.post(
        "/api/intelligence/analyze",
        json={"customer_id": "c1", "context": {"ticket_id": "t9"}},
        headers=KEY,
    )
    other = await client.post("/api/intelligence/analyze", json={"customer_id": "c2"}, headers=KEY)
    assert first.status_code == 200
    assert first.json() == again.json()
    assert first.json() != other.json()
    body = first.json()
    assert set(body) == {
        "customer_id",
        "archetype",
        "segments",
        "predictions",
        "behavioral_metrics",
    }
    assert set(body["predictions"]) == {"churn_risk", "churn_risk_level", "lifetime_value"}
    assert set(body["segments"]) == {"dominant_segments", "memberships"}


async def test_analyze_requires_customer_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/intelligence/analyze", json={}, headers=KEY)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "customer_id"]


async def test_message_draft(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/generation/message", json=MESSAGE_BODY, headers=KEY)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"draft_content", "tone", "channel", "personalization_applied"}
    assert body["draft_content"].startswith("Hi John,\n\nI'm sorry to hear about")
    assert "Payment not processing" in body["draft_content"]
    assert (body["tone"], body["channel"]) == ("empathetic", "email")
    again = await client.post("/api/generation/message", json=MESSAGE_BODY, headers=KEY)
    assert again.json() == body


@pytest.mark.parametrize(("field", "value"), [("tone", "angry"), ("length", "epic")])
async def test_message_rejects_bad_tone_and_length(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    body = {**MESSAGE_BODY, field: value}
    response = await client.post("/api/generation/message", json=body, headers=KEY)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", field]


async def test_actions(client: httpx.AsyncClient) -> None:
    body = {
        "customer_profile": {"churn_risk": 0.82, "lifetime_value": 3100.0},
        "ticket": {"subject": "Refund please", "priority": "high", "status": "open"},
        "conversation": [{"from_agent": False, "content": "I need a refund"}],
    }
    response = await client.post("/api/generation/actions", json=body, headers=KEY)
    assert response.status_code == 200
    actions = response.json()["actions"]
    assert [a["action"] for a in actions[:3]] == [
        "offer_retention_incentive",
        "escalate_to_senior_agent",
        "process_refund",
    ]
    assert [a["priority"] for a in actions] == list(range(1, len(actions) + 1))


async def test_admin_key_is_required(client: httpx.AsyncClient) -> None:
    assert (await client.get("/_admin/calls")).status_code == 401
    wrong = {"X-Admin-Key": "nope"}
    put = await client.put("/_admin/faults/analyze", json={"mode": "error"}, headers=wrong)
    assert put.status_code == 401
    assert (await client.delete("/_admin/faults", headers=wrong)).status_code == 401


async def test_empty_admin_key_disables_the_check() -> None:
    async with _client(_settings(admin_key="")) as client:
        assert (await client.get("/_admin/calls")).status_code == 200


async def test_error_fault_hits_only_its_endpoint_until_reset(client: httpx.AsyncClient) -> None:
    await _fault(client, "analyze", mode="error", status=503)
    failed = await client.post("/api/intelligence/analyze", json={"customer_id": "c"}, headers=KEY)
    assert failed.status_code == 503
    assert failed.headers["content-type"] == "application/problem+json"
    assert failed.json()["title"] == "Service Unavailable"
    ok = await client.post("/api/generation/message", json=MESSAGE_BODY, headers=KEY)
    assert ok.status_code == 200
    reset = await client.delete("/_admin/faults", headers=ADMIN)
    assert reset.json()["analyze"] == {"mode": "ok", "status": 500, "latency_ms": 0, "count": None}
    again = await client.post("/api/intelligence/analyze", json={"customer_id": "c"}, headers=KEY)
    assert again.status_code == 200


async def test_count_limited_fault_recovers(client: httpx.AsyncClient) -> None:
    state = await _fault(client, "message", mode="error", count=2)
    assert state.json()["message"]["count"] == 2
    statuses = [
        (await client.post("/api/generation/message", json=MESSAGE_BODY, headers=KEY)).status_code
        for _ in range(3)
    ]
    assert statuses == [500, 500, 200]
    assert (await client.get("/_admin/faults", headers=ADMIN)).json()["message"]["mode"] == "ok"


async def test_all_target_fails_every_endpoint(client: httpx.AsyncClient) -> None:
    await _fault(client, "all", mode="error", status=502, count=1)
    for _, path, body in CALLS:
        assert (await client.post(path, json=body, headers=KEY)).status_code == 502
        assert (await client.post(path, json=body, headers=KEY)).status_code == 200


async def test_latency_fault_slows_but_answers(client: httpx.AsyncClient) -> None:
    await _fault(client, "actions", mode="ok", latency_ms=200)
    started = time.perf_counter()
    response = await client.post("/api/generation/actions", json={}, headers=KEY)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    await client.post("/api/intelligence/analyze", json={"customer_id": "c"}, headers=KEY)
    assert time.perf_counter() - started < 0.2


async def test_global_latency_from_settings() -> None:
    async with _client(_settings(latency_ms=150)) as client:
        started = time.perf_counter()
        response = await client.post("/api/generation/actions", json={}, headers=KEY)
        assert response.status_code == 200
        assert time.perf_counter() - started >= 0.15


async def test_timeout_fault_outlasts_the_client(client: httpx.AsyncClient) -> None:
    await _fault(client, "analyze", mode="timeout")
    call = client.post("/api/intelligence/analyze", json={"customer_id": "c"}, headers=KEY)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call, timeout=0.3)


async def test_timeout_fault_ends_in_504_for_a_patient_client() -> None:
    async with _client(_settings(timeout_s=0.05)) as client:
        await _fault(client, "message", mode="timeout")
        response = await client.post("/api/generation/message", json=MESSAGE_BODY, headers=KEY)
        assert response.status_code == 504


@pytest.mark.parametrize(
    ("target", "body"),
    [("bogus", {"mode": "error"}), ("analyze", {"mode": "broken"}), ("analyze", {"status": 200})],
)
async def test_fault_request_is_validated(
    client: httpx.AsyncClient, target: str, body: dict
) -> None:
    response = await client.put(f"/_admin/faults/{target}", json=body, headers=ADMIN)
    assert response.status_code == 422


async def test_call_counters_include_failed_calls_and_reset(client: httpx.AsyncClient) -> None:
    await _fault(client, "analyze", mode="error", count=2)
    for _ in range(3):
        await client.post("/api/intelligence/analyze", json={"customer_id": "c"}, headers=KEY)
    await client.post("/api/generation/message", json=MESSAGE_BODY, headers=KEY)
    calls = await client.get("/_admin/calls", headers=ADMIN)
    assert calls.json() == {"analyze": 3, "message": 1, "actions": 0}
    reset = await client.delete("/_admin/calls", headers=ADMIN)
    assert reset.json() == {"analyze": 0, "message": 0, "actions": 0}
    assert (await client.get("/_admin/calls", headers=ADMIN)).json()["analyze"] == 0


async def test_startup_configuration_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIMBI_API_KEY", "env-key")
    monkeypatch.setenv("STANDIN_ADMIN_KEY", "env-admin")
    monkeypatch.setenv("STANDIN_FAIL_ENDPOINTS", "analyze:503,actions:timeout")
    monkeypatch.setenv("STANDIN_LATENCY_MS", "5")
    settings = Settings.from_env()
    assert (settings.api_key, settings.admin_key, settings.latency_ms) == (
        "env-key",
        "env-admin",
        5,
    )
    async with _client(settings) as client:
        headers = {"X-API-Key": "env-key"}
        failed = await client.post(
            "/api/intelligence/analyze", json={"customer_id": "c"}, headers=headers
        )
        assert failed.status_code == 503
        ok = await client.post("/api/generation/message", json=MESSAGE_BODY, headers=headers)
        assert ok.status_code == 200
        faults = (await client.get("/_admin/faults", headers={"X-Admin-Key": "env-admin"})).json()
        assert faults["actions"]["mode"] == "timeout"


def test_bad_startup_fault_spec_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        create_app(_settings(fail_endpoints="everything"))


def test_defaults() -> None:
    assert Settings() == Settings(
        api_key="dev-quimbi-key",
        admin_key="standin-admin",
        latency_ms=0,
        fail_endpoints="",
        timeout_s=120.0,
    )
