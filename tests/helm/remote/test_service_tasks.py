"""The dispatcher's side tasks (connects, checks, reaps, pokes) never die unread.

Before, ``service.py`` created them with ``asyncio.create_task`` and replaced them without
reading their exception: a check that raised anything but ``BoxError`` surfaced much later as
"Task exception was never retrieved" and a traceback in the daemon log.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from helm.remote.service import spawn


async def _boom() -> None:
    raise RuntimeError("check exploded")


async def test_a_failed_side_task_is_logged_once_and_never_left_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("helm.remote.test-spawn")
    with caplog.at_level(logging.ERROR):
        task = spawn(_boom(), log, "check-box")
        for _ in range(3):
            await asyncio.sleep(0)
        assert task.done()
        del task
        gc.collect()
        await asyncio.sleep(0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("check-box failed: RuntimeError('check exploded')") == 1
    assert not any("never retrieved" in m for m in messages), messages


async def test_the_same_task_without_spawn_is_what_asyncio_complains_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The control: a bare task that dies unread is reported by asyncio at collection."""
    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(_boom())
        for _ in range(3):
            await asyncio.sleep(0)
        del task
        gc.collect()
        await asyncio.sleep(0)
    assert any("never retrieved" in r.getMessage() for r in caplog.records)


async def test_a_cancelled_side_task_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        task = spawn(asyncio.sleep(60), logging.getLogger("helm.remote.test-spawn"), "tick")
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert caplog.records == []
