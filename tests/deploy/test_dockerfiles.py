"""services/Dockerfile (one for every service, SERVICE and PORT build arguments): multi-stage
builds from the lock, a slim non-root runtime with one process, a HEALTHCHECK and the
migrate-then-serve entrypoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = {
    "gateway": 8001,
    "tickets": 8101,
    "agents": 8102,
    "sla": 8103,
    "scoring": 8104,
    "ai-proxy": 8105,
    "standin": 8199,
}

pytestmark = pytest.mark.unit


def service_names() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


DOCKERFILE = ROOT / "services" / "Dockerfile"


def service_dockerfile(name: str) -> str:
    """The Dockerfile's instructions as the build for `name` sees them (build args filled in)."""
    text = instructions(DOCKERFILE.read_text())
    return text.replace("${SERVICE}", name).replace("${PORT}", str(PORTS[name]))


def final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def instructions(text: str) -> str:
    """The Dockerfile with comments dropped and continuation lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return re.sub(r"\\\n\s*", " ", "\n".join(lines))


@pytest.mark.parametrize("name", service_names())
def test_service_dockerfile_builds_in_stages_from_the_lock(name) -> None:
    text = service_dockerfile(name)
    # then there are build stages before the runtime one, and uv installs exactly the lock
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert "COPY pyproject.toml uv.lock ./" in text
    assert re.search(rf'uv sync --frozen --no-dev --no-editable --package "quimbi-{name}"', text)
    runtime = final_stage(text)
    assert "COPY --from=build /app/.venv /app/.venv" in runtime
    assert "uv sync" not in runtime
    assert "pip install" not in runtime


@pytest.mark.parametrize("name", service_names())
def test_service_image_runs_one_non_root_process_with_a_healthcheck(name) -> None:
    runtime = final_stage(service_dockerfile(name))
    user = re.search(r"^USER (\S+)", runtime, re.M).group(1)
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert re.search(
        r"^HEALTHCHECK .*CMD \[\"python\", \"/app/entrypoint.py\", \"healthcheck\"\]", runtime, re.M
    )
    assert 'ENTRYPOINT ["python", "/app/entrypoint.py"]' in runtime
    assert 'CMD ["serve"]' in runtime
    assert f"EXPOSE {PORTS[name]}" in runtime
    assert f"PORT={PORTS[name]}" in runtime
    # then the entrypoint runs quimbi_<name>, which exists
    assert f"SERVICE={name}" in runtime
    module = f"quimbi_{name.replace('-', '_')}"
    assert (ROOT / "services" / name / "src" / module).is_dir()


def test_there_is_one_dockerfile_for_all_services() -> None:
    assert sorted(p.relative_to(ROOT) for p in (ROOT / "services").rglob("Dockerfile")) == [
        Path("services/Dockerfile")
    ]


@pytest.mark.parametrize("name", service_names())
def test_service_image_carries_its_migrations_when_it_has_a_database(name) -> None:
    runtime = final_stage(service_dockerfile(name))
    # then the build copies migrations only where the service has them, and the entrypoint
    # skips a MIGRATIONS_DIR that is not there
    build = service_dockerfile(name)
    assert f'if [ -d "services/{name}/migrations" ]' in build
    assert "COPY --from=build /app/service/ /app/" in runtime
    assert "MIGRATIONS_DIR=/app/migrations" in runtime


def test_build_context_leaves_out_local_state_and_tests() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and not line.startswith("#")]
    # everything is excluded first, then only the inputs are let back in
    assert ignore[0] == "*"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "uv.lock",
        "libs/",
        "services/",
        "deploy/containers/entrypoint.py",
    }
    assert "**/tests/" in ignore
