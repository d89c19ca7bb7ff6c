#!/usr/bin/env bash
# Runs every test against a real PostgreSQL and real Mosquitto (installed and started
# when missing). Extra arguments go to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/python.sh
export CITYHUB_TEST_DATABASE_URL="${CITYHUB_TEST_DATABASE_URL:-$CITYHUB_PG_SERVER_URL}"

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# The integration tests start the `cityhub` binary (kill -9, restarts).
cargo build --quiet -p cityhub
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
