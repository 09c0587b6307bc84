"""The refresh watermark file and the lock that lets one refresh at a time use it."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATE_FILE_NAME = "rollups.json"


def default_state_file(data_dir: Path) -> Path:
    """Where the refresh watermark lives under a data directory."""
    return data_dir / "analytics" / STATE_FILE_NAME


@dataclass(frozen=True)
class RefreshState:
    """The refresh watermark: write time (ns) of the newest ``ingest_touched`` marker seen."""

    watermark_ns: int

    @classmethod
    def read(cls, path: Path) -> RefreshState | None:
        try:
            data = json.loads(path.read_text())
            return cls(int(data["watermark_ns"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: unreadable rollup watermark ({exc}); delete it to re-read the whole "
                "ingest log, or run rebuild_rollups for the range you need"
            ) from None

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically; a temp file of its own, as several processes refresh."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps({"version": 1, "watermark_ns": self.watermark_ns}) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def refresh_lock(state_file: Path) -> Iterator[None]:
    """One refresh at a time per watermark file (the analytics service, `runhours usage`
    and `billing export` share it): a refresh that read raw data before late data landed
    must not write its stale hours after a newer refresh wrote the right ones."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with open(state_file.with_name(state_file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
