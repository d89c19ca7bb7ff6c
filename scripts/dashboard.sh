#!/usr/bin/env bash
# Sourced by run.sh and test.sh (after services.sh): Node.js and npm where missing, and
# the dashboard (dashboards/) built into dashboards/dist when its sources are newer than
# the last build. `dashboard_browser` installs Chromium for the tests.
set -euo pipefail

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "Installing Node.js and npm..."
  apt_install nodejs npm
}
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' || {
  echo "The dashboard needs Node.js 20.19 or newer; this is $(node --version). Install a newer Node.js (e.g. Debian 13's nodejs) and run again." >&2
  exit 1
}
dashboard_browser() {
  [ -x "${CITYHUB_CHROMIUM:-/usr/bin/chromium}" ] || {
    echo "Installing Chromium (the dashboard's tests run in it)..."
    apt_install chromium
  }
}

# Dependencies when the lockfile changed, the build when a source is newer than it.
# `npm install --no-save` installs what the lockfile pins and leaves it as it is; `npm ci`
# refuses this lockfile because npm leaves out the build tools' binaries for other
# platforms (npm/cli#4828), which is harmless here.
if ! cmp -s dashboards/package-lock.json dashboards/node_modules/.installed-lock 2>/dev/null; then
  echo "Installing the dashboard's packages (dashboards/package-lock.json)..."
  npm --prefix dashboards install --no-save --no-audit --no-fund --loglevel=error
  cp dashboards/package-lock.json dashboards/node_modules/.installed-lock
fi
if [ ! -f dashboards/dist/index.html ] || [ ! -f dashboards/dist/public.html ] \
  || [ -n "$(find dashboards/src dashboards/index.html dashboards/public.html dashboards/package-lock.json dashboards/vite.config.ts -newer dashboards/dist/index.html -print -quit)" ]; then
  echo "Building the dashboard..."
  npm --prefix dashboards run build --silent >/dev/null
fi
