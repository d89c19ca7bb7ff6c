#!/usr/bin/env bash
# Builds the Debian package of the hub with dpkg-deb: the binary, the dashboard, the
# systemd units, a default configuration under /etc/cityhub (kept across upgrades, as
# dpkg keeps every conffile an administrator changed) and the broker's configuration as
# an example. docs/operations.md, "Installing the Debian package", says how it is used.
#
#   scripts/package.sh [--binary PATH] [--dashboard DIR] [--version VERSION] [--out DIR]
#                      [--compression xz|gzip|none]
#
# Without --binary it builds the release binary; without --dashboard, the dashboard
# (dashboards/dist). The version is the workspace's unless given; the package is written
# to --out (target/debian) and its path printed.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="" dashboard="" version="" out="target/debian" compression="xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --dashboard) dashboard="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --compression) compression="$2"; shift 2 ;;
    *) echo "package.sh: unknown argument \`$1\` (--binary, --dashboard, --version, --out, --compression)" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --quiet -p cityhub
  binary=target/release/cityhub
fi
if [ -z "$dashboard" ]; then
  command -v npm >/dev/null || {
    echo "package.sh: the dashboard is built with Node.js 20 and npm (apt-get install nodejs npm); or give --dashboard DIR" >&2
    exit 1
  }
  [ -d dashboards/node_modules ] || npm --prefix dashboards install --no-save --no-audit --no-fund --loglevel=error
  npm --prefix dashboards run build --silent >/dev/null
  dashboard=dashboards/dist
fi
[ -x "$binary" ] || { echo "package.sh: $binary is not an executable" >&2; exit 1; }
# The package's version is the program's (what `cityhub --version` and /health say), with
# a Debian revision if one is given: 0.1.0, 0.1.0-2.
program="$("$binary" --version | awk '{print $2}')"
[ -z "$version" ] && version="$program"
if [ "${version%%-*}" != "$program" ]; then
  echo "package.sh: $binary is version $program; its package is $program or $program-N, not $version" >&2
  exit 1
fi
[ -f "$dashboard/index.html" ] || { echo "package.sh: $dashboard has no index.html (build the dashboard first)" >&2; exit 1; }
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -D -m 755 "$binary" "$stage/usr/bin/cityhub"
mkdir -p "$stage/usr/share/cityhub"
cp -r "$dashboard" "$stage/usr/share/cityhub/dashboard"
install -D -m 644 deploy/systemd/cityhub.service "$stage/lib/systemd/system/cityhub.service"
install -D -m 644 deploy/systemd/cityhub@.service "$stage/lib/systemd/system/cityhub@.service"
# The shipped configuration, with the dashboard where the package puts it.
install -d "$stage/etc/cityhub"
{
  cat deploy/cityhub.toml
  printf '\n[dashboard]\ndir = "/usr/share/cityhub/dashboard"\n'
} > "$stage/etc/cityhub/cityhub.toml"
# Not for every user of the machine to read: an administrator may put a password in it.
# The group that may (the units' user) is set when the package is configured.
chmod 640 "$stage/etc/cityhub/cityhub.toml"
install -D -m 644 deploy/rules.toml "$stage/usr/share/doc/cityhub/examples/rules.toml"
for f in mosquitto.conf acl README.md; do
  install -D -m 644 "deploy/mosquitto/$f" "$stage/usr/share/doc/cityhub/examples/mosquitto/$f"
done
install -D -m 644 README.md "$stage/usr/share/doc/cityhub/README.md"
cp -r docs "$stage/usr/share/doc/cityhub/docs"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)"
cat > "$stage/usr/share/doc/cityhub/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cityhub

Files: *
License: $license
 On Debian systems the full text of the license is in
 /usr/share/common-licenses/$license.
EOF

install -d "$stage/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<EOF
Package: cityhub
Version: $version
Architecture: $arch
Maintainer: ${DEBFULLNAME:-cityhub maintainers} <${DEBEMAIL:-root@localhost}>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, passwd
Recommends: postgresql, mosquitto
Section: net
Priority: optional
Description: telemetry and control hub for a city's streetlights, meters and buses
 cityhub stores every reading its devices send over MQTT in PostgreSQL, detects
 outages, turns them into work orders with deadlines, lets operators command
 streetlights and serves a control-center dashboard and an HTTP API. Several
 instances can share one database and broker (cityhub@.service).
EOF
echo /etc/cityhub/cityhub.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# The system user the units run as; units known to systemd; instances running before an
# upgrade restarted on the new binary. An install into another root (DPKG_ROOT, e.g. an
# image being built) leaves the user and the services to that system.
set -e
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ]; then
  getent group cityhub >/dev/null || groupadd --system cityhub
  getent passwd cityhub >/dev/null || useradd --system --gid cityhub --home-dir /var/lib/cityhub \
    --no-create-home --shell /usr/sbin/nologin --comment "cityhub hub" cityhub
  # The configuration: readable by the units' user, not by every user.
  if [ -f /etc/cityhub/cityhub.toml ] && ! dpkg-statoverride --list /etc/cityhub/cityhub.toml >/dev/null; then
    chgrp cityhub /etc/cityhub/cityhub.toml
    chmod 640 /etc/cityhub/cityhub.toml
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    [ -z "$2" ] || systemctl try-restart 'cityhub.service' 'cityhub@*.service' || true
  fi
fi
exit 0
EOF
cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# Purged: what the administrator put in /etc/cityhub goes too (the secrets of
# cityhub.env and each instance's <instance>.env), so that a later install does not find
# them. The system user stays, as Debian leaves system users (files may still be theirs).
set -e
if [ "$1" = purge ]; then
  rm -f "${DPKG_ROOT:-}"/etc/cityhub/*.env
  rmdir "${DPKG_ROOT:-}/etc/cityhub" 2>/dev/null || true
fi
exit 0
EOF
cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Removed (not upgraded): its instances stop first; each gives its leases back.
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl stop 'cityhub.service' 'cityhub@*.service' || true
fi
exit 0
EOF
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
# Each file's checksum (conffiles apart: dpkg keeps theirs), so that `dpkg --verify
# cityhub` finds an installed file that changed.
(cd "$stage" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
  > "$stage/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/cityhub_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z$compression" --build "$stage" "$deb" >/dev/null
echo "$deb"
