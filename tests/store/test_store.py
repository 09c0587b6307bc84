"""store/: line protocol that nothing can inject into, and the real InfluxDB round trip."""

from __future__ import annotations

import pytest

from store import InfluxClient, InfluxWriteRejected, Point, encode_point
from store.lineprotocol import ms_lines_as_ns


def test_escaping_prevents_tag_and_field_injection() -> None:
    line = encode_point(
        Point("telemetry", {"machine": "a,b=c d"}, {"x y=z": 1.0, "state": 'say "hi" \\'}, 5)
    )
    assert line == 'telemetry,machine=a\\,b\\=c\\ d x\\ y\\=z=1.0,state="say \\"hi\\" \\\\" 5'


def test_values_are_always_floats() -> None:
    assert encode_point(Point("m", {}, {"v": 1}, 0)) == "m v=1.0 0"


def test_newlines_are_rejected() -> None:
    with pytest.raises(ValueError, match="newline"):
        encode_point(Point("m", {"machine": "a\nb"}, {"v": 1.0}, 0))


def test_round_trip_and_idempotent_rewrite(influx: InfluxClient) -> None:
    points = [
        Point("telemetry", {"machine": "m,1 x"}, {"v": float(i)}, 1000 + i) for i in range(50)
    ]
    influx.write(points)
    influx.write(points)  # a redelivery rewrites the same points: no duplicates
    assert influx.count("telemetry", "v") == {"m,1 x": 50}
    rows = influx.query_rows("SELECT v FROM telemetry WHERE time >= 1040ms ORDER BY time")
    assert [(r["time"], r["v"]) for r in rows[:2]] == [(1040, 40.0), (1041, 41.0)]


def test_partial_write_keeps_good_points(influx: InfluxClient) -> None:
    influx.write([Point("telemetry", {"machine": "m"}, {"v": 1.0}, 1)])
    body = b'telemetry,machine=m v="text" 2\ntelemetry,machine=m v=3.0 3'
    with pytest.raises(InfluxWriteRejected) as info:
        influx.write_lines(body)
    assert info.value.dropped == 1
    assert influx.count("telemetry", "v") == {"m": 2}


def test_backslashes_and_multiline_strings_round_trip_exactly(influx: InfluxClient) -> None:
    """InfluxDB 1.x keeps a backslash in a name literally (it unescapes only `\\,` `\\ ` `\\=`),
    so the encoder must not double it; a string field may hold a newline (inside quotes)."""
    note = 'line 1\nline 2 with a \\ and a "quote"'
    influx.write([Point("m\\x", {"kind": "a\\b c"}, {"k\\ey": 1.0, "note": note}, 7)])
    assert influx.query_series("SHOW MEASUREMENTS")[0].values == [["m\\x"]]
    rows = influx.query_rows('SELECT * FROM "m\\\\x" GROUP BY *')
    assert rows == [{"kind": "a\\b c", "time": 7, "k\\ey": 1.0, "note": note}]


@pytest.mark.parametrize("name", ["end\\", "a\\,b", "a\\ b", "a\\=b", 'a\\"b'])
def test_a_backslash_line_protocol_cannot_carry_is_refused(name: str) -> None:
    """Before a separator or at the end, a backslash would escape what follows it."""
    with pytest.raises(ValueError, match="backslash"):
        encode_point(Point("m", {"t": name}, {"v": 1.0}, 0))
    with pytest.raises(ValueError, match="backslash"):
        encode_point(Point("m", {}, {name: 1.0}, 0))


def test_writes_are_compressed_only_across_a_network(influx: InfluxClient) -> None:
    """gzip pays off over a network, not to a database on this host; both forms land."""
    assert not influx.gzip_writes  # the test database is on 127.0.0.1
    assert InfluxClient("http://influx.example:8086", "db").gzip_writes
    assert not InfluxClient("http://[::1]:8086", "db").gzip_writes
    with InfluxClient(influx.url, influx.database, gzip_writes=True) as compressing:
        compressing.write([Point("m", {"k": "gz"}, {"v": 2.5}, 1_000)])
    assert influx.query_rows("SELECT v FROM m WHERE k = 'gz'") == [{"time": 1_000, "v": 2.5}]


def test_lines_in_milliseconds_become_nanoseconds() -> None:
    lines = b'm,k=a v=1.0,state="x" 1000\nm,k=b v=2.0 2000'
    assert ms_lines_as_ns(lines) == b'm,k=a v=1.0,state="x" 1000000000\nm,k=b v=2.0 2000000000'
    assert ms_lines_as_ns(b"") == b""
