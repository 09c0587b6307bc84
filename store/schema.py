"""Names of the InfluxDB schema, in one place (documented in docs/schema.md).

Services and dashboards refer to measurements, tags and fields only through these.
Every numeric field is written as a float (a field's type is fixed by its first write).
"""

from typing import Final

DEFAULT_DATABASE: Final = "runhours"

TAG_SITE: Final = "site"
TAG_LINE: Final = "line"
TAG_MACHINE: Final = "machine"
MACHINE_TAGS: Final = (TAG_SITE, TAG_LINE, TAG_MACHINE)

# Raw samples, one point per sample at the sample's own time (ms precision). One float
# field per value name (unit as suffix), the string field `state` when the sample has
# one, and the message's counters (e.g. `run_seconds_total`) on its last sample.
TELEMETRY: Final = "telemetry"
FIELD_STATE: Final = "state"
FIELD_RUN_SECONDS_TOTAL: Final = "run_seconds_total"
# Part counters of a machine that makes parts (counters, like the hour meter): parts
# completed, and the good ones among them.
FIELD_PARTS_TOTAL: Final = "parts_total"
FIELD_PARTS_GOOD_TOTAL: Final = "parts_good_total"
# The counters runhours knows: cumulative, so never plotted or averaged as signals.
KNOWN_COUNTERS: Final = frozenset(
    {FIELD_RUN_SECONDS_TOTAL, FIELD_PARTS_TOTAL, FIELD_PARTS_GOOD_TOTAL}
)

# Which machine-hours the ingest wrote to, so rollups are recomputed incrementally.
# A log: timestamp = wall-clock time of the write (ns precision, +1 ns per marker of the
# same write, so markers never overwrite each other); tags = machine tags; fields
# `hour` (epoch ms of the UTC hour start) and `points` (points written to that hour).
INGEST_TOUCHED: Final = "ingest_touched"
FIELD_HOUR: Final = "hour"
FIELD_POINTS: Final = "points"

# Presence from the retained status topic and the agent's will, at the status's ts (an
# offline status no earlier than its arrival: a will's ts is its agent's connect time):
# fields `online` (1.0/0.0), and when the agent reports them `buffered` and
# `dropped_total` (its store-and-forward backlog and overflow losses).
MACHINE_STATUS: Final = "machine_status"
FIELD_ONLINE: Final = "online"
FIELD_BUFFERED: Final = "buffered"
FIELD_DROPPED_TOTAL: Final = "dropped_total"

# Delivery gaps found by the ingest (ingest/sequence.py): one point per gap, at the time
# it was detected (ns precision; the point's identity, rewritten when messages of the gap
# arrive late); tags = machine tags; fields `first_seq`, `last_seq`, `messages`,
# `samples` (when the edge sends offsets), `recovered_messages`, `recovered_samples`,
# `missing` (the seq ranges not arrived yet, "5-7,9-12"; so a restarted ingest counts a
# redelivered late message once), `cause` and `worker` (strings). Lost = messages/samples
# − recovered.
INGEST_GAPS: Final = "ingest_gaps"
FIELD_FIRST_SEQ: Final = "first_seq"
FIELD_LAST_SEQ: Final = "last_seq"
FIELD_MESSAGES: Final = "messages"
FIELD_SAMPLES: Final = "samples"
FIELD_RECOVERED_MESSAGES: Final = "recovered_messages"
FIELD_RECOVERED_SAMPLES: Final = "recovered_samples"
FIELD_MISSING: Final = "missing"
FIELD_CAUSE: Final = "cause"
FIELD_WORKER: Final = "worker"

# Where each machine's sequence stands, written with every batch before its messages are
# acknowledged (ns precision, wall clock), so a restarted worker resumes gap detection:
# tags = machine tags; fields `seq` (highest seen), `end_offset` (-1 when unknown), `worker`.
INGEST_SEQUENCE: Final = "ingest_sequence"
FIELD_SEQ: Final = "seq"
FIELD_END_OFFSET: Final = "end_offset"


def ingest_state_database(database: str) -> str:
    """The ingest's own database beside ``database``: a copy of its ``ingest_sequence`` and
    ``ingest_gaps`` points, the only thing it reads back (at start), so that its account
    may write telemetry without reading it (docs/security.md). Readers use ``database``."""
    return f"{database}_ingest"


# Ingest health, one point per worker every few seconds (tag `worker`): fields
# `messages_received`, `messages_invalid`, `points_written` (running totals),
# `write_latency_ms`, `batch_points`, `queue_depth`, and `broker_dropped` (the broker's
# `$SYS/broker/publish/messages/dropped`, when it publishes it).
INGEST_STATS: Final = "ingest_stats"
TAG_WORKER: Final = "worker"
FIELD_MESSAGES_RECEIVED: Final = "messages_received"
FIELD_MESSAGES_INVALID: Final = "messages_invalid"
FIELD_POINTS_WRITTEN: Final = "points_written"
FIELD_WRITE_LATENCY_MS: Final = "write_latency_ms"
FIELD_BATCH_POINTS: Final = "batch_points"
FIELD_QUEUE_DEPTH: Final = "queue_depth"
FIELD_BROKER_DROPPED: Final = "broker_dropped"

# Hourly usage rollups (analytics): tags = machine tags; timestamp = UTC hour start;
# fields `<state>_s` per state, `known_s`, the gaps (`gaps`: stretches of unknown time
# reaching into the hour, `gap_at_start`/`gap_at_end`: 1.0 when the hour starts/ends in
# one), and when the machine reported its hour meter in the hour `counter_s` (the billed
# delta), the anomaly counts `counter_resets`, `counter_wraps`, `counter_glitches`,
# `counter_jumps` and `counter_events` (a string: the first anomalies, see
# analytics/counters.py). `rollup_version` says which rules wrote the point.
USAGE_HOURLY: Final = "usage_hourly"
FIELD_KNOWN_S: Final = "known_s"
FIELD_GAPS: Final = "gaps"
FIELD_GAP_AT_START: Final = "gap_at_start"
FIELD_GAP_AT_END: Final = "gap_at_end"
FIELD_COUNTER_S: Final = "counter_s"
FIELD_COUNTER_RESETS: Final = "counter_resets"
FIELD_COUNTER_WRAPS: Final = "counter_wraps"
FIELD_COUNTER_GLITCHES: Final = "counter_glitches"
FIELD_COUNTER_JUMPS: Final = "counter_jumps"
FIELD_COUNTER_EVENTS: Final = "counter_events"
FIELD_ROLLUP_VERSION: Final = "rollup_version"


def state_seconds_field(state: str) -> str:
    """The `usage_hourly` field holding the seconds spent in ``state`` (``running_s``)."""
    return f"{state}_s"


# Alert transitions (analytics): tags = machine tags + `rule`, `severity`;
# fields `alert_id` (string), `status` (string: pending/firing/resolved/acked), `value`.
ALERTS: Final = "alerts"
TAG_RULE: Final = "rule"
TAG_SEVERITY: Final = "severity"
FIELD_ALERT_ID: Final = "alert_id"
FIELD_STATUS: Final = "status"
FIELD_VALUE: Final = "value"

# Maintenance records (`runhours maintenance record`; they reset service-interval
# counters): tags = machine tags + `kind` (e.g. `service`); fields `note` and `by`
# (strings); timestamp = when the work was done.
MAINTENANCE: Final = "maintenance"
TAG_KIND: Final = "kind"
FIELD_NOTE: Final = "note"
FIELD_BY: Final = "by"

# OEE per machine and shift run (analytics/oee.py; docs/oee.md), for dashboards: tags =
# machine tags + `shift` (its name); timestamp = the run's start (so a day or week in
# Grafana is the shifts that start in it); fields `planned_s`, `running_s`, `known_s`,
# `stop_s` (stops of at least min_stop), `stops`, `short_stop_s`, and when the machine
# counts parts `parts_total`, `parts_good`, with an ideal cycle `ideal_run_s` (ideal
# cycle × parts) and `ideal_good_s` (ideal cycle × good parts). Availability =
# running_s / planned_s, performance = ideal_run_s / running_s, quality = parts_good /
# parts_total, OEE = ideal_good_s / planned_s (sums of these over any group of points).
OEE_SHIFT: Final = "oee_shift"
TAG_SHIFT: Final = "shift"
FIELD_PLANNED_S: Final = "planned_s"
FIELD_RUNNING_S: Final = "running_s"
FIELD_STOP_S: Final = "stop_s"
FIELD_STOPS: Final = "stops"
FIELD_SHORT_STOP_S: Final = "short_stop_s"
FIELD_PARTS_GOOD: Final = "parts_good"
FIELD_IDEAL_RUN_S: Final = "ideal_run_s"
FIELD_IDEAL_GOOD_S: Final = "ideal_good_s"

# Stops and their reasons (analytics/downtime.py), for dashboards: one point per stop of
# at least min_stop, at its start; tags = machine tags + `reason` (a reason code, or
# `unassigned`) and `category` (planned, unplanned, unassigned); fields `seconds` (its
# planned time), `state` (where it spent most time), `by` (who gave the reason, or "").
# Derived: rewritten per shift run from telemetry and the assignments in
# <data_dir>/downtime.sqlite3, which are the record.
DOWNTIME: Final = "downtime"
TAG_REASON: Final = "reason"
TAG_CATEGORY: Final = "category"
FIELD_SECONDS: Final = "seconds"
UNASSIGNED: Final = "unassigned"
