from __future__ import annotations

import json

import pytest

from quimbi_common.catalogue import DEFAULT_DIR, main, render
from quimbi_common.events import TOPICS

pytestmark = pytest.mark.unit


def test_committed_catalogue_matches_the_contracts() -> None:
    """Fails when a contract changed and `make catalogue` was not run."""
    assert main(["--check"]) == 0, "docs/events is stale: run `make catalogue` and commit it"


def test_catalogue_check_notices_a_changed_schema(tmp_path: pytest.TempPathFactory) -> None:
    for name, content in render().items():
        path = tmp_path / name  # type: ignore[operator]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    schema = tmp_path / "schemas" / "ticket.created.v1.json"  # type: ignore[operator]
    schema.write_text(schema.read_text().replace("customer_sentiment", "sentiment"))
    assert main(["--check", "--dir", str(tmp_path)]) == 1


def test_every_topic_is_in_the_asyncapi_document() -> None:
    document = json.loads((DEFAULT_DIR / "asyncapi.json").read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(TOPICS)
