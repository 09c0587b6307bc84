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


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the running task was cancelled but is still running.

    Libraries we call (asyncua's ``Subscription.next_event``, pymodbus's requests) wait with
    ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation and return as if
    nothing happened. The task's cancel request is still counted (``Task.cancelling()``), so
    a loop that calls this after each such call stops as it should instead of running on:
    an OPC UA reader did, and the edge agent it fed never finished stopping.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
