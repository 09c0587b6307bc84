"""Alert state in SQLite under the data directory: alerts, history, evaluator memory, outbox.

One file (``<data_dir>/alerts.sqlite3``, WAL mode) holds everything an analytics
restart needs, so a restart never repeats or forgets an alert. ``AlertStore`` is that
file with all its parts, one module each:

- ``schema``: the tables and their migrations (``AlertFile``);
- ``history``: alerts and their transitions, operator actions (``AlertHistory``);
- ``engine_state``: the evaluator's memory and the commit of a cycle (``EngineStateStore``);
- ``outbox``: each delivery channel's cursor over the history (``Outbox``).

An evaluation cycle is committed in one transaction (alerts, history, memory and the
new ``until`` together), so a crash at any point leaves either the old or the new
state. Operators (CLI, HTTP API) write through the same file; every operation opens
its own connection, so the store is safe to share between threads and processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from analytics.alerts.engine_state import EngineStateStore
from analytics.alerts.history import AlertHistory
from analytics.alerts.outbox import Outbox
from analytics.alerts.schema import STORE_FILE


class AlertStore(AlertHistory, EngineStateStore, Outbox):
    """The SQLite file of one analytics service (see the module docstring)."""

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AlertStore:
        return cls(Path(data_dir) / STORE_FILE)


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (for tests and shutdown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
