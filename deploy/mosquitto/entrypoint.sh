#!/bin/sh
# Start Mosquitto with a password file built from MOSQUITTO_USERS ("user:password …",
# space-separated; set in docker-compose.yml from .env). Rebuilt at every start, so
# changing a password in .env and restarting the container is enough.
set -eu
: "${MOSQUITTO_USERS:?set MOSQUITTO_USERS, e.g. \"ingest:secret edge:secret2\"}"
passwd=/mosquitto/config/passwd
rm -f "$passwd"
touch "$passwd"
chmod 0600 "$passwd"
for pair in $MOSQUITTO_USERS; do
  user=${pair%%:*}
  password=${pair#*:}
  if [ -z "$user" ] || [ -z "$password" ] || [ "$user" = "$pair" ]; then
    echo "MOSQUITTO_USERS: '$user' needs the form user:password (is its password set in .env?)" >&2
    exit 1
  fi
  mosquitto_passwd -b "$passwd" "$user" "$password"
done
chown mosquitto:mosquitto "$passwd"
chown -R mosquitto:mosquitto /mosquitto/data
exec mosquitto -c /mosquitto/config/mosquitto.conf
