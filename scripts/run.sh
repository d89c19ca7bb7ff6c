#!/usr/bin/env bash
# Runs cityhub with a simulated city on this machine: installs and starts PostgreSQL and
# Mosquitto where missing, starts a broker with the shipped configuration
# (deploy/mosquitto) on 127.0.0.1:${CITYHUB_BROKER_PORT:-18830}, generates a city
# (CITYHUB_SIM_LAMPS lamps, 5000 by default), loads its inventory and its readings of the
# last CITYHUB_SIM_HISTORY_DAYS days (3), serves the API on http://127.0.0.1:8080 and runs
# the city's devices in real time with the faults of deploy/demo/scenario.toml until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/dashboard.sh

port="${CITYHUB_BROKER_PORT:-18830}"
var="$PWD/var"
mkdir -p "$var/broker"
cargo build --release --quiet -p cityhub
bin="$PWD/target/release/cityhub"

# Credentials, made once and kept in var/broker/credentials.env.
creds="$var/broker/credentials.env"
if [ ! -f "$creds" ]; then
  umask 077
  cat > "$creds" <<CREDS
HUB_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
DEVICE_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
SIM_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
CREDS
fi
grep -q '^SIM_PASSWORD=' "$creds" || echo "SIM_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >> "$creds"
grep -q '^ADMIN_PASSWORD=' "$creds" || echo "ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >> "$creds"
source "$creds"
: > "$var/broker/passwd"
# One account per connection: the shipped configuration makes a connection's client id its
# user name. The hub has two (ingestion, command dispatcher).
{
  echo "cityhub-ingest:$HUB_PASSWORD"
  echo "cityhub-commands:$HUB_PASSWORD"
  echo "demo/light/L-0001:$DEVICE_PASSWORD"
} >> "$var/broker/passwd"
cp deploy/mosquitto/acl "$var/broker/acl"
# The simulated city's devices share connections, as gateways do: connection n signs in as
# simulator-n, an account for its tenant (enough for the city's size at 1000 devices each).
sim_accounts=$(( (${CITYHUB_SIM_LAMPS:-5000} * 21 / 20 + ${CITYHUB_SIM_METERS:-2000} + ${CITYHUB_SIM_VEHICLES:-40}) / 1000 + 8 ))
for n in $(seq 0 $((sim_accounts - 1))); do
  echo "simulator-$n:$SIM_PASSWORD" >> "$var/broker/passwd"
  printf '\nuser simulator-%s\ntopic readwrite city/simcity/#\n' "$n" >> "$var/broker/acl"
done
mosquitto_passwd -U "$var/broker/passwd"
# The shipped configuration with this machine's port and paths.
sed -e "s|^listener .*|listener $port 127.0.0.1|" \
    -e "s|^password_file .*|password_file $var/broker/passwd|" \
    -e "s|^acl_file .*|acl_file $var/broker/acl|" \
    -e "s|^persistence_location .*|persistence_location $var/broker/|" \
    deploy/mosquitto/mosquitto.conf > "$var/broker/mosquitto.conf"
echo "user $(id -un)" >> "$var/broker/mosquitto.conf"
mosquitto -c "$var/broker/mosquitto.conf" 2>>"$var/broker/mosquitto.log" &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT

export CITYHUB_DATABASE_URL="${CITYHUB_DATABASE_URL:-${CITYHUB_PG_SERVER_URL%/*}/cityhub}"
psql "$CITYHUB_PG_SERVER_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'cityhub'" | grep -q 1 \
  || psql "$CITYHUB_PG_SERVER_URL" -qc "CREATE DATABASE cityhub"
export CITYHUB_MQTT_PORT="$port" CITYHUB_MQTT_USERNAME=cityhub-ingest CITYHUB_MQTT_PASSWORD="$HUB_PASSWORD"
export CITYHUB_COMMANDS_MQTT_USERNAME=cityhub-commands CITYHUB_COMMANDS_MQTT_PASSWORD="$HUB_PASSWORD"
"$bin" simulate city --lamps "${CITYHUB_SIM_LAMPS:-5000}" --meters "${CITYHUB_SIM_METERS:-2000}" \
  --vehicles "${CITYHUB_SIM_VEHICLES:-40}" --out "$var/city"
"$bin" devices import "$var/city/inventory.geojson"
# A dashboard user for the simulated city, made once.
psql "$CITYHUB_DATABASE_URL" -qtAc "SELECT 1 FROM users WHERE username = 'admin'" | grep -q 1 \
  || echo "$ADMIN_PASSWORD" | "$bin" users add admin --role admin --tenant simcity
export CITYHUB_DASHBOARD_BASE_MAP="$var/city/map.geojson"
# The simulated city's residents' status page, without sign-in.
export CITYHUB_PUBLIC_TENANTS="${CITYHUB_PUBLIC_TENANTS:-simcity}"

cat <<HELP

cityhub is starting: dashboard on http://127.0.0.1:8080/ (user admin, password $ADMIN_PASSWORD),
API under /api/v1 (/health, /metrics), broker on 127.0.0.1:$port; the residents' status
page on http://127.0.0.1:8080/public/simcity/ (no sign-in).
The simulated city's faults (deploy/demo/scenario.toml) start within the first minutes.
To publish as a device of your own, import the demo lamp (tenant demo) and a user who
sees it (the password on standard input), then publish a reading:
  export CITYHUB_DATABASE_URL=$CITYHUB_DATABASE_URL
  $bin devices import deploy/demo/inventory.geojson
  $bin users add demo-admin --role admin --tenant demo --tenant simcity
  mosquitto_pub -p $port -u demo/light/L-0001 -P '$DEVICE_PASSWORD' -q 1 \\
    -t city/demo/light/L-0001/telemetry -m "{\"ts\":\$(date +%s%3N),\"on\":true,\"dim\":80,\"power_w\":56}"
then: psql "$CITYHUB_DATABASE_URL" -c 'SELECT * FROM light_readings'

The simulated city (tenant simcity, base map in var/city/map.geojson) reports in real
time: lamps every 15 min, cabinets every 5 min, meters hourly, buses every 10 s; its last
${CITYHUB_SIM_HISTORY_DAYS:-3} days are written first.
Watch it: psql "$CITYHUB_DATABASE_URL" -c 'SELECT count(*) FROM vehicle_readings'

HELP
"$bin" serve &
hub=$!
trap 'kill $hub $broker 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.5; done
# The city's past: the last days the first time, after a restart what it missed.
CITYHUB_SIM_PASSWORD="$SIM_PASSWORD" "$bin" simulate run --lamps "${CITYHUB_SIM_LAMPS:-5000}" \
  --meters "${CITYHUB_SIM_METERS:-2000}" --vehicles "${CITYHUB_SIM_VEHICLES:-40}" --username simulator \
  --scenario deploy/demo/scenario.toml --truth "$var/demo-truth.jsonl" \
  --history-days "${CITYHUB_SIM_HISTORY_DAYS:-3}" &
sim=$!
trap 'kill $sim $hub 2>/dev/null; wait $hub 2>/dev/null; kill $broker 2>/dev/null || true' EXIT
wait $hub
