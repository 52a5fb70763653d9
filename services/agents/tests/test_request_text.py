"""Every text field of every request body refuses NUL (`NoNul`), fields added later too."""

import pytest

from quimbi_agents.main import build_app
from quimbi_common.testing import request_fields_accepting_nul

pytestmark = pytest.mark.unit


def test_no_request_field_accepts_a_nul() -> None:
    # a login password is any text: a NUL in it is a wrong password (401), not a 422
    tried, accepting = request_fields_accepting_nul(
        build_app(), on_purpose=frozenset({"LoginRequest.password"})
    )
    assert accepting == []
    assert tried >= 24  # the walk reached the fields (nested models and lists included)
