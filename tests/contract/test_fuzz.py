"""Fuzzing the merged OpenAPI document of a whole suite, as each kind of caller.

schemathesis (CLI, pinned in the dev group) generates requests from the gateway's
`/openapi.json` (phases examples, fuzzing, stateful, and coverage as the admin) and checks every
answer: no 5xx, a documented status, the documented content type and body schema. It reuses
every id it reads in every phase, hence a suite of its own (conftest.py). Afterwards the
services' logs must hold no ERROR line and no traceback: bad input is the caller's problem.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from launcher import Suite
from support import ADMIN, PASSWORD, login

from quimbi_common.settings import DEV_API_KEY
from quimbi_common.testing import unique

pytestmark = pytest.mark.contract

CHECKS = (
    "not_a_server_error,response_schema_conformance,status_code_conformance,"
    "content_type_conformance"
)
# Per operation and phase: ~400 random cases per caller (~2 min of CPU for the whole tier).
MAX_EXAMPLES = os.environ.get("CONTRACT_MAX_EXAMPLES", "10")
# The coverage phase (~1,400 deterministic boundary cases, most of the tier's time) runs once,
# as the admin, who passes every role check; the agent and the integration key get the random
# phases, which reach their 403s and their own tickets.
PHASES = {
    "integration": "examples,fuzzing,stateful",
    "agent": "examples,fuzzing,stateful",
    "admin": "examples,coverage,fuzzing,stateful",
}
SEED = os.environ.get("CONTRACT_SEED", "20261130")
# A run whose credentials stopped working answers nothing but 401/403/404 and finds nothing:
# each caller must reach this many operations with a 2xx (measured: 4-5, 25-29 and 29-36 of 36).
MIN_OPERATIONS_WITH_2XX = {"integration": 3, "agent": 18, "admin": 22}


async def _identity(suite: Suite, caller: str) -> dict[str, str]:
    """Environment for fuzz_hooks: who logs in, and the decoy its own-record writes go to.

    The caller gets tickets of its own (with a customer and a message) first: the fuzzer reuses
    the ids it reads, so routes on a ticket, a message or a customer get exercised, not only
    their 404s."""
    env = {"FUZZ_BASE_URL": suite.gateway_url}
    async with httpx.AsyncClient(base_url=suite.gateway_url, timeout=30.0) as gateway:
        if caller == "integration":
            headers = {"X-API-Key": DEV_API_KEY}
        else:
            admin = {"Authorization": f"Bearer {await login(gateway, **ADMIN)}"}
            ids = []
            for role in (caller, "agent"):
                email = f"{unique('fuzz-')}@example.com"
                body = {"email": email, "password": PASSWORD, "name": "Fuzz", "role": role}
                response = await gateway.post("/api/agents", json=body, headers=admin)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
                env.setdefault("FUZZ_EMAIL", email)
            env.update(FUZZ_PASSWORD=PASSWORD, FUZZ_SELF_ID=ids[0], FUZZ_DECOY_ID=ids[1])
            token = await login(gateway, env["FUZZ_EMAIL"], PASSWORD)
            headers = {"Authorization": f"Bearer {token}"}
        for n in range(3):
            ticket = {
                "customer": {"email": f"{unique('cust-')}@example.com", "name": f"Customer {n}"},
                "subject": f"Fuzz seed {n}",
                "priority": ["low", "normal", "urgent"][n],
                "channel": "email",
                "message": {"content": "My payment did not go through", "from_agent": False},
            }
            response = await gateway.post("/api/tickets", json=ticket, headers=headers)
            assert response.status_code == 201, response.text
    return env


def _report(report_dir: Path) -> tuple[dict[str, int], list[str]]:
    """From schemathesis' NDJSON events: cases sent, 5xx answers and failures per check, and
    each distinct failure as `check: operation: what` (the console output gets truncated)."""
    cases: set[str] = set()
    totals: dict[str, int] = {"5xx": 0}
    distinct: set[str] = set()
    answered_2xx: set[str] = set()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished["recorder"]
            cases.update(recorder.get("cases", {}))
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response") or {}
                totals["5xx"] += response.get("status_code", 0) >= 500
                if 200 <= response.get("status_code", 0) < 300:
                    answered_2xx.add(recorder["label"])
            for checks in recorder.get("checks", {}).values():
                for check in checks:
                    if check["status"] != "failure":
                        continue
                    totals[check["name"]] = totals.get(check["name"], 0) + 1
                    failure = check.get("failure_info", {}).get("failure", {})
                    what = " ".join(str(failure.get("message", "")).split())[:200]
                    distinct.add(f"{check['name']}: {failure.get('operation')}: {what}")
    totals["operations_with_2xx"] = len(answered_2xx)
    return {"cases": len(cases), **totals}, sorted(distinct)


def _log_sizes(suite: Suite) -> dict[Path, int]:
    return {path: path.stat().st_size for path in suite.opts.log_dir.glob("*.log")}


def _errors_since(suite: Suite, sizes: dict[Path, int]) -> list[str]:
    """ERROR/CRITICAL log records and raw tracebacks written since `sizes` was taken."""
    found = []
    for path in sorted(suite.opts.log_dir.glob("*.log")):
        with path.open("rb") as log:
            log.seek(sizes.get(path, 0))
            for raw in log:
                line = raw.decode(errors="replace").rstrip()
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    if record.get("level") in {"ERROR", "CRITICAL"} or record.get("exception"):
                        found.append(f"{path.stem}: {line[:2000]}")
                elif "Traceback (most recent call last)" in line or " ERROR " in line:
                    found.append(f"{path.stem}: {line[:2000]}")
    return found


# ~1-2 min per caller here; on a machine loaded by other work schemathesis' own generation
# slows down several times over, so the default 300 s would fail it for the wrong reason.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("caller", ["integration", "agent", "admin"])
async def test_every_answer_matches_the_contract(
    contract_suite: Suite, caller: str, tmp_path: Path
) -> None:
    identity = await _identity(contract_suite, caller)
    sizes = _log_sizes(contract_suite)
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{contract_suite.gateway_url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", MAX_EXAMPLES,
        "--seed", SEED,
        "--phases", PHASES[caller],
        # The suite's readiness takes no input; its 503 (a service slower than 2 s to answer,
        # as on a loaded machine) is a true answer that not_a_server_error would flag.
        "--exclude-path", "/health",
        # An event stream never ends by itself (heartbeats keep the read timeout from firing);
        # its 401/403/422 are tested in services/tickets/tests/test_live.py.
        "--exclude-path", "/api/tickets/live",
        "--workers", "2",
        "--request-timeout", "30",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--report", "junit,ndjson",
        "--report-dir", str(tmp_path),
        "--no-color",
    ]  # fmt: skip
    if caller == "integration":
        command += ["--header", f"X-API-Key: {DEV_API_KEY}"]
    env = {
        **os.environ,
        **identity,
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": str(Path(__file__).parent),
    }
    # Not subprocess.run: this event loop drains the services' logs while schemathesis runs.
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    summary = output.decode(errors="replace")[-6000:]
    errors = _errors_since(contract_suite, sizes)
    totals, failures = _report(tmp_path)
    print(f"contract totals as {caller}: {totals}; error lines in logs: {len(errors)}")
    problems = []
    if process.returncode != 0:
        problems.append(
            f"schemathesis as {caller}: {totals}\n" + "\n".join(failures) + f"\n\n{summary}"
        )
    if totals["operations_with_2xx"] < MIN_OPERATIONS_WITH_2XX[caller]:
        problems.append(f"as {caller}, too few operations answered 2xx: {totals}")
    if errors:
        problems.append(
            f"{len(errors)} error lines in the logs as {caller}:\n" + "\n".join(errors[:20])
        )
    assert not problems, "\n\n".join(problems)
