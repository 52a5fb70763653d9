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


def write_revision(versions: Path, name: str, body: str) -> None:
    (versions / f"{name}.py").write_text(f'"""{name}"""\n{body}\n')


@pytest.mark.unit
@pytest.mark.parametrize("migrations", MIGRATIONS, ids=lambda p: p.parent.name)
def test_every_services_heads_are_alembics(migrations: Path) -> None:
    assert script_heads(migrations) == alembic_heads(migrations) != frozenset()


@pytest.mark.unit
def test_a_merge_revision_is_the_one_head(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    write_revision(versions, "a", 'revision = "a"\ndown_revision = None')
    write_revision(versions, "b", 'revision: str = "b"\ndown_revision: str | None = "a"')
    write_revision(versions, "c", 'revision = "c"\ndown_revision = "a"')
    assert script_heads(tmp_path) == {"b", "c"}
    write_revision(versions, "d", 'revision = "d"\ndown_revision = ("b", "c")')
    assert script_heads(tmp_path) == {"d"}


@pytest.mark.unit
def test_a_revision_not_written_plainly_gives_no_heads(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    write_revision(versions, "a", 'revision = "a"\ndown_revision = None')
    write_revision(versions, "b", 'revision = make_id()\ndown_revision = "a"')
    assert script_heads(tmp_path) == frozenset()
