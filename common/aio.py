"""asyncio waits that stay correct on Python 3.11."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; whether it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives just
    as the event is set (it returns the result instead; 3.12 rebuilt it on
    ``asyncio.timeout``), and the cancelled task runs on. An edge agent's publishing loop
    did, after a broker restart: its session never ended and the agent never reconnected.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
