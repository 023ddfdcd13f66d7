#!/usr/bin/env bash
# Runs every Herald test on a fresh Debian machine: installs what the tests need (a C
# compiler for the bundled SQLite), then runs unit, property and integration tests
# (real SQLite files, real HTTP on loopback, the real binary killed with -9).
set -euo pipefail
cd "$(dirname "$0")/.."

# A build directory outside the checkout lets repeated runs (and CI in a fresh clone) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)   # promtool checks the alert rules and /metrics
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "test.sh: please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo is missing; install Rust from rustup.rs" >&2; exit 1; }

# A real SMTP server for the email tests: aiosmtpd from PyPI, in a venv kept between runs.
venv="${HERALD_TEST_VENV:-$HOME/.cache/herald-test-venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    else
      echo "test.sh: please install python3 and python3-venv" >&2
      exit 1
    fi
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check aiosmtpd
fi
export HERALD_TEST_PYTHON="$venv/bin/python"

# A throwaway PostgreSQL cluster for the PostgreSQL tests, removed when this script ends.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  else
    echo "test.sh: please install PostgreSQL (initdb, pg_ctl)" >&2
    exit 1
  fi
fi
pgdir=$(mktemp -d /tmp/herald-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$pgdir"
  as_pg=(runuser -u postgres --)
fi
pgport=$((20000 + RANDOM % 30000))
stop_pg() {
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap stop_pg EXIT
"${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$pgdir/initdb.log"
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
  -o "-p $pgport -c listen_addresses=127.0.0.1 -k $pgdir -c max_connections=300 -c fsync=on" start >/dev/null
export HERALD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pgport/postgres"
export HERALD_TEST_PGBIN="$pgbin"

cargo test --all-targets --locked -- --test-threads="${HERALD_TEST_THREADS:-4}"
