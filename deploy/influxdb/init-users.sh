# One InfluxDB user per runhours role, each with only the privilege it needs (docs/security.md).
# Sourced once by the influxdb:1.8 image's init-influxdb.sh, on the first start (empty
# volume), after it made the admin ($INFLUXDB_ADMIN_USER) and the database ($INFLUXDB_DB);
# $INFLUX_CMD is its `influx … -execute` logged in as that admin. The passwords come from
# ./secrets/compose/influxdb.env (`runhours credentials init --compose`).
# InfluxDB 1.x grants per database. The ingest only writes the database and keeps what it
# reads back (its sequence bookkeeping) in "<database>_ingest"; analytics reads and writes
# the database (ALL); Grafana only reads. None of them is an admin.
INGEST_STATE_DB="${INFLUXDB_DB}_ingest"  # store/schema.py: ingest_state_database
$INFLUX_CMD "CREATE DATABASE \"$INGEST_STATE_DB\""
runhours_user() {  # NAME PRIVILEGE PASSWORD PRIVILEGE-ON-THE-INGEST-STATE (or "")
  $INFLUX_CMD "CREATE USER \"$1\" WITH PASSWORD '$3'"
  $INFLUX_CMD "GRANT $2 ON \"$INFLUXDB_DB\" TO \"$1\""
  if [ -n "$4" ]; then $INFLUX_CMD "GRANT $4 ON \"$INGEST_STATE_DB\" TO \"$1\""; fi
}
runhours_user ingest WRITE "${INGEST_INFLUX_PASSWORD:?set in ./secrets/compose/influxdb.env}" ALL
runhours_user analytics ALL "${ANALYTICS_INFLUX_PASSWORD:?set in ./secrets/compose/influxdb.env}" READ
runhours_user grafana READ "${GRAFANA_INFLUX_PASSWORD:?set in ./secrets/compose/influxdb.env}" READ
