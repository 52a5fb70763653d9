from __future__ import annotations

import pytest

from quimbi_common.numbers import clamp

pytestmark = pytest.mark.unit


def test_clamp_holds_a_value_within_bounds_by_default_zero_to_one() -> None:
    assert clamp(1.7) == 1.0
    assert clamp(-0.2) == 0.0
    assert clamp(0.25) == 0.25
    assert clamp(12.0, 0.0, 10.0) == 10.0
    assert clamp(-3.0, -2.0, 2.0) == -2.0
