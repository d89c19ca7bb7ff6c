#!/usr/bin/env bash
# Sourced by run.sh and test.sh: installs and starts what cityhub needs on Debian when it
# is missing, and exports CITYHUB_PG_SERVER_URL (a connection string to the server's
# `postgres` database for a role that may create databases).
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) first." >&2; exit 1; }
command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null || {
  echo "Installing Mosquitto..."
  apt_install mosquitto mosquitto-clients
}
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v psql >/dev/null || {
  echo "Installing PostgreSQL..."
  apt_install postgresql postgresql-client
}

# Start the local PostgreSQL cluster if nothing answers on 5432.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$version" ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || as_root pg_ctlcluster "$version" main start
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL does not answer on 127.0.0.1:5432." >&2; exit 1; }
fi

# A role that can create databases: postgres itself where the server trusts local TCP,
# otherwise a `cityhub` role with a password, created once through the local socket.
if [ -n "${CITYHUB_PG_SERVER_URL:-}" ]; then
  :
elif psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  export CITYHUB_PG_SERVER_URL="postgres://postgres@127.0.0.1:5432/postgres"
else
  as_root runuser -u postgres -- psql -qtAc \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cityhub') THEN
       CREATE ROLE cityhub LOGIN CREATEDB PASSWORD 'cityhub'; END IF; END \$\$;" >/dev/null
  export CITYHUB_PG_SERVER_URL="postgres://cityhub:cityhub@127.0.0.1:5432/postgres"
fi
