#!/bin/sh
# Install Debian's PostgreSQL server (initdb, pg_ctl, postgres) for the store tests.
# Safe to run repeatedly: when the package is installed it changes nothing and
# runs no apt-get at all.
set -eu

installed() {
    [ "$(dpkg-query -W -f='${Status}' postgresql 2>/dev/null || true)" = "install ok installed" ] &&
        ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if installed; then
    echo "postgresql is installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "postgres.sh: installing postgresql needs root (or sudo)" >&2
    exit 1
fi

$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

if ! installed; then
    echo "postgres.sh: postgresql did not install (no /usr/lib/postgresql/*/bin/initdb)" >&2
    exit 1
fi
echo "postgresql installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
