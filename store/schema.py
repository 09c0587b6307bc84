"""Names of the InfluxDB schema, in one place (see docs/schema.md).

Services and dashboards refer to measurements, tags and fields only through these.
"""

from typing import Final

DEFAULT_DATABASE: Final = "runhours"

# Raw samples: one point per sample; one float field per value name (unit as suffix),
# plus the string field `state` when the sample carries one, and the machine's
# counters (e.g. `run_seconds_total`) on the last sample of each message.
TELEMETRY: Final = "telemetry"
TAG_SITE: Final = "site"
TAG_LINE: Final = "line"
TAG_MACHINE: Final = "machine"
MACHINE_TAGS: Final = (TAG_SITE, TAG_LINE, TAG_MACHINE)
FIELD_STATE: Final = "state"
FIELD_RUN_SECONDS_TOTAL: Final = "run_seconds_total"

# Machine-hours the ingest wrote to (for incremental rollups): tags as telemetry,
# field `points` (float), timestamp = start of the UTC hour.
INGEST_TOUCHED: Final = "ingest_touched"

# Presence from the retained status / will: field `online` (bool).
MACHINE_STATUS: Final = "machine_status"
