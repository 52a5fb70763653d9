from __future__ import annotations

import asyncio

import pytest

from quimbi_common.backoff import Backoff, nth_delay
from quimbi_common.settings import CommonSettings

pytestmark = pytest.mark.unit


async def test_backoff_doubles_to_its_cap_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    backoff = CommonSettings(
        retry_backoff_initial_seconds=0.5, retry_backoff_max_seconds=3
    ).backoff()
    for _ in range(5):
        await backoff.sleep()
    backoff.reset()
    await backoff.sleep()
    assert slept == [0.5, 1.0, 2.0, 3.0, 3.0, 0.5]


def test_nth_delay_is_capped() -> None:
    assert [nth_delay(0.2, n, cap=1.0) for n in range(4)] == [0.2, 0.4, 0.8, 1.0]


async def test_a_cancelled_backoff_wait_stops_at_once() -> None:
    task = asyncio.create_task(Backoff(60, 60).sleep())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1)
