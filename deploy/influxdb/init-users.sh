# One InfluxDB user per runhours role, each with only the privilege it needs (docs/security.md).
# Sourced once by the influxdb:1.8 image's init-influxdb.sh, on the first start (empty
# volume), after it made the admin ($INFLUXDB_ADMIN_USER) and the database ($INFLUXDB_DB);
# $INFLUX_CMD is its `influx … -execute` logged in as that admin. The passwords come from
# ./secrets/compose/influxdb.env (`runhours credentials init --compose`).
# InfluxDB 1.x grants per database: the ingest and analytics both read and write (ALL),
# Grafana only reads; neither is an admin.
runhours_user() {  # NAME PRIVILEGE PASSWORD
  $INFLUX_CMD "CREATE USER \"$1\" WITH PASSWORD '$3'"
  $INFLUX_CMD "GRANT $2 ON \"$INFLUXDB_DB\" TO \"$1\""
}
runhours_user ingest ALL "${INGEST_INFLUX_PASSWORD:?set in ./secrets/compose/influxdb.env}"
runhours_user analytics ALL "${ANALYTICS_INFLUX_PASSWORD:?set in ./secrets/compose/influxdb.env}"
runhours_user grafana READ "${GRAFANA_INFLUX_PASSWORD:?set in ./secrets/compose/influxdb.env}"
