#!/usr/bin/env bash
# Runs every test against a real PostgreSQL and real Mosquitto (installed and started
# when missing), then the dashboard's end-to-end tests in headless Chromium. Extra
# arguments go to the Rust test runner (and skip the dashboard's).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/python.sh
export CITYHUB_TEST_DATABASE_URL="${CITYHUB_TEST_DATABASE_URL:-$CITYHUB_PG_SERVER_URL}"

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# The integration tests start the `cityhub` binary (kill -9, restarts).
cargo build --quiet -p cityhub -p bench
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# The dashboard, end to end in headless Chromium against the binary built above (on a
# full run; arguments select Rust tests only).
if [ $# -eq 0 ]; then
  source scripts/dashboard.sh
  dashboard_browser
  npm --prefix dashboards test
fi
