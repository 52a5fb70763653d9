"""The migration heads read as text agree with Alembic's, or say they cannot tell."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from quimbi_common.migrations import script_heads

SERVICES = Path(__file__).resolve().parents[3] / "services"
MIGRATIONS = sorted(p for p in SERVICES.glob("*/migrations") if (p / "versions").is_dir())


def alembic_heads(migrations: Path) -> frozenset[str]:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def versions(root: Path, *revisions: str) -> Path:
    """A migrations folder of revision files, each given as its assignments."""
    (root / "versions").mkdir(parents=True, exist_ok=True)
    for n, body in enumerate(revisions):
        (root / "versions" / f"{n:04}.py").write_text(f'"""Revision {n}."""\n{body}\n')
    return root


@pytest.mark.unit
@pytest.mark.parametrize("migrations", MIGRATIONS, ids=lambda p: p.parent.name)
def test_every_services_heads_are_alembics(migrations: Path) -> None:
    assert script_heads(migrations) == alembic_heads(migrations) != frozenset()


@pytest.mark.unit
def test_a_merge_revision_is_the_one_head(tmp_path: Path) -> None:
    branches = (
        'revision = "a"\ndown_revision = None',
        'revision: str = "b"\ndown_revision: str | None = "a"',
        'revision = "c"\ndown_revision = "a"',
    )
    assert script_heads(versions(tmp_path / "split", *branches)) == {"b", "c"}
    merged = versions(tmp_path / "merged", *branches, 'revision = "d"\ndown_revision = ("b", "c")')
    assert script_heads(merged) == {"d"}


@pytest.mark.unit
def test_a_revision_not_written_plainly_gives_no_heads(tmp_path: Path) -> None:
    computed = ('revision = "a"\ndown_revision = None', 'revision = f()\ndown_revision = "a"')
    assert script_heads(versions(tmp_path, *computed)) == frozenset()
