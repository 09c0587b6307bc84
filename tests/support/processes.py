"""Stopping the processes a test started: politely first, then for sure."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM ``process`` (if it still runs) and wait up to ``timeout`` s for it to finish
    on its own; then SIGKILL it. Always reaped."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
