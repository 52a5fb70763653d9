"""Every text field of every request body refuses NUL (`NoNul`), fields added later too."""

import pytest

from quimbi_ai_proxy.main import build_app
from quimbi_common.testing import request_fields_accepting_nul

pytestmark = pytest.mark.unit


def test_no_request_field_accepts_a_nul() -> None:
    tried, accepting = request_fields_accepting_nul(build_app())
    assert accepting == []
    assert tried >= 3  # the walk reached the fields (nested models and lists included)
