"""The dispatcher's one door to the store: a single worker thread for every store call.

SQLite serialises writers anyway, so one thread loses nothing; it keeps the event loop (which
drives every SSH connection and log stream) from ever waiting on the store's lock, and the
network from ever waiting on an open transaction. The service and its job watchers share one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class DbGate:
    """Runs store calls on one worker thread: serialised, and off the event loop."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="helm-remote-db")

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
