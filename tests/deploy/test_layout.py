"""The rooms the README lists for each service are the modules its package has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    name: ROOT / "services" / name / "src" / f"quimbi_{name.replace('-', '_')}"
    for name in ("tickets", "agents", "sla", "scoring", "ai-proxy", "gateway")
}


def listed_rooms() -> dict[str, set[str]]:
    """service → module names from the README's "Rooms of a service" table (rooms and adapters)."""
    section = ROOT.joinpath("README.md").read_text().split("### Rooms of a service", 1)[1]
    rows: dict[str, set[str]] = {}
    for line in section.split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] not in PACKAGES:
            continue
        rooms = re.sub(r"\([^)]*\)", "", cells[1]).replace("`", "").split()
        adapters = re.findall(r"`([a-z0-9_]+)(?:\.py|/)`", cells[2])  # a module or a folder
        rows[cells[0]] = {room.rstrip("/") for room in rooms} | set(adapters)
    return rows


@pytest.mark.unit
@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_the_readme_lists_each_services_rooms_as_the_tree_has_them(service: str) -> None:
    package = PACKAGES[service]
    modules = {
        p.stem if p.is_file() else p.name
        for p in package.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
        and p.stem not in ("__init__", "__main__")
    }
    listed = listed_rooms().get(service)
    assert listed == modules, (
        f"README's rooms table for {service}: add {sorted(modules - (listed or set()))}, "
        f"drop {sorted((listed or set()) - modules)}"
    )
