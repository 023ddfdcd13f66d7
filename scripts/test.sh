#!/usr/bin/env bash
# Runs every Herald test on a fresh Debian machine: installs what the tests need (a C
# compiler for the bundled SQLite, PostgreSQL, an SMTP server, Prometheus and Alertmanager, Firefox ESR, Chromium with chromedriver, axe-core), then runs unit,
# property and integration tests (real SQLite files, real HTTP on loopback, the real binary
# killed with -9), then Schemathesis against the API's OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."

# A build directory outside the checkout lets repeated runs (and CI in a fresh clone) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)   # promtool checks the rules and /metrics; Prometheus fires real alerts
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)   # real Alertmanagers (one, and an HA pair) send to Herald
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# unshare/mount (a private hosts file for the SSRF test) and prlimit (a 1,024-file limit for
# the slow-client test) come with util-linux and mount.
command -v unshare >/dev/null 2>&1 && command -v prlimit >/dev/null 2>&1 || need_apt+=(util-linux)
command -v mount >/dev/null 2>&1 || need_apt+=(mount)
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)   # a node whose clock runs ahead
command -v firefox-esr >/dev/null 2>&1 || need_apt+=(firefox-esr)   # a real browser receives a push
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)   # the console and status page in a real browser
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
[ -e /usr/share/fonts/truetype/liberation2 ] || need_apt+=(fonts-liberation2)   # steady screenshots
command -v npm >/dev/null 2>&1 || need_apt+=(npm)   # axe-core (npm) checks the pages' accessibility
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

# Python peers from PyPI, in a venv kept between runs: a real SMTP server for the email tests
# (aiosmtpd) and the others named below.
venv="${HERALD_TEST_VENV:-$HOME/.cache/herald-test-venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd, kubernetes_validate, moto, opentelemetry.proto' >/dev/null 2>&1; then
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
  # kubernetes-validate: the manifests, offline; opentelemetry-proto: an OTLP receiver on the
  # official definitions; moto[server]: an S3-compatible server for off-site backups.
  "$venv/bin/pip" install -q --disable-pip-version-check aiosmtpd kubernetes-validate opentelemetry-proto 'moto[server]'
fi
export HERALD_TEST_PYTHON="$venv/bin/python"

# axe-core for the browser tests, pinned in tests/browser/package-lock.json.
if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --silent
fi
export HERALD_TEST_AXE="$PWD/tests/browser/node_modules/axe-core/axe.min.js"

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
# A random port may be taken: try a few, and show the server's log if none works.
for try in 1 2 3 4 5; do
  if "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -k $pgdir -c max_connections=300 -c fsync=on" start >/dev/null; then
    break
  fi
  if [ "$try" = 5 ]; then
    echo "test.sh: PostgreSQL did not start; its log:" >&2
    cat "$pgdir/server.log" >&2 || true
    exit 1
  fi
  pgport=$((20000 + RANDOM % 30000))
done
export HERALD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pgport/postgres"
export HERALD_TEST_PGBIN="$pgbin"

cargo test --all-targets --locked -- --test-threads="${HERALD_TEST_THREADS:-4}"

# The API against its own OpenAPI document: Schemathesis (PyPI) with every check on, bounded
# in examples and time, failing on any finding. The gateway runs with its dispatcher off, so
# the generated messages are stored and never delivered anywhere.
st_dir=$(mktemp -d /tmp/herald-st.XXXXXX)
st_port=$((20000 + RANDOM % 30000))
st_key="st-admin-key-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
HERALD_CONFIG= HERALD_ADMIN_KEY="$st_key" HERALD_LISTEN="127.0.0.1:$st_port" HERALD_DATA_DIR="$st_dir/data" \
  HERALD_DISPATCH_ENABLED=false "$CARGO_TARGET_DIR/debug/herald" serve 2>"$st_dir/serve.log" &
st_pid=$!
stop_st() { kill "$st_pid" 2>/dev/null || true; wait "$st_pid" 2>/dev/null || true; rm -rf "$st_dir"; }
trap 'stop_st; stop_pg' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$st_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
HERALD_ST_URL="http://127.0.0.1:$st_port" HERALD_ST_KEY="$st_key" HERALD_ST_REPORT_DIR="$st_dir/report" \
  ./scripts/schemathesis.sh
