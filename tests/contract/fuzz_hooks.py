"""schemathesis hooks for the contract tier (loaded by `SCHEMATHESIS_HOOKS=fuzz_hooks`).

- The fuzzed identity logs in with its password and logs in again when a token stops working
  (`POST /api/agents/logout` revokes it; schemathesis replays the request after a 401).
- Writes aimed at the fuzzed identity's own agent record go to a decoy agent instead: the
  fuzzer reuses ids it has seen (`/api/agents/me`), and an admin changing its own password or
  role would lock the rest of the run out.
"""

from __future__ import annotations

import os

import httpx
import schemathesis

BASE_URL = os.environ["FUZZ_BASE_URL"]
EMAIL = os.environ.get("FUZZ_EMAIL")
PASSWORD = os.environ.get("FUZZ_PASSWORD")
SELF_ID = os.environ.get("FUZZ_SELF_ID")
DECOY_ID = os.environ.get("FUZZ_DECOY_ID")


if EMAIL and PASSWORD:

    @schemathesis.auth()
    class PasswordLogin:
        def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
            response = httpx.post(
                f"{BASE_URL}/api/agents/login",
                json={"email": EMAIL, "password": PASSWORD},
                timeout=30.0,
            )
            response.raise_for_status()
            token: str = response.json()["access_token"]
            return token

        def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict) -> None:  # type: ignore[type-arg]
    params = case.path_parameters or {}
    if SELF_ID and DECOY_ID and case.method.upper() != "GET" and params.get("agent_id") == SELF_ID:
        case.path_parameters = {**params, "agent_id": DECOY_ID}
