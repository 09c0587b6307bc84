#!/bin/sh
# Start Mosquitto with the secrets of ./secrets (runhours credentials init --compose),
# mounted read-only at $SOURCE. They are copied where the broker reads them, owned by
# its user with mode 0600 (the broker drops root before reading them); on SIGHUP
# (`docker compose kill -s HUP mosquitto`, after `runhours credentials add|revoke`)
# they are copied again and the broker reloads its password file, ACL and CRL.
# A shell cannot trap a signal that was ignored when it started (POSIX): start it with
# SIGHUP at its default (Docker does; `nohup` does not).
set -eu
SOURCE=${SOURCE:-/run/runhours}
TARGET=${TARGET:-/mosquitto/config/secrets}
CONFIG=${CONFIG:-/mosquitto/config/mosquitto.conf}
OWNER=${OWNER:-mosquitto}
DATA=${DATA:-/mosquitto/data}

install_secrets() {
  for file in ca.pem broker/server.pem broker/server.key broker/passwd broker/crl.pem; do
    if [ ! -r "$SOURCE/$file" ]; then
      echo "entrypoint: $SOURCE/$file missing: run \`runhours credentials init --compose --dir ./secrets\`" >&2
      return 1
    fi
  done
  mkdir -p "$TARGET"
  for file in ca.pem broker/server.pem broker/server.key broker/passwd broker/crl.pem; do
    name=$(basename "$file")
    cp "$SOURCE/$file" "$TARGET/.$name.new"
    chown "$OWNER" "$TARGET/.$name.new"
    chmod 0600 "$TARGET/.$name.new"
    mv -f "$TARGET/.$name.new" "$TARGET/$name"
  done
}

install_secrets
chown -R "$OWNER" "$DATA"
mosquitto -c "$CONFIG" &
broker=$!
reload() {
  if install_secrets && kill -HUP "$broker"; then
    echo "entrypoint: secrets installed again, broker $broker reloading" >&2
  else
    echo "entrypoint: reload failed, the broker keeps its previous secrets" >&2
  fi
}
trap reload HUP
trap 'kill -TERM "$broker"' TERM INT
echo "entrypoint: broker $broker started; SIGHUP reloads its secrets" >&2
# `wait` returns early when a trapped signal arrives: keep waiting while the broker runs.
status=0
while kill -0 "$broker" 2>/dev/null; do
  if wait "$broker"; then status=0; else status=$?; fi
done
exit "$status"
