"""A small InfluxDB v1 HTTP API client: ``/ping``, ``/write``, ``/query``.

It speaks only the v1 API, which InfluxDB 1.x serves natively and 2.x/3.x serve
through their v1-compatible endpoints (token auth).
"""

from __future__ import annotations

import gzip
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from common.errors import RunhoursError
from store.influxql import quote_ident
from store.lineprotocol import Point, encode_points


class InfluxError(RunhoursError, RuntimeError):
    """Any failure talking to InfluxDB."""


class InfluxUnavailable(InfluxError):
    """Connection failure, timeout, 5xx or 429: retry later with backoff."""


class InfluxAuthError(InfluxError):
    """401/403: credentials are missing or wrong; retrying will not help."""


class InfluxForbidden(InfluxAuthError):
    """403: the credentials are valid, the account lacks the privilege (docs/security.md)."""


class InfluxWriteRejected(InfluxError):
    """400 on /write: some points are malformed or conflict with a field's type.

    InfluxDB still stores the other points of the batch; ``dropped`` says how many it
    dropped (when it says).
    """

    def __init__(self, message: str, dropped: int | None) -> None:
        super().__init__(message)
        self.dropped = dropped


class InfluxQueryError(InfluxError):
    """The query was rejected (syntax, unknown database, …)."""


@dataclass
class Series:
    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


class Secret(Protocol):
    """A secret value that does not show itself (``pydantic.SecretStr`` fits)."""

    def get_secret_value(self) -> str: ...


def _reveal(secret: Secret | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


class InfluxSettings(Protocol):
    """What a client needs from the shared settings (``common.settings.RunhoursSettings``
    fits; ``store`` imports nothing of ours, so it names the fields instead)."""

    @property
    def influx_url(self) -> str: ...
    @property
    def influx_db(self) -> str: ...
    @property
    def influx_user(self) -> str | None: ...
    @property
    def influx_password(self) -> Secret | None: ...
    @property
    def influx_token(self) -> Secret | None: ...


_DROPPED = re.compile(r"dropped=(\d+)")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("error", body) if isinstance(body, dict) else body)[:200]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InfluxClient:
    """Synchronous client; safe to share between threads."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        gzip_writes: bool | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        # Compressing pays off across a network, not to a database on this host, where
        # it only spends both processes' CPU (bench/ingest.py).
        host = urlsplit(self.url).hostname or ""
        self.gzip_writes = gzip_writes if gzip_writes is not None else not _loopback(host)
        self.username = username
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.Client(base_url=self.url, headers=headers, auth=auth, timeout=timeout)
        self._credentials = (username, password, token, timeout)

    def sibling(self, database: str) -> InfluxClient:
        """A client for another database on the same server, with the same credentials."""
        username, password, token, timeout = self._credentials
        return InfluxClient(
            self.url,
            database,
            username=username,
            password=password,
            token=token,
            timeout=timeout,
            gzip_writes=self.gzip_writes,
        )

    @classmethod
    def from_settings(cls, settings: InfluxSettings, *, timeout: float = 10.0) -> InfluxClient:
        """A client for the configured URL, database and credentials."""
        return cls(
            settings.influx_url,
            settings.influx_db,
            username=settings.influx_user,
            password=_reveal(settings.influx_password),
            token=_reveal(settings.influx_token),
            timeout=timeout,
        )

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc
        if response.status_code == 401:
            raise InfluxAuthError(
                f"InfluxDB at {self.url} refused the credentials (401): "
                "set RUNHOURS_INFLUX_USER/_PASSWORD or RUNHOURS_INFLUX_TOKEN"
            )
        if response.status_code == 403:
            who = f"user {self.username!r}" if self.username else "these credentials"
            raise InfluxForbidden(
                f"InfluxDB at {self.url}: {who} may not do this (403: "
                f"{_error_text(response)}); an admin grants privileges (docs/security.md)"
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise InfluxUnavailable(
                f"InfluxDB at {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        return response

    def ping(self) -> bool:
        """True when the server answers ``/ping``."""
        try:
            return self._request("GET", "/ping").status_code == 204
        except InfluxUnavailable:
            return False

    def write_lines(self, body: bytes, precision: str = "ms") -> None:
        """Write pre-encoded line protocol (newline-separated)."""
        if not body:
            return
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_writes:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        response = self._request(
            "POST",
            "/write",
            params={"db": self.database, "precision": precision},
            content=body,
            headers=headers,
        )
        if response.status_code == 204:
            return
        text = response.text.strip()
        if response.status_code == 404:
            raise InfluxQueryError(f"write to {self.database!r}: {text}")
        match = _DROPPED.search(text)
        raise InfluxWriteRejected(
            f"InfluxDB rejected points ({response.status_code}): {text[:500]}",
            int(match.group(1)) if match else None,
        )

    def write(self, points: Iterable[Point]) -> None:
        self.write_lines(encode_points(points))

    def query(self, q: str, *, epoch: str | None = "ms") -> list[list[Series]]:
        """Run InfluxQL (one or more ``;``-separated statements); one list of series each."""
        params = {"db": self.database, "q": q}
        if epoch:
            params["epoch"] = epoch
        response = self._request("POST", "/query", data=params)
        try:
            body = response.json()
        except ValueError:
            raise InfluxQueryError(
                f"query answered {response.status_code}: {response.text[:200]}"
            ) from None
        if response.status_code != 200 or "error" in body:
            raise InfluxQueryError(f"query {q!r}: {body.get('error', response.text[:200])}")
        out: list[list[Series]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxQueryError(f"query {q!r}: {result['error']}")
            out.append(
                [
                    Series(s.get("name", ""), s["columns"], s.get("values", []), s.get("tags", {}))
                    for s in result.get("series", [])
                ]
            )
        return out

    def query_series(self, q: str, *, epoch: str | None = "ms") -> list[Series]:
        """Series of a single-statement query."""
        results = self.query(q, epoch=epoch)
        return results[0] if results else []

    def query_rows(self, q: str, *, epoch: str | None = "ms") -> list[dict[str, Any]]:
        """Rows of a single-statement query, with each series' tags merged in."""
        return [
            {**series.tags, **row}
            for series in self.query_series(q, epoch=epoch)
            for row in series.rows()
        ]

    def ensure_database(self) -> None:
        """Create the database if missing (idempotent in InfluxDB 1.x).

        Looks first: a user without admin rights (with authentication on, every service
        but the admin) may not create databases, but sees those it has rights on.
        """
        try:
            shown = self.query_series("SHOW DATABASES", epoch=None)
        except InfluxQueryError:
            shown = []
        if any([self.database] in series.values for series in shown):
            return
        self.query(f"CREATE DATABASE {quote_ident(self.database)}", epoch=None)

    def count(self, measurement: str, field_name: str, where: str = "") -> dict[str, int]:
        """Count points per machine (``GROUP BY machine``); handy for checks."""
        clause = f" WHERE {where}" if where else ""
        series = self.query_series(
            f"SELECT count({quote_ident(field_name)}) FROM {quote_ident(measurement)}{clause} "
            "GROUP BY machine"
        )
        return {s.tags.get("machine", ""): int(s.values[0][1]) for s in series if s.values}
